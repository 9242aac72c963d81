"""Log sinks: loguru records, per-process files with rotation, the in-memory ring buffer.

Each takes a ``LogBatch`` (consecutive lines of one stream) per call, so the cost per
line stays a list append or a string join, not a Python call per line per sink.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from typing import IO, TYPE_CHECKING, Any, TextIO

from loguru import logger

from processman.domain.errors import ConfigError
from processman.domain.ports import LogEntry

if TYPE_CHECKING:
    from datetime import datetime

    from processman.domain.model import LogSettings
    from processman.domain.ports import LogBatch, StreamName


class RingBufferSink:
    """The last ``capacity`` lines of each process, spanning restarts.

    It keeps the batches as they come (one append per batch, whatever its size) and
    builds ``LogEntry`` objects only for the lines a reader asks for.
    """

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._rings: dict[str, _Ring] = {}

    def write(self, batch: LogBatch) -> None:
        """Append the batch's lines to the process's ring."""
        if self.capacity <= 0:
            return
        ring = self._rings.get(batch.process)
        if ring is None:
            ring = self._rings[batch.process] = _Ring()
        lines = batch.lines if len(batch.lines) <= self.capacity else batch.lines[-self.capacity :]
        ring.batches.append((batch.time, batch.stream, lines))
        ring.count += len(lines)
        # drop whole batches while the rest still holds ``capacity`` lines
        while ring.count - len(ring.batches[0][2]) >= self.capacity:
            ring.count -= len(ring.batches.popleft()[2])

    def tail(self, process_id: str, count: int) -> list[LogEntry]:
        """The last ``count`` lines of a process (at most ``capacity``), oldest first."""
        ring = self._rings.get(process_id)
        count = min(count, self.capacity)
        if not ring or count <= 0:
            return []
        newest_first: list[LogEntry] = []
        for when, stream, lines in reversed(ring.batches):
            for line in reversed(lines[-(count - len(newest_first)) :]):
                newest_first.append(LogEntry(when, stream, line))
            if len(newest_first) >= count:
                break
        newest_first.reverse()
        return newest_first

    def close(self) -> None:
        """Nothing to release."""


class _Ring:
    __slots__ = ("batches", "count")

    def __init__(self) -> None:
        self.batches: deque[tuple[datetime, StreamName, list[str]]] = deque()
        self.count = 0


def _writable_directory(directory: str) -> None:
    """Create ``directory`` if need be, and prove a file can be made in it."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(errno.ENOTDIR, "it is not a directory")
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(directory, f".processman-probe-{os.getpid()}")
    with open(probe, "w"):
        pass
    os.remove(probe)


