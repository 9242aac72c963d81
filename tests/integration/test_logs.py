"""Log bridging with real children: files, rotation, odd bytes, a chatty child."""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
import pytest
from loguru import logger

from processman import ConfigError, ProcessManager, Status
from processman.adapters.logs import ConsoleSink, FileSink, LoguruSink, add_console_sink
from processman.domain.model import ProcessSpec, RestartPolicy
from tests.fakes import RecordingSink
from tests.integration.helpers import config, script, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from loguru import Message

    from processman.domain.ports import LogBatch

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # about files and disks: trio runs the same sinks in test_supervise


LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (stdout|stderr) \| (.*)$")


async def test_hundred_thousand_lines_all_in_the_file_in_order(tmp_path: Path) -> None:
    count = 100_000
    spec = script("chatty", "chatty.py", str(count))
    async with ProcessManager(config(spec, dir=str(tmp_path))) as m:
        # the child writes everything, then says so on stderr and sleeps: it was never blocked
        last = f"line {count - 1:07d} of a chatty child"
        log = tmp_path / "chatty.log"
        await wait_until(lambda: log.exists() and last in _tail(log), 30)
    text = (tmp_path / "chatty.log").read_text().splitlines()
    stdout = []
    for row in text:
        match = LINE.match(row)
        assert match, row
        if match.group(1) == "stdout":
            stdout.append(match.group(2))
    assert stdout == [f"line {i:07d} of a chatty child" for i in range(count)]
    assert len(m.logs("chatty", 10**9)) == 1000  # the ring keeps bufferLines


def _tail(path: Path) -> str:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - 4096))
        return file.read().decode(errors="replace")


async def test_invalid_utf8_long_lines_and_an_unterminated_line(tmp_path: Path) -> None:
    spec = script("raw", "raw_bytes.py", restart="never")
    async with ProcessManager(config(spec, dir=str(tmp_path))) as m:
        await m.wait_for_status("raw", "exited")
        await wait_until(lambda: len(m.logs("raw", 10)) == 4)
        lines = [e.line for e in m.logs("raw", 10)]
    assert lines[0] == "bad \ufffd\ufffd bytes"
    assert lines[1] == "x" * 65536 and lines[2] == "x" * (70 * 1024 - 65536)
    assert lines[3] == "no newline at the end"
    assert (tmp_path / "raw.log").read_text().count("\n") == 4


