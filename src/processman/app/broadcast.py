"""Live log subscriptions: a sink that fans each process's lines out to its subscribers.

A subscriber that falls behind loses lines, never slows the children: when its queue
is full, new lines are counted as dropped and reported (a gap marker) after the lines
it already has.
"""

from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio

from processman.domain.ports import LogEntry

if TYPE_CHECKING:
    from collections.abc import Iterator

    from processman.domain.ports import LogBatch

#: Lines a subscriber may have waiting before new ones are dropped.
SUBSCRIBER_CAPACITY = 10_000


class Subscription:
    """One live reader of one process's output."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: deque[LogEntry] = deque()
        self._dropped = 0
        self._ready = anyio.Event()
        self._closed = False

    def push(self, batch: LogBatch) -> None:
        """Queue a batch (called by the hub, on the event loop; never waits)."""
        room = self._capacity - len(self._entries)
        lines = batch.lines
        if self._dropped or len(lines) > room:
            # keep order: once something is dropped, later lines wait behind the gap
            kept = [] if self._dropped else lines[: max(room, 0)]
            self._dropped += len(lines) - len(kept)
            lines = kept
        self._entries.extend(LogEntry(batch.time, batch.stream, line) for line in lines)
        self._ready.set()

    def close(self) -> None:
        """No more lines will come: ``receive`` returns what is queued, then ends."""
        self._closed = True
        self._ready.set()

    async def receive(self) -> tuple[list[LogEntry], int]:
        """Wait for lines; return them and how many were dropped right after them.

        Raises:
            anyio.EndOfStream: the manager has shut down and every line was received.
        """
        while not self._entries and not self._dropped:
            if self._closed:
                raise anyio.EndOfStream
            self._ready = anyio.Event()
            await self._ready.wait()
        entries = list(self._entries)
        self._entries.clear()
        dropped, self._dropped = self._dropped, 0
        return entries, dropped


class LogHub:
    """A ``LogSink`` that hands every batch to the subscribers of its process."""

    def __init__(self, capacity: int = SUBSCRIBER_CAPACITY) -> None:
        self._capacity = capacity
        self._subscribers: dict[str, set[Subscription]] = {}

    def write(self, batch: LogBatch) -> None:
        """Fan the batch out; a no-op when nobody listens."""
        for subscription in self._subscribers.get(batch.process, ()):
            subscription.push(batch)

    def close(self) -> None:
        """The manager has shut down: end every subscription once it has its last lines."""
        for subscriptions in self._subscribers.values():
            for subscription in subscriptions:
                subscription.close()

    @contextmanager
    def subscribe(self, process_id: str) -> Iterator[Subscription]:
        """Receive the process's lines from now on, until the block ends."""
        subscription = Subscription(self._capacity)
        self._subscribers.setdefault(process_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers[process_id].discard(subscription)

    def subscriber_count(self, process_id: str) -> int:
        """How many subscribers a process has (for tests and metrics)."""
        return len(self._subscribers.get(process_id, ()))