def logs_dir_problem(directory: str) -> str | None:
    """Why logs could not be written to ``directory`` (made if missing); None when they
    can. Asks without making anything (for ``processman check``)."""
    existing = directory
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    own = existing == directory
    if not os.path.isdir(existing):
        return "it is not a directory" if own else f"{existing} is not a directory"
    if not os.access(
        existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        return "permission denied" if own else f"{existing} cannot be written (permission denied)"
    return None


class FileSink:
    """``<dir>/<id>.log`` per process, each line prefixed with its time and stream.

    A file that reaches ``rotation_bytes`` is renamed ``<id>.log.1`` (older ones move
    up to ``.2`` ...); at most ``retention`` rotated files are kept. A file deleted under
    it (``rm -r logs``) is made anew, within ``check_interval`` seconds, as Python's
    ``WatchedFileHandler`` and loguru's ``watch=True`` do: lines written into a deleted
    file are lost without a word. (An ``fstat`` per batch would cost 2 us, a quarter of a
    one-line batch; once a second costs a clock reading.)
    """

    def __init__(
        self, directory: str, rotation_bytes: int, retention: int, check_interval: float = 1.0
    ) -> None:
        self.directory = directory
        self.rotation_bytes = rotation_bytes
        self.retention = retention
        self.check_interval = check_interval
        self._files: dict[str, tuple[IO[str], int]] = {}
        self._checked_at = time.monotonic()

    @classmethod
    def from_settings(cls, settings: LogSettings, source: str = "<config>") -> FileSink | None:
        """A sink for ``settings.dir``, or None when logs.dir is unset.

        Raises:
            ConfigError: naming ``logs.dir`` of ``source``, when the directory cannot be
                created or written: at start-up, not as a failure on every line.
        """
        if not settings.dir:
            return None
        try:
            _writable_directory(settings.dir)
        except OSError as exc:
            reason = f"cannot write logs to {settings.dir}: {exc.strerror or exc}"
            raise ConfigError(source, "logs.dir", reason) from None
        return cls(settings.dir, settings.rotation_bytes, settings.retention)

    def write(self, batch: LogBatch) -> None:
        """Append the batch to the process's file (rotating first if it is full)."""
        stamp = batch.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        prefix = f"{stamp} {batch.stream} | "
        text = prefix + ("\n" + prefix).join(batch.lines) + "\n"
        now = time.monotonic()
        if now - self._checked_at >= self.check_interval:
            self._checked_at = now
            self._forget_deleted()
        file, size = self._open(batch.process)
        if size and size + len(text) > self.rotation_bytes:
            self._rotate(batch.process)
            file, size = self._open(batch.process)
        try:
            file.write(text)
            file.flush()
        except OSError as exc:
            # A full disk: the batch is lost. The file is dropped with what its buffer
            # still holds, so that nothing of this batch turns up half later on, the
            # close at shutdown has nothing left to fail on, and the next batch opens
            # the file anew (ending the line the disk cut short).
            del self._files[batch.process]
            _close_quietly(file)
            raise OSError(exc.errno, exc.strerror, self._path(batch.process)) from None
        self._files[batch.process] = (file, size + len(text))

    def _forget_deleted(self) -> None:
        """Close the files no longer in any directory: the next write makes them anew."""
        for process_id, (file, _) in list(self._files.items()):
            if os.fstat(file.fileno()).st_nlink == 0:
                del self._files[process_id]
                _close_quietly(file)

    def _path(self, process_id: str) -> str:
        return os.path.join(self.directory, f"{process_id}.log")

    def _open(self, process_id: str) -> tuple[IO[str], int]:
        entry = self._files.get(process_id)
        if entry is None:
            os.makedirs(self.directory, exist_ok=True)
            path = self._path(process_id)
            cut_short = not _ends_a_line(path)
            file = open(  # noqa: SIM115 - kept open across batches, closed in close()
                path, "a", encoding="utf-8", errors="replace"
            )
            if cut_short:  # by a full disk or a crash: end that line, or the next is glued to it
                file.write("\n")
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
        """Close every file (each batch was flushed: there is nothing left to write)."""
        for file, _ in self._files.values():
            _close_quietly(file)
        self._files.clear()


def _close_quietly(file: IO[str]) -> None:
    try:
        file.close()
    except OSError:
        pass  # only what the failed write left in its buffer, already reported


def _ends_a_line(path: str) -> bool:
    """Whether the file at ``path`` is empty, missing, or ends with a newline."""
    try:
        with open(path, "rb") as file:
            if file.seek(0, os.SEEK_END) == 0:
                return True
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"
    except OSError:
        return True  # missing, or not a regular file: nothing to mend


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
CONSOLE_COLOURS = {
    "cyan": "36",
    "magenta": "35",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "red": "31",
    "light-cyan": "96",
    "light-magenta": "95",
    "light-green": "92",
    "light-yellow": "93",
    "light-blue": "94",
}


class ConsoleSink:
    """The loguru sink behind ``<time> <id> | <line>``: it formats its own line.

    loguru only renders ``{message}`` (and a traceback); the prefix is built here,
    because loguru's ``{time:HH:mm:ss.SSS}`` and markup parsing cost more than the rest
    of the log path together (a chatty child would be held back by its console).

    The lines are written by a thread of the sink's own, a batch at a time. A console
    that is not read (a paused pager, Ctrl-S in a terminal) used to block the manager's
    event loop in its write, and with it every child writing to a full pipe, and the
    API. Now it blocks that thread only; beyond ``limit`` bytes waiting, lines are
    dropped and counted (processman's own only beyond twice that), and the count is shown
    once the console reads again. ``stop`` (loguru calls it when the handler is removed)
    writes what waits, within ``STOP_GRACE`` seconds.
    """

    def __init__(
        self, process_ids: list[str], stream: TextIO, colorize: bool, limit: int = 1 << 20
    ) -> None:
        self.stream = stream
        self.width = max((len(pid) for pid in process_ids), default=0)
        self.colours = console_colours(process_ids)
        self.colorize = colorize
        self.limit = limit
        self._stamp = ((-1, -1, -1, -1), "")  # the last millisecond's "HH:MM:SS.mmm"
        self._lock = threading.Lock()
        self._waiting: list[str] = []
        self._waiting_bytes = 0
        self._dropped = 0
        self._stopping = False
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None

    def write(self, message: Any) -> None:
        """Format one record and hand it to the writer: never waits for the console."""
        line = self._format(message)
        # processman's own lines (a crash, the stop) have room beyond the children's
        own = message.record["extra"].get("stream") == "manager"
        with self._lock:
            if self._waiting_bytes >= (2 * self.limit if own else self.limit):
                self._dropped += 1
                return
            self._waiting.append(line)
            self._waiting_bytes += len(line)
            if self._writer is None:  # on the first line, not at construction
                self._writer = threading.Thread(
                    target=self._write_batches, name="processman-console", daemon=True
                )
                self._writer.start()
        if not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Write what waits (within ``STOP_GRACE`` seconds), and end the writer."""
        with self._lock:
            self._stopping = True
            writer = self._writer
        self._wake.set()
        if writer is not None:
            writer.join(STOP_GRACE)

    def _write_batches(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                lines, self._waiting, self._waiting_bytes = self._waiting, [], 0
                dropped, self._dropped = self._dropped, 0
                stopping = self._stopping
            if dropped:  # they came after the lines that were waiting
                lines.append(
                    f"[processman: {dropped} console lines dropped: the console was not read]\n"
                )
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # a closed or broken console: the other sinks have the lines
            if stopping:
                with self._lock:
                    if not self._waiting and not self._dropped:
                        return
                self._wake.set()

    def _next_colour(self, process: str) -> str:
        """A process the sink was not told of (an embedding host's) takes the next colour."""
        codes = list(CONSOLE_COLOURS.values())
        colour = self.colours[process] = codes[len(self.colours) % len(codes)]
        return colour

    def _format(self, message: Any) -> str:
        record = message.record
        extra = record["extra"]
        process = str(extra["process"])
        t = record["time"]
        when = (t.microsecond // 1000, t.second, t.minute, t.hour)
        if when == self._stamp[0]:  # a chatty child writes many lines a millisecond
            stamp = self._stamp[1]
        else:
            stamp = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{when[0]:03d}"
            self._stamp = (when, stamp)
        text = str(message)  # the line, a newline, and a traceback if there is one
        colour = None
        if self.colorize:
            colour = self.colours.get(process) or self._next_colour(process)
        return console_line(
            stamp, process, self.width, text, colour, extra.get("stream") == "manager"
        )


def console_line(
    stamp: str, process: str, width: int, text: str, colour: str | None, dim: bool = False
) -> str:
    """``<stamp> <id> | <text>``, the id padded to ``width``; with ``colour`` (an ANSI
    code of ``CONSOLE_COLOURS``) the stamp is dimmed, the id coloured, and with ``dim``
    the text too (processman's own lines). ``text`` ends with its newline."""
    if colour is None:
        return f"{stamp} {process: <{width}} | {text}"
    line = f"\x1b[2m{stamp}\x1b[0m \x1b[{colour}m{process: <{width}}\x1b[0m | "
    if dim:
        text = f"\x1b[2m{text.rstrip(chr(10))}\x1b[0m\n"
    return line + text


def console_colours(process_ids: list[str]) -> dict[str, str]:
    """The console's colour of each process: by its place in the config."""
    codes = list(CONSOLE_COLOURS.values())
    return {pid: codes[i % len(codes)] for i, pid in enumerate(process_ids)}


#: How long the console's last lines may take to be written when processman stops: a
#: console that is not read must not hold up the exit for ever.
STOP_GRACE = 5.0


def should_colorize(stream: TextIO) -> bool:
    """Whether to colour ``stream``: a terminal, unless ``NO_COLOR`` (or ``FORCE_COLOR``)."""
    return _should_colorize(stream)


def _should_colorize(stream: TextIO) -> bool:
    if "NO_COLOR" in os.environ:
        return False
    if "FORCE_COLOR" in os.environ:
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def add_console_sink(
    process_ids: list[str], stream: TextIO, *, colorize: bool | None, children: bool = True
) -> int:
    """Add the console sink ``<time> <id> | <line>`` (a colour per process) to loguru.

    Only records that carry a ``process`` extra are shown, and with ``children`` False
    (``console = false``) only processman's own warnings and errors: a restart, a crash,
    a log file that cannot be written; not a line per start and stop (500 of those cost
    a launch of 500 children ~4 %). Colours follow the stream (a terminal, ``NO_COLOR``,
    ``FORCE_COLOR``) when ``colorize`` is None. Returns the handler id, so the caller
    removes exactly what it added.
    """
    sink = ConsoleSink(
        process_ids, stream, _should_colorize(stream) if colorize is None else colorize
    )
    return logger.add(
        sink,
        format="{message}",  # loguru adds "\n{exception}"
        filter=_any_process if children else _the_manager,
        colorize=False,
        level="INFO" if children else "WARNING",
    )


def _any_process(record: Any) -> bool:
    return "process" in record["extra"]


def _the_manager(record: Any) -> bool:
    return "process" in record["extra"] and record["extra"].get("stream") == "manager"
