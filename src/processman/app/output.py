"""Pumping a process's output into the log sinks: the readers, the drain, sink failures.

One ``OutputPump`` per process, for every instance it runs: each instance's stdout and
stderr are read to their end, split into lines, and handed to every sink in batches.
A sink that fails is said once (not on every batch) and again when it works again; the
others and the child go on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from processman.domain.lines import LineSplitter
from processman.domain.ports import LogBatch

#: How long a stop waits for an instance's pipes to reach their end once its tree is
#: gone (longer only when a process that escaped the tree still holds them).
DRAIN_GRACE = 1.0

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Sequence

    from anyio.abc import TaskGroup
    from loguru import Logger

    from processman.domain.ports import Clock, LogSink, ProcessHandle, StreamName


class OutputPump:
    """Reads every instance's output of process ``process_id`` into ``sinks``."""

    def __init__(
        self,
        process_id: str,
        *,
        sinks: Sequence[LogSink],
        clock: Clock,
        task_group: TaskGroup,
        log: Logger,
    ) -> None:
        self._process_id = process_id
        self._sinks = sinks
        self._clock = clock
        self._tg = task_group
        self._log = log
        #: lines written so far, per stream
        self.lines: dict[str, int] = {"stdout": 0, "stderr": 0}
        self._failing: set[int] = set()  # id() of the sinks whose last write failed
        self._open_streams = 0
        self._readers: set[anyio.CancelScope] = set()
        self._drained = anyio.Event()
        self._drained.set()
        self._instances: dict[ProcessHandle, _Streams] = {}  # those not read to their end
        #: called with (pid, lines) for every batch while set (a logLine probe)
        self.line_hook: Callable[[int, list[str]], None] | None = None

    @property
    def open_streams(self) -> int:
        """Output streams not yet read to their end (two per live instance)."""
        return self._open_streams

    def start(self, handle: ProcessHandle) -> None:
        """Read the instance's stdout and stderr until their end."""
        if self._open_streams == 0:
            self._drained = anyio.Event()
        self._open_streams += 2
        self._instances[handle] = _Streams()
        self._tg.start_soon(self._pump, handle, "stdout", handle.stdout)
        self._tg.start_soon(self._pump, handle, "stderr", handle.stderr)

    async def wait_instance(self, handle: ProcessHandle) -> None:
        """Wait until both output streams of ``handle`` have been read to their end, so
        that its last lines are in the sinks and its pipes are closed."""
        streams = self._instances.get(handle)
        if streams is not None:
            if streams.ended is None:
                streams.ended = anyio.Event()
            await streams.ended.wait()

    async def wait_drained(self) -> None:
        """Wait until every output stream of every instance has been read to its end."""
        await self._drained.wait()

    def cancel(self) -> None:
        """End the readers still running (the manager's last step)."""
        for scope in list(self._readers):
            scope.cancel()

    async def _pump(
        self, handle: ProcessHandle, stream: StreamName, source: AsyncIterable[bytes]
    ) -> None:
        """Read one stream to its end, handing lines to the sinks in batches.

        Shielded: when the manager's block is left by a cancellation (a timeout of the
        host's, its task group cancelled), what the children say while they are stopped is
        still read; the manager ends lingering readers itself (``cancel``).
        """
        with anyio.CancelScope(shield=True) as scope:
            self._readers.add(scope)
            try:
                await self._read(handle.pid, stream, source)
            finally:
                self._readers.discard(scope)
                self._ended(handle)

    def _ended(self, handle: ProcessHandle) -> None:
        """One stream of ``handle`` is read to its end (or its reader was cancelled)."""
        self._open_streams -= 1
        if self._open_streams == 0:
            self._drained.set()
        streams = self._instances[handle]
        streams.open -= 1
        if streams.open == 0:
            del self._instances[handle]
            if streams.ended is not None:
                streams.ended.set()

    async def _read(self, pid: int, stream: StreamName, source: AsyncIterable[bytes]) -> None:
        splitter = LineSplitter()
        try:
            async for chunk in source:
                lines = splitter.feed(chunk)
                if lines:
                    self.emit(pid, stream, lines)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        rest = splitter.flush()
        if rest:
            self.emit(pid, stream, rest)

    def emit(self, pid: int, stream: StreamName, lines: list[str]) -> None:
        """Hand one batch of lines to every sink."""
        batch = LogBatch(self._process_id, stream, pid, self._clock.utcnow(), lines)
        self.lines[stream] += len(lines)
        if self.line_hook is not None:
            self.line_hook(pid, lines)
        for sink in self._sinks:
            try:
                sink.write(batch)
            except Exception as exc:  # a broken sink must not stop the others or the child
                self._sink_failed(sink, exc)
            else:
                if self._failing and id(sink) in self._failing:
                    self._failing.discard(id(sink))
                    self._log.info("log sink {} works again", type(sink).__name__)

    def _sink_failed(self, sink: LogSink, exc: Exception) -> None:
        """Say so once, not on every batch (a full disk fails each of them)."""
        if id(sink) in self._failing:
            return
        self._failing.add(id(sink))
        # an OSError is the world (a full disk, permissions); anything else is a bug in
        # the sink, worth its traceback once
        log = self._log if isinstance(exc, OSError) else self._log.opt(exception=exc)
        log.error(
            "log sink {} failed: {}; its lines are lost until it works again",
            type(sink).__name__,
            exc,
        )


class _Streams:
    """The output streams of one instance not yet read to their end, and the event a
    stop waits on (made only then: most instances are never waited for)."""

    __slots__ = ("ended", "open")

    def __init__(self) -> None:
        self.open = 2
        self.ended: anyio.Event | None = None
