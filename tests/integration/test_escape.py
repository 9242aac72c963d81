"""Escaped descendants and manager death on Linux: nothing a process starts outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

from processman import ProcessManager, Status
from processman.adapters import spawn_linux
from processman.adapters.spawn_linux import LinuxSpawner, cgroup2_base
from tests.conftest import TESTDATA, pid_alive
from tests.integration.helpers import config, script, wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # about the OS's process trees: trio runs the same manager in test_supervise


def cgroups_writable() -> bool:
    base = cgroup2_base()
    if base is None:
        return False
    probe = os.path.join(base, f"processman-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    os.rmdir(probe)
    return True


needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux mechanisms")
needs_cgroups = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and cgroups_writable()),
    reason="no writable cgroup v2 here: escaped daemons are caught only with one (docs/reliability.md)",
)


def escapees(directory: Path) -> list[int]:
    return [int((directory / name).read_text()) for name in ("setsid.pid", "daemon.pid")]


async def wait_escaped(directory: Path, *, check_alive: bool = True) -> list[int]:
    await wait_until(
        lambda: (directory / "setsid.pid").exists() and (directory / "daemon.pid").exists()
    )
    pids = escapees(directory)
    if check_alive:
        assert all(pid_alive(pid) for pid in pids)
    return pids


@needs_cgroups
@pytest.mark.parametrize("how", ["stop", "restart", "shutdown"])
async def test_escaped_descendants_die_with_their_process(tmp_path: Path, how: str) -> None:
    async with ProcessManager(config(script("esc", "escape.py", str(tmp_path)))) as m:
        pids = await wait_escaped(tmp_path)
        if how == "stop":
            await m.stop("esc")
            assert not [p for p in pids if pid_alive(p)]
        elif how == "restart":
            for name in ("setsid.pid", "daemon.pid"):
                (tmp_path / name).unlink()
            await m.restart("esc")
            assert not [p for p in pids if pid_alive(p)]  # gone before the new instance ran
            await wait_escaped(tmp_path)
            pids += escapees(tmp_path)
    assert not [p for p in pids if pid_alive(p)]


@needs_cgroups
async def test_what_an_exited_process_left_behind_goes_too(tmp_path: Path) -> None:
    spec = script("esc", "escape.py", str(tmp_path), "exit", restart="never")
    async with ProcessManager(config(spec)) as m:
        # they sleep forever once started: if they are gone, processman killed them
        pids = await wait_escaped(tmp_path, check_alive=False)
        status = await m.wait_for_status("esc", Status.EXITED)
        assert status.exit_code == 0
        assert not [p for p in pids if pid_alive(p)]


def escape_under(spawner: LinuxSpawner, tmp_path: Path) -> ProcessManager:
    """A manager of testdata/escape.py, which leaves a setsid child and a daemon behind."""
    return ProcessManager(config(script("esc", "escape.py", str(tmp_path))), spawner=spawner)


def own_cgroup(pid: int | str = "self") -> str:
    with open(f"/proc/{pid}/cgroup") as file:
        return next(line[3:].strip() for line in file if line.startswith("0::"))


@needs_cgroups
async def test_spawning_from_the_leaf_puts_the_tree_there_and_the_manager_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = own_cgroup()
    moves: list[str] = []
    join = spawn_linux._join

    def recorded(cgroup: str) -> None:
        moves.append(cgroup)
        join(cgroup)

    monkeypatch.setattr(spawn_linux, "_join", recorded)
    async with escape_under(LinuxSpawner(spawn_from_leaf=True), tmp_path) as m:
        pids = await wait_escaped(tmp_path)
        assert own_cgroup() == home
        leaf = own_cgroup(m.status("esc").pid or 0)
        assert leaf.startswith(f"{home.rstrip('/')}/processman-{os.getpid()}/esc.")
        assert [own_cgroup(pid) for pid in pids] == [leaf, leaf]  # the setsid and the daemon
        await m.restart("esc")
        assert not [p for p in pids if pid_alive(p)]
        assert own_cgroup() == home
    assert not [p for p in pids if pid_alive(p)]
    assert own_cgroup() == home
    # two spawns, each from inside its own leaf and back: no preexec_fn joined for them
    base = os.path.normpath(cgroup2_base() or "")
    assert [os.path.basename(path) for path in moves[::2]] == ["esc.1", "esc.2"]
    assert [os.path.normpath(path) for path in moves[1::2]] == [base, base]


@needs_cgroups
async def test_two_managers_in_one_process_each_have_their_own_tree(tmp_path: Path) -> None:
    # they shared processman-<pid>: the second one's children joined no cgroup at all, and
    # leaving it SIGKILLed the first one's processes
    first = ProcessManager(config(script("w", "long_running.py", "60")))
    second = ProcessManager(config(script("w", "long_running.py", "60")))
    async with first:
        survivor = first.status("w").pid or 0
        async with second:
            other = second.status("w").pid or 0
            trees = {os.path.dirname(own_cgroup(pid)) for pid in (survivor, other)}
            assert len(trees) == 2, trees
            assert all(f"/processman-{os.getpid()}" in tree for tree in trees)
        assert not pid_alive(other)
        assert first.status("w").status == "running" and pid_alive(survivor)
    assert not pid_alive(survivor)


@needs_linux
@pytest.mark.parametrize("delay", [0.002, 0.02, 0.2])
async def test_leaving_by_cancellation_ends_every_tree_and_the_guardian_before_returning(
    delay: float,
) -> None:
    # the spawner's close was not shielded: a cancelled block returned with its guardian
    # still running and the cgroup tree still there (the guardian ended them up to 2 s later)
    before = set(psutil.Process().children(recursive=True))
    with anyio.move_on_after(delay) as scope:
        async with ProcessManager(
            config(*(script(f"p{i}", "long_running.py", "60") for i in range(5)))
        ):
            await anyio.sleep(60)
    assert scope.cancelled_caught
    left = [
        p
        for p in set(psutil.Process().children(recursive=True)) - before
        if p.status() != psutil.STATUS_ZOMBIE
    ]
    assert not left, [p.cmdline() for p in left]
    base = cgroup2_base()
    if base is not None and os.path.isdir(base):
        assert not [d for d in os.listdir(base) if d.startswith(f"processman-{os.getpid()}")]


@needs_cgroups
async def test_spawning_from_the_leaf_falls_back_when_the_manager_may_not_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[str] = []

    def refuse(cgroup: str) -> None:
        tried.append(cgroup)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(spawn_linux, "_join", refuse)
    spawner = LinuxSpawner(spawn_from_leaf=True)
    async with escape_under(spawner, tmp_path) as m:
        pids = await wait_escaped(tmp_path)
        leaf = own_cgroup(m.status("esc").pid or 0)
        assert f"/processman-{os.getpid()}/esc." in leaf  # joined by the child, before exec
        assert not spawner.spawns_from_leaf
        await m.restart("esc")
    assert len(tried) == 1  # tried once, then the preexec_fn for every spawn
    assert not [p for p in pids if pid_alive(p)]


@needs_linux
async def test_without_cgroups_a_setsid_child_is_still_found(tmp_path: Path) -> None:
    spawner = LinuxSpawner(cgroups=False)
    async with escape_under(spawner, tmp_path) as m:
        setsid, daemon = await wait_escaped(tmp_path)
        await m.stop("esc")
        assert not pid_alive(setsid)  # still a child of the tree: found through /proc
    assert not spawner.uses_cgroups
    os.kill(daemon, signal.SIGKILL)  # documented limit: a double-forked daemon is not found


def run_supervisor(tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    cfg = tmp_path / "processman.toml"
    cfg.write_text(
        f"""
