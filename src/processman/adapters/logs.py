"""Log sinks: loguru records, per-process files with rotation, the in-memory ring buffer.

Each takes a ``LogBatch`` (consecutive lines of one stream) per call, so the cost per
line stays a list append or a string join, not a Python call per line per sink.
"""

from __future__ import annotations

import os
from collections import deque
from typing import IO, TYPE_CHECKING, Any, TextIO

from loguru import logger

from processman.domain.ports import LogEntry

if TYPE_CHECKING:
    from processman.domain.model import LogSettings
    from processman.domain.ports import LogBatch


class RingBufferSink:
    """The last ``capacity`` lines of each process, spanning restarts."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._lines: dict[str, deque[LogEntry]] = {}

    def write(self, batch: LogBatch) -> None:
        """Append the batch's lines to the process's ring."""
        ring = self._lines.get(batch.process)
        if ring is None:
            ring = self._lines[batch.process] = deque(maxlen=self.capacity)
        time, stream = batch.time, batch.stream
        lines = batch.lines[-self.capacity :] if self.capacity else []
        ring.extend(LogEntry(time, stream, line) for line in lines)

    def tail(self, process_id: str, count: int) -> list[LogEntry]:
        """The last ``count`` lines of a process, oldest first."""
        ring = self._lines.get(process_id)
        if not ring or count <= 0:
            return []
        if count >= len(ring):
            return list(ring)
        return list(ring)[-count:]

    def close(self) -> None:
        """Nothing to release."""


class FileSink:
    """``<dir>/<id>.log`` per process, each line prefixed with its time and stream.

    A file that reaches ``rotation_bytes`` is renamed ``<id>.log.1`` (older ones move
    up to ``.2`` ...); at most ``retention`` rotated files are kept.
    """

    def __init__(self, directory: str, rotation_bytes: int, retention: int) -> None:
        self.directory = directory
        self.rotation_bytes = rotation_bytes
        self.retention = retention
        self._files: dict[str, tuple[IO[str], int]] = {}

    @classmethod
    def from_settings(cls, settings: LogSettings) -> FileSink | None:
        """A sink for ``settings.dir``, or None when logs.dir is unset."""
        if not settings.dir:
            return None
        return cls(settings.dir, settings.rotation_bytes, settings.retention)

    def write(self, batch: LogBatch) -> None:
        """Append the batch to the process's file (rotating first if it is full)."""
        stamp = batch.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        prefix = f"{stamp} {batch.stream} | "
        text = prefix + ("\n" + prefix).join(batch.lines) + "\n"
        file, size = self._open(batch.process)
        if size and size + len(text) > self.rotation_bytes:
            self._rotate(batch.process)
            file, size = self._open(batch.process)
        file.write(text)
        file.flush()
        self._files[batch.process] = (file, size + len(text))

    def _path(self, process_id: str) -> str:
        return os.path.join(self.directory, f"{process_id}.log")

    def _open(self, process_id: str) -> tuple[IO[str], int]:
        entry = self._files.get(process_id)
        if entry is None:
            os.makedirs(self.directory, exist_ok=True)
            file = open(  # noqa: SIM115 - kept open across batches, closed in close()
                self._path(process_id), "a", encoding="utf-8", errors="replace"
            )
            entry = self._files[process_id] = (file, file.tell())
        return entry

    def _rotate(self, process_id: str) -> None:
        file, _ = self._files.pop(process_id)
        file.close()
        path = self._path(process_id)
        if self.retention <= 0:
            os.remove(path)
            return
        oldest = f"{path}.{self.retention}"
        if os.path.exists(oldest):
            os.remove(oldest)
        for number in range(self.retention - 1, 0, -1):
            if os.path.exists(f"{path}.{number}"):
                os.replace(f"{path}.{number}", f"{path}.{number + 1}")
        os.replace(path, f"{path}.1")

    def close(self) -> None:
        """Close every file."""
        for file, _ in self._files.values():
            file.close()
        self._files.clear()


class LoguruSink:
    """One loguru record per line, with ``extra`` process, stream and pid.

    processman calls ``logger.disable("processman")`` on import, as a library should:
    these records reach loguru's sinks once the application calls
    ``logger.enable("processman")`` (``processman run`` does).
    """

    def __init__(self) -> None:
        self._bound: dict[tuple[str, str, int], Any] = {}

    def write(self, batch: LogBatch) -> None:
        """Log each line of the batch at INFO."""
        key = (batch.process, batch.stream, batch.pid)
        bound = self._bound.get(key)
        if bound is None:
            if len(self._bound) > 1024:
                self._bound.clear()
            bound = self._bound[key] = logger.bind(
                process=batch.process, stream=batch.stream, pid=batch.pid
            )
        for line in batch.lines:
            bound.info(line)

    def close(self) -> None:
        """Nothing to release (sinks belong to whoever added them)."""


#: ANSI colours handed out to processes in config order on the console.
CONSOLE_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "red",
    "light-cyan",
    "light-magenta",
    "light-green",
    "light-yellow",
    "light-blue",
)


def add_console_sink(process_ids: list[str], stream: TextIO, *, colorize: bool | None) -> int:
    """Add the console sink ``<time> <id> | <line>`` (a colour per process) to loguru.

    Only records that carry a ``process`` extra are shown; returns the handler id, so
    the caller removes exactly what it added.
    """
    colours = {pid: CONSOLE_COLOURS[i % len(CONSOLE_COLOURS)] for i, pid in enumerate(process_ids)}
    width = max((len(pid) for pid in process_ids), default=0)

    def format_record(record: Any) -> str:
        extra = record["extra"]
        colour = colours.get(extra.get("process"), "white")
        message = "{message}"
        if extra.get("stream") == "manager":
            message = "<dim>{message}</dim>"
        return (
            "<dim>{time:HH:mm:ss.SSS}</dim> "
            f"<{colour}>{{extra[process]: <{width}}}</{colour}> | {message}\n{{exception}}"
        )

    return logger.add(
        stream,
        format=format_record,
        filter=lambda record: "process" in record["extra"],
        colorize=colorize,
        level="INFO",
    )
