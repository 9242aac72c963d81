"""A smaller version of benchmarks/crash_loop_leaks.py: crash loops leave no zombie and no fd."""

from __future__ import annotations

import os

import anyio
import anyio.lowlevel
import psutil
import pytest

from processman import ProcessManager
from processman.domain.model import ProcessSpec
from tests.integration.helpers import config, wait_until

pytestmark = pytest.mark.anyio


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def zombie_children() -> list[int]:
    return [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the OS's zombies and fds
async def test_crash_loops_leave_no_zombie_and_no_descriptor() -> None:
    specs = [
        ProcessSpec(
            id=f"crash{i}",
            cwd="/",
            command=("/bin/sh", "-c", "exit 1"),
            backoff=0.01,
            max_backoff=0.01,
        )
        for i in range(10)
    ]
    fds_before = open_fds()
    async with ProcessManager(config(*specs)) as m:
        await wait_until(lambda: all(s.restart_count >= 10 for s in m.list()), 30)
        looping_fds = open_fds()
    assert sum(s.restart_count for s in m.list()) >= 100
    await anyio.lowlevel.checkpoint()
    assert zombie_children() == []
    assert open_fds() == fds_before, (
        f"descriptors: {fds_before} before, {open_fds()} after ({looping_fds} while looping)"
    )