def test_file_sink_rotates_and_keeps_retention(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from processman.domain.ports import LogBatch

    sink = FileSink(str(tmp_path), rotation_bytes=200, retention=2)
    for i in range(20):
        sink.write(LogBatch("p", "stdout", 1, datetime.now(UTC), [f"batch {i:02d} " + "x" * 40]))
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["p.log", "p.log.1", "p.log.2"]
    assert all(p.stat().st_size <= 200 for p in tmp_path.iterdir())
    assert "batch 19" in (tmp_path / "p.log").read_text()


def test_a_logs_dir_that_cannot_be_written_is_refused_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spec = script("echo", "echo.py")
    for bad, reason in ((blocker, "it is not a directory"), (blocker / "sub", "Not a directory")):
        with pytest.raises(ConfigError) as info:
            ProcessManager(config(spec, dir=str(bad)))
        assert info.value.field == "logs.dir"
        assert info.value.reason == f"cannot write logs to {bad}: {reason}"
    made = tmp_path / "new" / "logs"
    ProcessManager(config(spec, dir=str(made)))  # nothing spawns before __aenter__
    assert made.is_dir() and not list(made.iterdir())  # created, and the probe removed


def _manager_records() -> tuple[list[tuple[str, bool]], int]:
    """Collect processman's own log records: (message, whether it has a traceback)."""
    said: list[tuple[str, bool]] = []

    def keep(message: Message) -> None:
        if message.record["extra"].get("stream") == "manager":
            said.append((message.record["message"], bool(message.record["exception"])))

    logger.enable("processman")
    return said, logger.add(keep)


def _stop_recording(handler: int) -> None:
    logger.remove(handler)
    logger.disable("processman")


class _FailingSink(RecordingSink):
    """Fails its first ``failures`` writes with ``error``, then records."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error

    def write(self, batch: LogBatch) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        super().write(batch)


@pytest.mark.parametrize(
    ("error", "traceback"),
    [(OSError(28, "No space left on device"), False), (KeyError("bug"), True)],
)
async def test_a_failing_sink_is_reported_once_and_its_recovery_too(
    error: Exception, traceback: bool
) -> None:
    said, handler = _manager_records()
    failing, healthy = _FailingSink(3, error), RecordingSink()
    ticks = (
        "import time\nfor i in range(40):\n    print('tick', i, flush=True)\n    time.sleep(0.005)"
    )
    spec = ProcessSpec(id="ticker", cwd="/", command=(sys.executable, "-c", ticks), restart="never")
    try:
        async with ProcessManager(config(spec), log_sinks=[failing, healthy]) as m:
            status = await m.wait_for_status("ticker", Status.EXITED)
            assert status.exit_code == 0  # the child never noticed
    finally:
        _stop_recording(handler)
    failed = [(message, exc) for message, exc in said if "log sink _FailingSink" in message]
    assert failed == [
        (
            f"log sink _FailingSink failed: {error}; its lines are lost until it works again",
            traceback,
        ),
        ("log sink _FailingSink works again", False),
    ]
    assert healthy.lines() == [f"tick {i}" for i in range(40)]  # the other sink lost nothing
    assert (
        failing.lines() == healthy.lines()[-len(failing.lines()) :] and "tick 39" in failing.lines()
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full stands in for a full disk")
async def test_a_full_disk_costs_only_its_lines_and_the_file_resumes(tmp_path: Path) -> None:
    log = tmp_path / "ticker.log"
    log.symlink_to("/dev/full")  # every write to it fails with ENOSPC, as on a full disk
    ticks = "import sys\nfor i in range(50):\n    print(sys.argv[1], i, flush=True)"
    spec = ProcessSpec(
        id="ticker",
        cwd="/",
        command=(sys.executable, "-c", ticks),
        args=("first",),
        restart="never",
    )
    said, handler = _manager_records()
    try:
        async with ProcessManager(config(spec, dir=str(tmp_path))) as m:
            await m.wait_for_status("ticker", Status.EXITED)
            await wait_until(lambda: len(m.logs("ticker", 100)) == 50)
            log.unlink()  # space again
            await m.restart("ticker")
            await m.wait_for_status("ticker", Status.EXITED)
            await wait_until(lambda: "first 49" in [e.line for e in m.logs("ticker", 100)])
            await wait_until(lambda: log.exists() and "first 49" in log.read_text())
        # the block ended without an error: nothing was left half-written to fail the close
    finally:
        _stop_recording(handler)
    assert [e.line for e in m.logs("ticker", 100)] == [f"first {i}" for i in range(50)] * 2
    written = [row.split(" | ", 1)[1] for row in log.read_text().splitlines()]
    assert written == [f"first {i}" for i in range(50)]  # the second run, whole
    assert [message for message, _ in said if "log sink" in message] == [
        f"log sink FileSink failed: [Errno 28] No space left on device: '{log}'; "
        "its lines are lost until it works again",
        "log sink FileSink works again",
    ]


def test_file_sink_ends_a_line_a_crash_left_unfinished(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from processman.domain.ports import LogBatch

    (tmp_path / "p.log").write_text("2026-11-29T00:00:00.000Z stdout | cut off mid-li")
    sink = FileSink(str(tmp_path), rotation_bytes=10**6, retention=1)
    sink.write(LogBatch("p", "stdout", 1, datetime.now(UTC), ["next"]))
    sink.close()
    rows = (tmp_path / "p.log").read_text().splitlines()
    assert [row.split(" | ", 1)[1] for row in rows] == ["cut off mid-li", "next"]


class _CloseFails(RecordingSink):
    def close(self) -> None:
        raise OSError(5, "Input/output error")


async def test_a_sink_that_fails_to_close_does_not_fail_the_shutdown() -> None:
    broken, after = _CloseFails(), RecordingSink()
    spec = script("echo", "echo.py")
    said, handler = _manager_records()
    try:
        async with ProcessManager(config(spec), log_sinks=[broken, after]) as m:
            await m.wait_for_status("echo", Status.RUNNING)
    finally:
        _stop_recording(handler)
    assert m.status("echo").status == Status.STOPPED
    assert after.closed  # the sinks after it were closed all the same
    assert ("log sink _CloseFails failed to close: [Errno 5] Input/output error", False) in said


def test_file_sink_makes_a_deleted_file_anew(tmp_path: Path) -> None:
    import shutil
    from datetime import UTC, datetime

    from processman.domain.ports import LogBatch

    logs = tmp_path / "logs"
    sink = FileSink(str(logs), rotation_bytes=10**6, retention=1, check_interval=0.0)
    sink.write(LogBatch("p", "stdout", 1, datetime.now(UTC), ["before"]))
    shutil.rmtree(logs)  # the directory and the open file with it
    sink.write(LogBatch("p", "stdout", 1, datetime.now(UTC), ["after"]))
    sink.close()
    assert [row.split(" | ")[1] for row in (logs / "p.log").read_text().splitlines()] == ["after"]


async def test_loguru_records_and_the_console_format() -> None:
    records: list[dict[str, object]] = []
    console = io.StringIO()
    logger.enable("processman")
    handler = logger.add(lambda m: records.append(m.record["extra"] | {"msg": m.record["message"]}))
    console_handler = add_console_sink(["echo"], console, colorize=False)
    try:
        spec = script("echo", "echo.py")
        async with ProcessManager(config(spec), log_sinks=[LoguruSink()]) as m:
            await wait_until(lambda: any(r.get("msg") == "Hello from Python" for r in records))
            pid = m.status("echo").pid
    finally:
        logger.remove(handler)
        logger.remove(console_handler)
        logger.disable("processman")
    hello = next(r for r in records if r.get("msg") == "Hello from Python")
    assert hello["process"] == "echo" and hello["stream"] == "stdout" and hello["pid"] == pid
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} echo \| Hello from Python$", console.getvalue(), re.M)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "colorize", "environ", "coloured"),
    [
        (io.StringIO, None, {}, False),  # not a terminal
        (_Terminal, None, {}, True),
        (_Terminal, None, {"NO_COLOR": "1"}, False),
        (io.StringIO, None, {"FORCE_COLOR": "1"}, True),
        (_Terminal, False, {}, False),  # the caller decides
        (io.StringIO, True, {}, True),
    ],
)
def test_console_colours_follow_the_stream_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    stream: type[io.StringIO],
    colorize: bool | None,
    environ: dict[str, str],
    coloured: bool,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    console = stream()
    handler = add_console_sink(["web", "db"], console, colorize=colorize)
    logger.enable("processman")
    try:
        logger.bind(process="db", stream="stdout", pid=1).info("a <red>line</red> {x}")
        logger.bind(process="web", stream="manager", pid=None).warning("stopped")
        logger.info("a record without a process is not shown")
    finally:
        logger.remove(handler)
        logger.disable("processman")
    lines = console.getvalue().splitlines()
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert [line[13:] for line in plain] == ["db  | a <red>line</red> {x}", "web | stopped"]
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{3} ", line) for line in plain)
    assert ("\x1b[" in console.getvalue()) is coloured
    if coloured:  # one colour per process, in config order; manager lines dimmed
        assert "\x1b[35mdb \x1b[0m | " in lines[0] and "\x1b[36mweb\x1b[0m | " in lines[1]
        assert lines[1].endswith("\x1b[2mstopped\x1b[0m")


class _Message(str):
    """What loguru hands a callable sink: the formatted text, with ``record``."""

    record: dict[str, object]


def _message(text: str, when: datetime) -> _Message:
    message = _Message(text + "\n")
    message.record = {"extra": {"process": "web", "stream": "stdout"}, "time": when}
    return message


def test_console_stamps_each_line_with_its_own_millisecond() -> None:
    console = io.StringIO()
    sink = ConsoleSink(["web"], console, colorize=False)
    base = datetime(2026, 11, 28, 9, 5, 7, 123_000)
    for when in (
        base,
        base.replace(microsecond=123_999),  # the same millisecond
        base.replace(microsecond=124_000),
        base.replace(hour=10, microsecond=124_000),  # only the hour differs
        base.replace(microsecond=123_000),
    ):
        sink.write(_message("x", when))
    sink.stop()
    assert [line[:12] for line in console.getvalue().splitlines()] == [
        "09:05:07.123",
        "09:05:07.123",
        "09:05:07.124",
        "10:05:07.124",
        "09:05:07.123",
    ]


@pytest.mark.parametrize("buffering", [-1, 1])  # a buffered file, a line-buffered one
def test_console_lines_reach_the_file_at_once(tmp_path: Path, buffering: int) -> None:
    path = tmp_path / "console"
    with open(path, "w", buffering=buffering) as stream:
        sink = ConsoleSink(["web"], stream, colorize=False)
        sink.write(_message("first", datetime(2026, 11, 28, 9, 5, 7)))
        deadline = time.monotonic() + 5
        while not path.read_text().endswith("web | first\n"):  # before the stop, the close
            assert time.monotonic() < deadline, "the line never reached the file"
            time.sleep(0.01)
        sink.stop()


class _StuckConsole(io.StringIO):
    """A console nobody reads: a write waits until ``read_again`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.read_again = threading.Event()

    def write(self, text: str) -> int:
        self.read_again.wait(10)
        return super().write(text)


def test_a_console_that_is_not_read_never_holds_up_the_sink() -> None:
    # A paused pager or Ctrl-S: the write blocked the event loop, and so every child.
    console = _StuckConsole()
    sink = ConsoleSink(["web"], console, colorize=False, limit=10_000)
    started = time.monotonic()
    for i in range(5_000):
        sink.write(_message(f"line {i}", datetime(2026, 11, 28, 9, 5, 7)))
    assert time.monotonic() - started < 2  # never waited for the console
    console.read_again.set()
    sink.stop()
    # Each gap is said where it was, with its size: nothing lost without a word.
    expected = 0
    for row in console.getvalue().splitlines():
        dropped = re.fullmatch(
            r"\[processman: (\d+) console lines dropped: the console was not read\]", row
        )
        if dropped:
            expected += int(dropped.group(1))
        else:
            assert row.endswith(f" web | line {expected}"), row
            expected += 1
    assert expected == 5_000
    assert "dropped" in console.getvalue()  # 10,000 bytes cannot hold 5,000 lines


async def test_the_last_words_are_in_the_logs_once_stop_or_the_exit_is_known() -> None:
    # 50,000 lines (850 KB) left in a 1 MiB pipe by a child already gone: stop returns,
    # and the exit is announced, only once they are read (and the pipes closed)
    specs = (
        script("stopped", "last_words.py", "50000"),
        script("exits", "last_words.py", "50000", "--exit", restart=RestartPolicy.NEVER),
    )
    async with ProcessManager(config(*specs)) as m, m.events() as events:
        with anyio.fail_after(10):
            async for event in events:  # the exit, and at once what the buffer holds
                if event.process_id == "exits" and event.status.status is Status.EXITED:  # type: ignore[union-attr]
                    assert [e.line for e in m.logs("exits", 1)] == ["last words 49999"]
                    break
        await wait_until(lambda: any(e.line == "ready" for e in m.logs("stopped")))
        await m.stop("stopped")
        assert [e.line for e in m.logs("stopped", 1)] == ["last words 49999"]
