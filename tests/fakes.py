"""Hand-written fakes of the ports: they record what happened and take behaviour as callables."""

from __future__ import annotations

import itertools
import os
import signal as signal_module
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from processman.domain.model import Probe
    from processman.domain.ports import LogBatch, SpawnRequest, WatchRequest

from processman.adapters.watch import IgnoreMatcher
from processman.domain.ports import Usage


class FakeClock:
    """A clock that moves only when ``advance`` is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def monotonic(self) -> float:
        return self.now

    def utcnow(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        sleeper = (self.now + seconds, anyio.Event())
        self._sleepers.append(sleeper)
        try:
            await sleeper[1].wait()
        finally:
            if sleeper in self._sleepers:  # cancelled before it was due
                self._sleepers.remove(sleeper)

    @property
    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes (None when nobody sleeps)."""
        return min((deadline for deadline, _ in self._sleepers), default=None)

    async def advance(self, seconds: float) -> None:
        """Move time on, wake the sleepers that are due, and let every task settle."""
        self.now += seconds
        due = [s for s in self._sleepers if s[0] <= self.now + 1e-9]
        self._sleepers = [s for s in self._sleepers if s[0] > self.now + 1e-9]
        for _, event in due:
            event.set()
        await anyio.wait_all_tasks_blocked()


class _Output:
    """An async iterable of bytes that ends when closed."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[bytes](1000)

    def write(self, data: bytes) -> None:
        self._send.send_nowait(data)

    def close(self) -> None:
        self._send.close()

    def __aiter__(self) -> _Output:
        # an iterator object, not an async generator, as the real pipes: a reader may stop
        # and go on later (the spawner contract suite does)
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            raise StopAsyncIteration from None


@dataclass(frozen=True)
class FakeProgram:
    """What a pretend child does: say ``stdout`` and ``stderr`` at once, then exit with
    ``exit`` (None: run until stopped); a stop signal in ``ignores`` waits out the grace."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit: int | None = None
    ignores: frozenset[str] = frozenset()


class FakeProcess:
    """A pretend child: it runs until ``exit()`` or ``stop()``."""

    _pids = itertools.count(1000)

    def __init__(self, request: SpawnRequest, spawner: FakeSpawner) -> None:
        self.request = request
        self.pid = next(self._pids)
        self.stdout = _Output()
        self.stderr = _Output()
        self.code: int | None = None
        self.stop_calls: list[tuple[str, float]] = []
        self.signals: list[str] = []
        self._exited = anyio.Event()
        self._spawner = spawner
        self.program = next(
            (
                spawner.programs[a]
                for a in map(os.path.basename, request.argv)
                if a in spawner.programs
            ),
            None,
        )
        if self.program is not None:
            for stream, data in (
                (self.stdout, self.program.stdout),
                (self.stderr, self.program.stderr),
            ):
                if data:
                    stream.write(data)

    def exit(self, code: int) -> None:
        """The child ends by itself with ``code``."""
        if self.code is None:
            self.code = code
            self.stdout.close()
            self.stderr.close()
            self._spawner.alive.discard(self)
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.code is not None
        return self.code

    def holds(self, pid: int) -> bool:
        return pid == self.pid

    #: what ``usage`` answers while it runs: (CPU seconds, resident bytes)
    measured: tuple[float, int] = (0.0, 0)
    limits_memory = False
    oom_killed = False

    def usage(self) -> Usage | None:
        return None if self.code is not None else Usage(*self.measured)

    def killed_for_memory(self) -> bool:
        return self.oom_killed

    def signal(self, signal: str) -> None:
        if not hasattr(signal_module, signal):
            raise ValueError(f"{signal} does not exist on this platform")
        self.signals.append(signal)

    async def stop(self, signal: str, grace: float) -> int | None:
        self.stop_calls.append((signal, grace))
        if self._spawner.on_stop is not None:  # e.g. a child slow to go
            await self._spawner.on_stop(self)
        await anyio.lowlevel.checkpoint()
        if self.program is not None and signal in self.program.ignores and self.code is None:
            with anyio.move_on_after(grace):
                await self._exited.wait()  # a second stop (SIGKILL) may end it first
            signal = "SIGKILL"
        self.exit(-int(getattr(signal_module, signal)))
        return self.code


