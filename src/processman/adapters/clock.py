"""The production clock: anyio's monotonic time and sleep, and UTC wall time."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio


class AnyioClock:
    """``Clock`` on the running event loop (asyncio or trio)."""

    def monotonic(self) -> float:
        """Seconds on the event loop's clock."""
        return anyio.current_time()

    def utcnow(self) -> datetime:
        """Aware UTC now."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await anyio.sleep(seconds)
