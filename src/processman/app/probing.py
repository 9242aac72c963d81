"""The ready and health probes of one instance (SPEC §8), while it runs.

``InstanceProbes`` is started once an instance runs and cancelled when it stops: it
tries the ``ready`` probe (quickly at first: 50 ms after ``initialDelay``, then at
doubling intervals up to ``period``) until it passes or ``readyTimeout`` passes, then
the ``health`` probe every ``period``. Tries of one probe never overlap, and each is
bounded by its ``timeout``. Results reach the state machine through the runner's
callbacks, as events.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

import anyio

from processman.domain.errors import SpawnError
from processman.domain.model import ProbeKind
from processman.domain.ports import SpawnRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from processman.domain.model import Probe, ProcessSpec
    from processman.domain.ports import Clock, Prober, Spawner

#: The first ready try comes this long after ``initialDelay``; then the wait doubles.
FIRST_TRY = 0.05


class InstanceProbes:
    """Probes one instance of ``spec``; ``ready()`` and ``failed(reason)`` are called at
    most once each, from this task (``failed`` ends it)."""

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        clock: Clock,
        prober: Prober | None,
        spawner: Spawner,
        env: Mapping[str, str],
        ready: Callable[[], Awaitable[None]],
        failed: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self._clock = clock
        self._prober = prober
        self._spawner = spawner
        self._env = env
        self._ready = ready
        self._failed = failed
        self._line_seen = anyio.Event()
        self._notified_ready = anyio.Event()
        self._pinged = anyio.Event()
        self._triggered = False
        ready_probe = spec.ready
        self._pattern = (
            re.compile(ready_probe.target)
            if ready_probe is not None and ready_probe.kind is ProbeKind.LOG_LINE
            else None
        )

    @property
    def wants_lines(self) -> bool:
        """Whether ``lines`` must be called with the instance's output (a logLine probe
        that has not matched yet)."""
        return self._pattern is not None and not self._line_seen.is_set()

    def notify_ready(self) -> None:
        """The instance's tree sent ``READY=1`` (for a ``notify`` probe)."""
        self._notified_ready.set()

    def watchdog(self, value: str) -> None:
        """The instance's tree sent ``WATCHDOG=1`` (alive) or ``WATCHDOG=trigger`` (fail
        now), for a ``watchdog`` probe; other values are ignored, as systemd does."""
        if value == "trigger":
            self._triggered = True
        if value in ("1", "trigger"):
            self._pinged.set()

    def lines(self, lines: list[str]) -> None:
        """Lines the instance wrote (for a ``logLine`` probe)."""
        if self._pattern is not None and any(self._pattern.search(line) for line in lines):
            self._line_seen.set()

    async def run(self, spawned_at: float) -> None:
        """Probe until cancelled (the instance stopped) or a probe fails."""
        if self.spec.ready is not None:
            result = await self._until_ready(self.spec.ready, spawned_at)
            if result is not None:
                self._failed(f"not ready after {self.spec.ready_timeout:g}s: {result}")
                return
            await self._ready()
        if self.spec.health is not None:
            result = await self._until_unhealthy(self.spec.health)
            self._failed(result)

    async def _until_ready(self, probe: Probe, spawned_at: float) -> str | None:
        """None once ready; the last result once ``readyTimeout`` has passed."""
        deadline = spawned_at + self.spec.ready_timeout
        if probe.kind is ProbeKind.LOG_LINE:
            seen = await self._first(
                self._line_seen.wait, max(0.0, deadline - self._clock.monotonic())
            )
            return None if seen else f"no line matched {probe.target!r}"
        if probe.kind is ProbeKind.NOTIFY:
            seen = await self._first(
                self._notified_ready.wait, max(0.0, deadline - self._clock.monotonic())
            )
            return None if seen else "no READY=1 received over NOTIFY_SOCKET"
        if probe.initial_delay:
            await self._clock.sleep(probe.initial_delay)
        wait = FIRST_TRY
        result = "not tried"
        while True:
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return result
            await self._clock.sleep(min(wait, left))
            if self._clock.monotonic() >= deadline:
                return result
            tried = await self._try(probe)
            if tried is None:
                return None
            result = tried
            wait = min(wait * 2, probe.period)

    async def _until_unhealthy(self, probe: Probe) -> str:
        """Try every ``period``; the reason once ``failures`` tries in a row failed."""
        if probe.initial_delay:
            await self._clock.sleep(probe.initial_delay)
        failures = 0
        while True:
            if probe.kind is ProbeKind.WATCHDOG:
                result = await self._watchdog_interval(probe.period)
            else:
                await self._clock.sleep(probe.period)
                result = await self._try(probe)
            failures = 0 if result is None else failures + 1
            if result is not None and failures >= probe.failures:
                return f"health check failed {failures} time{'s' if failures > 1 else ''}: {result}"

    async def _watchdog_interval(self, period: float) -> str | None:
        """None when ``WATCHDOG=1`` came within ``period``; else why not."""
        pinged = await self._first(self._pinged.wait, period)
        self._pinged = anyio.Event()
        if self._triggered:
            self._triggered = False
            return "WATCHDOG=trigger received"
        return None if pinged else f"no WATCHDOG=1 within {period:g}s"

    async def _first(self, wait: Callable[[], Awaitable[object]], seconds: float) -> bool:
        """Whether ``wait`` returned before ``seconds`` passed on the clock."""
        done = False
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                nonlocal done
                await wait()
                done = True
                tg.cancel_scope.cancel()

            async def timer() -> None:
                await self._clock.sleep(seconds)
                tg.cancel_scope.cancel()

            tg.start_soon(waiter)
            tg.start_soon(timer)
        return done

    async def _try(self, probe: Probe) -> str | None:
        if probe.kind is ProbeKind.EXEC:
            return await self._exec(probe)
        assert self._prober is not None
        return await self._prober.check(probe)

    async def _exec(self, probe: Probe) -> str | None:
        """Run the command with the process's cwd and environment; its tree is killed
        when ``timeout`` passes."""
        request = SpawnRequest(
            process_id=f"{self.spec.id}-probe", argv=probe.command, cwd=self.spec.cwd, env=self._env
        )
        try:
            handle = await self._spawner.spawn(request)
        except SpawnError as exc:
            return str(exc)
        said: list[bytes] = []

        async def drain(source: object) -> None:
            async for chunk in source:  # type: ignore[attr-defined]
                said.append(chunk)

        code: int | None = None
        with anyio.CancelScope(shield=True):  # a stop of the instance still ends this tree
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, handle.stdout)
                tg.start_soon(drain, handle.stderr)
                with anyio.move_on_after(probe.timeout):
                    code = await handle.wait()
                if code is None:
                    await handle.stop("SIGKILL", 0.0)
        if code is None:
            return f"timed out after {probe.timeout:g}s"
        if code == 0:
            return None
        last = b"".join(said).decode(errors="replace").strip().splitlines()[-1:]
        detail = f": {last[0][:200]}" if last else ""
        return f"{shlex.join(probe.command)}: exited with code {code}{detail}"