[[processes]]
id = "esc"
script = "{TESTDATA / "escape.py"}"
interpreter = "{sys.executable}"
args = ["{tmp_path}"]

[[processes]]
id = "tree"
script = "{TESTDATA / "grandchild.py"}"
interpreter = "{sys.executable}"
args = ["{tmp_path / "grandchild.pid"}"]
"""
    )
    return subprocess.Popen(
        [sys.executable, "-m", "processman", "run", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


def children_of(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children()]


def signal_the_guardians(manager: int) -> None:
    """What systemd's stop (SIGTERM to the whole service cgroup) or a stray kill sends: a
    guardian that died of it left the manager unguarded, and its SIGKILL orphaned all."""
    import psutil

    guardians = [
        c
        for c in psutil.Process(manager).children()
        if c.name() in ("sh", "dash", "bash", "awk", "mawk", "gawk")
    ]
    assert guardians
    for guardian in guardians:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            guardian.send_signal(sig)
    time.sleep(0.2)
    assert all(g.is_running() and g.status() != psutil.STATUS_ZOMBIE for g in guardians)


@needs_cgroups
@pytest.mark.parametrize("guardian_signalled", [False, True])
def test_sigkill_of_the_manager_leaves_nothing_behind(
    tmp_path: Path, guardian_signalled: bool
) -> None:
    manager = run_supervisor(tmp_path)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 20
        wanted = ("setsid.pid", "daemon.pid", "grandchild.pid")
        while not all((tmp_path / n).exists() and (tmp_path / n).read_text() for n in wanted):
            assert time.monotonic() < deadline and manager.poll() is None
            time.sleep(0.02)
        pids = [int((tmp_path / n).read_text()) for n in wanted] + children_of(manager.pid)
        pids += [d.pid for p in pids for d in psutil.Process(p).children(recursive=True)]
        assert all(pid_alive(p) for p in pids)
        if guardian_signalled:
            signal_the_guardians(manager.pid)
        manager.send_signal(signal.SIGKILL)
        manager.wait()
        alive = wait_dead(pids, 2)
        assert not alive, f"still alive 2 s after the manager's SIGKILL: {alive}"
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()
        for pid in pids:  # what a failing run left (they are ours: found through our manager)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@needs_cgroups
def test_a_process_the_host_forked_does_not_hold_off_the_guardian(tmp_path: Path) -> None:
    # a forked child of the host application (multiprocessing's default) inherited the
    # guardian's pipe: after the host's SIGKILL the escaped descendants lived on until it
    # ended too
    code = (
        "import anyio, os, sys, time\n"
        "from processman import ProcessManager\n"
        "from processman.domain.model import Config, ProcessSpec\n"
        f"spec = ProcessSpec(id='esc', cwd='/', command=(sys.executable, "
        f"{str(TESTDATA / 'escape.py')!r}, {str(tmp_path)!r}))\n"
        "async def main():\n"
        "    async with ProcessManager(Config(processes=(spec,))) as m:\n"
        "        helper = os.fork()\n"
        "        if helper == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        f"        while not all(os.path.exists(os.path.join({str(tmp_path)!r}, n))\n"
        "                      for n in ('setsid.pid', 'daemon.pid')):\n"
        "            await anyio.sleep(0.02)\n"
        "        print(m.status('esc').pid, helper, flush=True)\n"
        "        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    host = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    helper = None
    try:
        assert host.stdout is not None
        child, helper = map(int, host.stdout.readline().split())
        pids = [child, *escapees(tmp_path)]
        host.kill()
        host.wait()
        alive = wait_dead(pids, 5)
        assert not alive, f"still alive 5 s after the host's SIGKILL: {alive}"
        assert pid_alive(helper)  # and still holding whatever it inherited
    finally:
        for pid in (helper, host.pid):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        host.wait()
        if host.stdout is not None:
            host.stdout.close()


@needs_linux
async def test_without_cgroups_the_direct_child_dies_with_the_manager(tmp_path: Path) -> None:
    code = (
        "import anyio, sys\n"
        "from processman import ProcessManager\n"
        "from processman.adapters.spawn_linux import LinuxSpawner\n"
        "from processman.domain.model import Config, ProcessSpec\n"
        "spec = ProcessSpec(id='c', cwd='/', command=(sys.executable, '-c', 'import time; time.sleep(300)'))\n"
        "async def main():\n"
        "    async with ProcessManager(Config(processes=(spec,)), spawner=LinuxSpawner(cgroups=False)) as m:\n"
        "        print(m.status('c').pid, flush=True)\n"
        "        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    manager = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything awaits
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert manager.stdout is not None
        child = int(manager.stdout.readline())
        assert pid_alive(child)
        manager.send_signal(signal.SIGKILL)
        manager.wait()
        with anyio.fail_after(2):
            while pid_alive(child):  # noqa: ASYNC110 - another process's state
                await anyio.sleep(0.01)
    finally:
        manager.stdout.close()  # type: ignore[union-attr]
        if manager.poll() is None:
            manager.kill()
            manager.wait()


def stop_supervisor(manager: subprocess.Popen[str], sig: signal.Signals) -> None:
    manager.send_signal(sig)
    manager.wait(timeout=20)


def wait_files(tmp_path: Path, names: tuple[str, ...], manager: subprocess.Popen[str]) -> list[int]:
    deadline = time.monotonic() + 20
    while not all((tmp_path / n).exists() and (tmp_path / n).read_text() for n in names):
        assert time.monotonic() < deadline and manager.poll() is None
        time.sleep(0.02)
    return [int((tmp_path / n).read_text()) for n in names]


def wait_dead(pids: list[int], seconds: float = 2.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while [p for p in pids if pid_alive(p)] and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = [p for p in pids if pid_alive(p)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive


@needs_linux
def test_without_cgroups_the_subreaper_finds_double_forked_daemons(tmp_path: Path) -> None:
    manager = run_supervisor(tmp_path, {"PROCESSMAN_CGROUPS": "0"})
    try:
        pids = wait_files(tmp_path, ("setsid.pid", "daemon.pid", "grandchild.pid"), manager)
        # the daemon's parent exited: it was adopted by processman run, the subreaper
        import psutil

        assert psutil.Process(pids[1]).ppid() == manager.pid
        stop_supervisor(manager, signal.SIGTERM)
        assert manager.returncode == 0
        assert not wait_dead(pids, 0.0), "a descendant outlived processman run's shutdown"
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()


@needs_linux
@pytest.mark.parametrize("guardian_signalled", [False, True])
def test_without_cgroups_the_groups_die_with_the_manager(
    tmp_path: Path, guardian_signalled: bool
) -> None:
    manager = run_supervisor(tmp_path, {"PROCESSMAN_CGROUPS": "0"})
    try:
        setsid, daemon, grandchild = wait_files(
            tmp_path, ("setsid.pid", "daemon.pid", "grandchild.pid"), manager
        )
        children = [c for c in children_of(manager.pid) if c not in (setsid, daemon)]  # (adopted)
        if guardian_signalled:
            signal_the_guardians(manager.pid)
        manager.send_signal(signal.SIGKILL)
        manager.wait()
        alive = wait_dead([grandchild, *children])
        assert not alive, f"the direct children and their groups must die with the manager: {alive}"
    finally:
        for pid in (setsid, daemon):  # documented: outside any group, they outlive it
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if manager.poll() is None:
            manager.kill()
            manager.wait()
