"""Faults with real children: each ends in the status SPEC §2 says, and the others run on."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from processman import ProcessManager, Status
from processman.domain.model import ProcessSpec
from tests.conftest import pid_alive
from tests.integration.helpers import config, script, wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # about the OS's faults: trio runs the same manager in test_supervise


def lines(m: ProcessManager, process_id: str) -> list[str]:
    return [e.line for e in m.logs(process_id, 1000)]


async def test_a_child_that_closes_its_streams_keeps_running() -> None:
    async with ProcessManager(
        config(script("quiet", "close_streams.py"), script("echo", "echo.py"))
    ) as m:
        await wait_until(lambda: lines(m, "quiet") == ["closing my streams"])
        pid = m.status("quiet").pid
        await wait_until(lambda: m._runners["quiet"].output.open_streams == 0)  # both pipes at EOF
        assert m.status("quiet").status == "running" and pid_alive(pid)  # type: ignore[arg-type]
        stopped = await m.stop("quiet")
        assert stopped.status == "stopped" and not pid_alive(pid)  # type: ignore[arg-type]
        assert m.status("echo").status == "running"


async def test_ten_megabytes_without_a_newline(tmp_path: Path) -> None:
    async with ProcessManager(
        config(script("blob", "no_newline.py", "10"), dir=str(tmp_path))
    ) as m:
        await wait_until(lambda: "end" in lines(m, "blob"), 30)
        pieces = lines(m, "blob")
        assert pieces[-1] == "end"
        assert all(len(p) <= 65536 for p in pieces)
        assert sum(len(p) for p in pieces[:-1]) == 10 * 1024 * 1024  # nothing lost
        assert m.status("blob").status == "running"


async def test_a_child_that_exits_while_being_stopped() -> None:
    async with ProcessManager(config(script("slow", "slow_exit.py"))) as m:
        await wait_until(lambda: "ready" in lines(m, "slow"))
        status = await m.stop("slow")
        assert status.status == "stopped" and status.exit_code == 0 and status.restart_count == 0


async def test_leaving_by_cancellation_still_reads_what_the_children_say_as_they_stop() -> None:
    # e.g. a sibling task failed in the host's task group: its cancellation used to end
    # the pipe readers first, so a child's last lines were lost (and the exit waited out
    # the drain grace)
    m = ProcessManager(config(script("slow", "slow_exit.py")))
    with anyio.CancelScope() as scope:
        async with m:
            await wait_until(lambda: "ready" in lines(m, "slow"))
            pid = m.status("slow").pid
            scope.cancel()
            await anyio.sleep(60)
    assert lines(m, "slow") == ["ready", "cleaning up"]
    assert m.status("slow").status == "stopped" and pid is not None and not pid_alive(pid)


async def test_stop_in_backoff_and_restart_of_crashed() -> None:
    crash = script("crash", "crash.py", backoff=30.0, max_backoff=30.0, max_retries=1)
    async with ProcessManager(config(crash, script("echo", "echo.py"))) as m:
        await m.wait_for_status("crash", Status.BACKOFF)
        status = await m.stop("crash")
        assert status.status == "stopped" and status.exit_code == 1
        assert status.last_error == "exited with code 1"
        await m.start("crash")
        await m.wait_for_status("crash", Status.BACKOFF)
        # (30 s backoff: "start" in backoff starts at once, then it crashes for good)
        await m.start("crash")
        crashed = await m.wait_for_status("crash", Status.CRASHED)
        assert crashed.last_error == "gave up after 1 restart: exited with code 1"
        restarted = await m.restart("crash")
        assert restarted.status in ("running", "backoff")  # it runs again, k reset to 0
        assert m.status("echo").status == "running"


async def test_program_deleted_between_restarts(tmp_path: Path) -> None:
    program = tmp_path / "tool.sh"
    program.write_text("#!/bin/sh\necho run\nexit 1\n")
    program.chmod(0o755)
    spec = ProcessSpec(
        id="tool",
        cwd=str(tmp_path),
        command=(str(program),),
        backoff=0.05,
        max_backoff=0.05,
        max_retries=3,
    )
    async with ProcessManager(config(spec, script("echo", "echo.py"))) as m:
        await wait_until(lambda: "run" in lines(m, "tool"))
        program.unlink()
        status = await m.wait_for_status("tool", Status.CRASHED)
        assert status.last_error.endswith(f"cannot start {program}: file not found")
        assert m.status("echo").status == "running"


async def test_cwd_removed_while_running(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    spec = ProcessSpec(
        id="w",
        cwd=str(workdir),
        command=(sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)"),
        backoff=0.05,
        max_backoff=0.05,
        max_retries=2,
    )
    async with ProcessManager(config(spec, script("echo", "echo.py"))) as m:
        await wait_until(lambda: "up" in lines(m, "w"))
        shutil.rmtree(workdir)
        assert m.status("w").status == "running"  # a running process keeps its (deleted) cwd
        await m.restart("w")
        status = await m.wait_for_status("w", Status.CRASHED)
        assert status.last_error.endswith(
            f"cannot start {workdir}: working directory does not exist"
        )
        assert m.status("echo").status == "running"
        os.makedirs(workdir)
        assert (await m.start("w")).status == "running"  # fixed: it starts again


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux spawner's pipes")
async def test_a_pipe_that_is_never_empty_still_lets_others_run() -> None:
    # A child that writes faster than its lines are handled keeps its pipe full: its
    # reader never had to wait, and held the event loop (the API answered in 0.5-1 s with
    # six such children, other children's pipes filled up). /dev/zero is such a pipe.
    from processman.adapters.spawn_linux import _Pipe

    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    fd = os.open("/dev/zero", os.O_RDONLY)
    pipe = _Pipe(fd)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(other_task)
            await anyio.lowlevel.checkpoint()
            before = turns
            for _ in range(100):
                await pipe.__anext__()
            tg.cancel_scope.cancel()
    finally:
        os.close(fd)  # /dev/zero never ends, so the pipe never closes it
    assert turns - before >= 50  # a turn for the others at (nearly) every chunk