class FakeSpawner:
    """Records every request; ``behaviour`` may raise SpawnError or return None (a normal child),
    ``on_stop`` runs when a stop begins, before the child goes."""

    def __init__(
        self,
        behaviour: Callable[[SpawnRequest], None] | None = None,
        on_stop: Callable[[FakeProcess], Awaitable[None]] | None = None,
        programs: Mapping[str, FakeProgram] | None = None,
    ) -> None:
        self.behaviour = behaviour
        self.on_stop = on_stop
        self.programs = dict(programs or {})  # by the name of an argv word (a script)
        self.requests: list[SpawnRequest] = []
        self.processes: list[FakeProcess] = []
        self.alive: set[FakeProcess] = set()
        self.max_alive = 0
        self.closed = 0  # aclose calls

    async def spawn(self, request: SpawnRequest) -> FakeProcess:
        self.requests.append(request)
        if self.behaviour is not None:
            self.behaviour(request)
        await anyio.lowlevel.checkpoint()
        process = FakeProcess(request, self)
        self.processes.append(process)
        self.alive.add(process)
        self.max_alive = max(self.max_alive, len(self.alive))
        if process.program is not None and process.program.exit is not None:
            process.exit(process.program.exit)
        return process

    async def aclose(self) -> None:
        self.closed += 1

    @property
    def last(self) -> FakeProcess:
        return self.processes[-1]


class RecordingSink:
    """A log sink that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[LogBatch] = []
        self.closed = False

    def write(self, batch: LogBatch) -> None:
        self.batches.append(batch)

    def close(self) -> None:
        self.closed = True

    def lines(self, process: str | None = None) -> list[str]:
        return [line for b in self.batches if process in (None, b.process) for line in b.lines]


class FakeWatcher:
    """A ``FileWatcher`` driven by the test.

    ``emit(paths)`` reports a batch at once; ``touch(path)`` behaves like the real
    adapter: it drops ignored paths (the same ``IgnoreMatcher``) and reports the batch
    once no touch came for the request's debounce.
    """

    def __init__(self, fail: Callable[[WatchRequest], None] | None = None) -> None:
        self.fail = fail
        self.requests: list[WatchRequest] = []
        self._watches: list[tuple[WatchRequest, IgnoreMatcher, Callable[[set[str]], None]]] = []
        self._pending: set[str] = set()
        self._generation = 0

    async def watch(self, request: WatchRequest, on_change: Callable[[set[str]], None]) -> None:
        self.requests.append(request)
        if self.fail is not None:
            self.fail(request)
        entry = (
            request,
            IgnoreMatcher(request.paths, request.ignore, request.ignore_dirs),
            on_change,
        )
        self._watches.append(entry)
        try:
            await anyio.sleep_forever()
        finally:
            self._watches.remove(entry)

    def emit(self, *paths: str) -> None:
        for _, _, on_change in self._watches:
            on_change(set(paths))

    async def touch(self, path: str) -> None:
        self._pending.add(path)
        self._generation += 1
        generation = self._generation
        debounce = max((request.debounce for request, _, _ in self._watches), default=0.05)
        await anyio.sleep(debounce)
        if generation != self._generation:
            return  # a later touch restarted the quiet period
        pending, self._pending = self._pending, set()
        for _, matcher, on_change in self._watches:
            if any(os.path.basename(p) == ".gitignore" for p in pending):
                matcher.rescan()
            kept = {p for p in pending if not matcher.ignored(p)}
            if kept:
                on_change(kept)


class FakeProber:
    """``Prober`` whose tries answer ``result(probe)`` (None: passed); records when each
    try came, by the fake clock."""

    def __init__(self, clock: FakeClock, result: Callable[[Probe], str | None]) -> None:
        self.clock = clock
        self.result = result
        self.tries: list[tuple[float, str]] = []
        self.closed = 0

    async def check(self, probe: Probe) -> str | None:
        self.tries.append((self.clock.now, probe.target))
        await anyio.lowlevel.checkpoint()
        return self.result(probe)

    async def aclose(self) -> None:
        self.closed += 1
