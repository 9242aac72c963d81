"""Real children from testdata/: spawn, stop the whole tree, spawn failures, backoff, shutdown."""

from __future__ import annotations

import stat
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from processman import ProcessManager, Status
from processman.domain.model import ProcessSpec
from tests.conftest import TESTDATA, pid_alive
from tests.integration.helpers import config, script, wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def lines(manager: ProcessManager, process_id: str) -> list[str]:
    return [entry.line for entry in manager.logs(process_id, 10_000)]


async def test_echo_runs_and_its_output_is_logged() -> None:
    async with ProcessManager(config(script("echo", "echo.py"))) as m:
        status = m.status("echo")
        assert status.status == "running" and status.pid is not None
        assert status.start_time is not None and status.start_time.tzinfo is not None
        await wait_until(lambda: "Hello from Python" in lines(m, "echo"))
        stopped = await m.stop("echo")
        assert stopped.status == "stopped" and stopped.pid is None
        assert stopped.exit_code == -15
        assert not pid_alive(status.pid)


async def test_auto_interpreter_finds_python_on_path() -> None:
    spec = script("echo", "echo.py", interpreter="auto")
    async with ProcessManager(config(spec)) as m:
        assert m.status("echo").command[1:] == (str(TESTDATA / "echo.py"),)
        await wait_until(lambda: "Hello from Python" in lines(m, "echo"))


async def test_stop_kills_grandchildren(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    async with ProcessManager(config(script("tree", "grandchild.py", str(pid_file)))) as m:
        await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        grandchild = int(pid_file.read_text())
        assert pid_alive(grandchild)
        await m.stop("tree")
        assert not pid_alive(grandchild)  # gone when stop returns, not later


async def test_sigterm_ignoring_child_is_killed_after_stop_timeout() -> None:
    spec = script("stubborn", "ignore_sigterm.py", stop_timeout=0.5)
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: "ignoring SIGTERM" in lines(m, "stubborn"))
        pid = m.status("stubborn").pid
        assert pid is not None
        started = time.monotonic()
        status = await m.stop("stubborn")
        took = time.monotonic() - started
        assert status.exit_code == -9 and not pid_alive(pid)
        assert 0.5 <= took < 3.0


async def test_crash_py_gives_up_after_max_retries() -> None:
    spec = script("crash", "crash.py", max_retries=3, backoff=0.0, max_backoff=0.0)
    async with ProcessManager(config(spec)) as m:
        status = await m.wait_for_status("crash", Status.CRASHED)
        assert (status.restart_count, status.exit_code) == (3, 1)
        assert "gave up after 3 restarts: exited with code 1" == status.last_error


async def test_long_running_counts_as_healthy() -> None:
    spec = script("long", "long_running.py", "0.3", healthy_after=0.2, backoff=0.05, max_retries=1)
    async with ProcessManager(config(spec)) as m:
        # every run lasts 0.3 s >= healthyAfter, so k never exceeds 1 and it never gives up
        await wait_until(lambda: m.status("long").restart_count >= 2)
        assert m.status("long").status != "crashed"


def _not_executable(tmp_path: Path) -> str:
    path = tmp_path / "tool.sh"
    path.write_text("#!/bin/sh\necho hi\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


@pytest.mark.parametrize(
    ("make_spec", "expected"),
    [
        (
            lambda tmp: ProcessSpec(id="bad", cwd=str(tmp), command=("no-such-program-xyz",)),
            "cannot start no-such-program-xyz: not found on PATH",
        ),
        (
            lambda tmp: ProcessSpec(id="bad", cwd=str(tmp), command=(str(tmp / "missing"),)),
            "missing: file not found",
        ),
        (
            lambda tmp: ProcessSpec(id="bad", cwd=str(tmp / "gone"), command=("true",)),
            "gone: working directory does not exist",
        ),
        (
            lambda tmp: ProcessSpec(id="bad", cwd=str(tmp), command=(_not_executable(tmp),)),
            "tool.sh: permission denied (is it executable?)",
        ),
        (
            lambda tmp: ProcessSpec(
                id="bad", cwd=str(tmp), script=str(tmp / "w.py"), interpreter="nopython9"
            ),
            "no interpreter found; tried nopython9 (on PATH)",
        ),
    ],
    ids=["missing-program", "missing-path", "missing-cwd", "no-permission", "no-interpreter"],
)
async def test_spawn_failures_backoff_and_others_run_on(
    tmp_path: Path, make_spec, expected: str
) -> None:  # type: ignore[no-untyped-def]
    bad = ProcessSpec(**{**_fields(make_spec(tmp_path)), "backoff": 0.05, "max_retries": 2})
    async with ProcessManager(config(bad, script("echo", "echo.py"))) as m:
        status = await m.wait_for_status("bad", Status.CRASHED)
        assert expected in status.last_error
        assert status.restart_count == 2 and status.exit_code is None
        assert m.status("echo").status == "running"


def _fields(spec: ProcessSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__struct_fields__}


async def test_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSMAN_TOKEN", "secret")
    names = ("PROCESSMAN_ID", "PYTHONUNBUFFERED", "PROCESSMAN_TOKEN", "FROM_ENV")
    spec = script("env", "print_env.py", *names, env={"FROM_ENV": "yes"})
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: len(lines(m, "env")) == 4)
        assert lines(m, "env") == [
            "PROCESSMAN_ID=env",
            "PYTHONUNBUFFERED=1",
            "PROCESSMAN_TOKEN=<unset>",
            "FROM_ENV=yes",
        ]


async def test_fifty_concurrent_commands_on_real_processes(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    spec = script("one", "exclusive.py", str(lock), stop_timeout=2.0)
    async with ProcessManager(config(spec)) as m:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon((m.start, m.stop, m.restart)[i % 3], "one")
        status = m.status("one")
        assert status.status in ("running", "stopped")
        assert (status.pid is not None) == (status.status == "running")
        if status.pid is not None:
            assert pid_alive(status.pid)
    assert not (tmp_path / "lock.double").exists(), "two instances ran at once"


async def test_shutdown_stops_twenty_in_parallel(tmp_path: Path) -> None:
    specs = [
        script(f"p{i}", "ignore_sigterm.py" if i % 4 == 0 else "echo.py", stop_timeout=1.0)
        for i in range(20)
    ]
    async with ProcessManager(config(*specs)) as m:
        await wait_until(lambda: all(lines(m, s.id) for s in specs))
        pids = [s.pid for s in m.list()]
        started = time.monotonic()
    took = time.monotonic() - started
    assert not [pid for pid in pids if pid is not None and pid_alive(pid)]
    assert took < 3.0, f"shutdown took {took:.2f}s"
    assert all(s.status == "stopped" for s in m.list())
