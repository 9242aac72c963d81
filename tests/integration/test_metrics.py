"""SPEC §11 with real children: CPU and memory of the whole tree, and ``maxMemory``."""

from __future__ import annotations

import contextlib
import os
import sys

import anyio
import pytest

from processman import ProcessManager, Status
from processman.adapters.spawn_linux import LinuxSpawner
from tests.conftest import pid_alive
from tests.integration.helpers import config, script, wait_until

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # about the OS, not the loop
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc"),
]

MIB = 1024 * 1024


def _reported(m: ProcessManager, process_id: str) -> dict[int, int]:
    """pid -> resident bytes, as each process of the tree printed it."""
    found = {}
    for entry in m.logs(process_id, 100):
        words = entry.line.split()
        if len(words) == 3 and words[0] == "rss":
            found[int(words[1])] = int(words[2])
    return found


def _open_fds() -> dict[str, str]:
    """This process's descriptors, and what each is (a failure then says which)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


async def test_memory_is_the_whole_trees_and_none_when_not_running() -> None:
    spec = script("hog", "usage.py", "tree", "200", autostart=False)
    async with ProcessManager(config(spec)) as m:
        await m.start("hog")
        await m.stop("hog")  # the spawner's own descriptors (its cgroup tree) are in place
        fds = _open_fds()
        await m.start("hog")
        await wait_until(lambda: len(_reported(m, "hog")) == 2)
        reported = sum(_reported(m, "hog").values())
        measured = m.status("hog").memory_bytes
        assert measured is not None and reported > 200 * MIB
        assert abs(measured - reported) <= 0.15 * reported, (measured, reported)
        [listed] = m.list()
        assert listed.memory_bytes == measured  # within the second: the same reading
        stopped = await m.stop("hog")
        after = _open_fds()
        assert len(after) == len(fds), (fds, after)  # what measuring kept open is closed
        assert (stopped.cpu_percent, stopped.memory_bytes) == (None, None)
        assert (m.status("hog").cpu_percent, m.status("hog").memory_bytes) == (None, None)


async def test_a_process_that_burns_a_core_uses_100_percent() -> None:
    async with ProcessManager(config(script("burn", "usage.py", "burn"))) as m:
        await wait_until(lambda: any(e.line == "burning" for e in m.logs("burn")))
        m.status("burn")  # the first reading: since the start
        await anyio.sleep(1.2)
        percent = m.status("burn").cpu_percent
        assert percent is not None and 75 <= percent <= 125, percent


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "no-cgroup"])
async def test_max_memory_kills_the_tree_as_a_failed_run_and_spares_the_others(
    cgroups: bool,
) -> None:
    # without a cgroup (PROCESSMAN_CGROUPS=0) or where its memory controller is off,
    # the runner checks the tree every second; with memory.max the kernel kills it
    hog = script("hog", "usage.py", "grow", "20", max_memory=100 * MIB, backoff=30.0)
    calm = script("calm", "long_running.py")
    async with ProcessManager(config(hog, calm), spawner=LinuxSpawner(cgroups=cgroups)) as m:
        calm_pid = m.status("calm").pid
        await wait_until(lambda: m.status("hog").status is Status.BACKOFF, seconds=20)
        status = m.status("hog")
        assert status.last_error == "memory above 100 MiB: killed"
        assert status.restart_count == 0  # the backoff of 30 s: not restarted yet
        assert m.status("calm").pid == calm_pid and pid_alive(calm_pid)


def _no_memory_controller() -> str | None:
    from processman.adapters.spawn_linux import cgroup2_base

    base = cgroup2_base()
    if base is None:
        return "no cgroup v2 here"
    try:
        with open(os.path.join(base, "cgroup.subtree_control")) as file:
            if "memory" in file.read().split():
                return None
    except OSError as exc:
        return f"cannot read {base}/cgroup.subtree_control: {exc}"
    return f"the memory controller is not passed down to {base}'s children (cgroup v1 holds it?)"


@pytest.mark.skipif(_no_memory_controller() is not None, reason=_no_memory_controller() or "")
async def test_with_the_memory_controller_the_kernel_enforces_max_memory() -> None:
    from processman.domain.ports import SpawnRequest
    from tests.conftest import TESTDATA

    spawner = LinuxSpawner()
    try:
        request = SpawnRequest(
            process_id="hog",
            argv=(sys.executable, str(TESTDATA / "usage.py"), "grow", "20"),
            cwd=str(TESTDATA),
            env=dict(os.environ),
            max_memory=100 * MIB,
        )
        handle = await spawner.spawn(request)
        assert handle.limits_memory
        with anyio.fail_after(20):
            code = await handle.wait()
        assert code == -9 and handle.killed_for_memory()
        await handle.stop("SIGKILL", 0)
    finally:
        await spawner.aclose()
