"""One suite over every spawner this OS can run, and the fake: output, exit codes, stop, errors."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

from processman.adapters.spawn_linux import LinuxSpawner
from processman.adapters.spawn_posix import PosixSpawner
from processman.domain.errors import SpawnError
from processman.domain.ports import ProcessHandle, Spawner, SpawnRequest
from tests.conftest import TESTDATA, pid_alive
from tests.fakes import FakeProgram, FakeSpawner

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.anyio

REAL: dict[str, Callable[[], Spawner]] = {"posix": PosixSpawner}
if sys.platform.startswith("linux"):
    REAL["linux"] = LinuxSpawner
    REAL["linux-no-cgroups"] = lambda: LinuxSpawner(cgroups=False)
    REAL["linux-spawn-from-leaf"] = lambda: LinuxSpawner(spawn_from_leaf=True)


#: What the FakeSpawner's children do, by the testdata script each contract test runs.
PROGRAMS = {
    "out_err_exit.py": FakeProgram(stdout=b"out\n", stderr=b"err\n", exit=3),
    "ignore_sigterm.py": FakeProgram(stdout=b"ignoring SIGTERM\n", ignores=frozenset({"SIGTERM"})),
    "long_running.py": FakeProgram(),
}


@pytest.fixture(params=sorted(REAL))
async def real_spawner(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    made = REAL[request.param]()
    yield made
    await made.aclose()


@pytest.fixture(params=[*sorted(REAL), "fake"])
async def spawner(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Every real spawner, and the fake: the suite that keeps the fake honest."""
    made = FakeSpawner(programs=PROGRAMS) if request.param == "fake" else REAL[request.param]()
    yield made
    await made.aclose()


def python(*args: str, cwd: str = str(TESTDATA)) -> SpawnRequest:
    return SpawnRequest(
        process_id="t", argv=(sys.executable, *args), cwd=cwd, env={"PYTHONUNBUFFERED": "1"}
    )


async def read_all(handle: ProcessHandle) -> tuple[bytes, bytes]:
    out, err = [], []

    async def drain(source, sink: list[bytes]) -> None:  # type: ignore[no-untyped-def]
        async for chunk in source:
            sink.append(chunk)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, handle.stdout, out)
        tg.start_soon(drain, handle.stderr, err)
    return b"".join(out), b"".join(err)


async def test_output_and_exit_code(spawner: Spawner) -> None:
    handle = await spawner.spawn(python(str(TESTDATA / "out_err_exit.py")))
    assert await read_all(handle) == (b"out\n", b"err\n")
    assert await handle.wait() == 3
    assert await handle.stop("SIGTERM", 1.0) == 3  # stopping an ended process is harmless


async def test_stop_reports_the_signal(spawner: Spawner) -> None:
    handle = await spawner.spawn(python(str(TESTDATA / "long_running.py")))
    # SIGUSR1, which ends a Python child: not SIGINT, which a child of a background job
    # (CI's) starts ignoring
    assert await handle.stop("SIGUSR1", 5.0) == -10
    assert await handle.wait() == -10
    with pytest.raises(ValueError, match="SIGNOPE does not exist"):
        handle.signal("SIGNOPE")  # harmless on an ended process, and still checked
    await read_all(handle)


async def test_stop_kills_the_group_and_reports_the_signal(
    real_spawner: Spawner, tmp_path: Path
) -> None:
    spawner = real_spawner
    handle = await spawner.spawn(python(str(TESTDATA / "grandchild.py"), str(tmp_path / "g.pid")))
    with anyio.fail_after(10):
        while not (tmp_path / "g.pid").exists() or not (tmp_path / "g.pid").read_text():  # noqa: ASYNC110
            await anyio.sleep(0.01)
    grandchild = int((tmp_path / "g.pid").read_text())
    assert await handle.stop("SIGTERM", 5.0) == -15
    assert not pid_alive(handle.pid) and not pid_alive(grandchild)
    await read_all(handle)


async def test_sigkill_after_the_grace(spawner: Spawner) -> None:
    handle = await spawner.spawn(python(str(TESTDATA / "ignore_sigterm.py")))
    try:
        seen = b""
        async for chunk in handle.stdout:  # the handler is installed once it has said so
            seen += chunk
            if b"\n" in seen:
                break
        assert seen == b"ignoring SIGTERM\n"
    finally:
        code = await handle.stop("SIGTERM", 0.2)
    assert code == -9
    await read_all(handle)


async def test_a_second_stop_with_sigkill_cuts_a_grace_short(spawner: Spawner) -> None:
    # processman run's second Ctrl-C: stop("SIGKILL", 0) beside a stop waiting out its grace
    handle = await spawner.spawn(python(str(TESTDATA / "ignore_sigterm.py")))
    async for _ in handle.stdout:  # "ignoring SIGTERM": the handler is installed
        break
    codes: list[int | None] = []

    async def stop(signal: str, grace: float) -> None:
        codes.append(await handle.stop(signal, grace))

    with anyio.fail_after(30):  # not the 60 s grace
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop, "SIGTERM", 60.0)
            await anyio.wait_all_tasks_blocked()  # it has signalled and waits
            tg.start_soon(stop, "SIGKILL", 0.0)
    assert codes == [-9, -9]
    assert not pid_alive(handle.pid)
    await read_all(handle)


@pytest.mark.parametrize(
    ("argv", "cwd", "path", "message"),
    [
        (
            ("no-such-program-xyz",),
            "/",
            None,
            "cannot start no-such-program-xyz: not found on PATH",
        ),
        (("/no/such/file",), "/", None, "cannot start /no/such/file: file not found"),
        (
            ("true",),
            "/no/such/dir",
            None,
            "cannot start /no/such/dir: working directory does not exist",
        ),
        (
            ("{tmp}/plain.txt",),
            "/",
            None,
            "cannot start {tmp}/plain.txt: permission denied (is it executable?)",
        ),
        (
            ("plain.txt",),  # found on PATH, but not a program
            "/",
            "{tmp}",
            "cannot start plain.txt: permission denied (is it executable?)",
        ),
        (
            # exec reports the ELOOP of the broken directory (or the EACCES of one it may
            # not search), not that the program is nowhere
            ("no-such-program-xyz",),
            "/",
            "{tmp}/loop:/usr/bin:/bin",
            "cannot start no-such-program-xyz: not found on PATH",
        ),
    ],
)
async def test_spawn_errors(
    real_spawner: Spawner,
    tmp_path: Path,
    argv: tuple[str, ...],
    cwd: str,
    path: str | None,
    message: str,
) -> None:
    (tmp_path / "plain.txt").write_text("not a program\n")
    (tmp_path / "plain.txt").chmod(0o644)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    argv = tuple(a.format(tmp=tmp_path) for a in argv)
    env = {} if path is None else {"PATH": path.format(tmp=tmp_path)}
    with pytest.raises(SpawnError) as info:
        await real_spawner.spawn(SpawnRequest(process_id="t", argv=argv, cwd=cwd, env=env))
    assert str(info.value) == message.format(tmp=tmp_path)


async def test_the_fake_keeps_the_same_shape() -> None:
    fake = FakeSpawner()
    handle = await fake.spawn(python("-c", "pass"))
    assert isinstance(handle, ProcessHandle) and isinstance(fake, Spawner)
    handle.exit(3)
    assert await handle.wait() == 3
    assert await read_all(handle) == (b"", b"")


async def test_a_nul_byte_is_a_spawn_error(real_spawner: Spawner) -> None:
    request = SpawnRequest(process_id="t", argv=("true",), cwd="/", env={"A": "x\0y"})
    with pytest.raises(SpawnError, match="cannot start true: .*null"):
        await real_spawner.spawn(request)


async def test_a_signal_reaches_the_whole_tree(real_spawner: Spawner) -> None:
    handle = await real_spawner.spawn(python(str(TESTDATA / "signal_tree.py")))
    seen = b""

    async def read_until(*needles: bytes) -> None:
        nonlocal seen
        async for chunk in handle.stdout:
            seen += chunk
            if all(n in seen for n in needles):
                return

    try:
        with anyio.fail_after(10):
            await read_until(b"child ready")
            handle.signal("SIGUSR1")
            await read_until(b"child got SIGUSR1", b"parent got SIGUSR1")
        with pytest.raises(ValueError, match="SIGNOPE does not exist"):
            handle.signal("SIGNOPE")
    finally:
        await handle.stop("SIGKILL", 0.0)
        await read_all(handle)


async def test_a_handle_knows_its_own_tree(spawner: Spawner) -> None:
    handle = await spawner.spawn(python(str(TESTDATA / "long_running.py")))
    try:
        assert handle.holds(handle.pid)
        assert not handle.holds(os.getpid())  # the manager is no part of it
    finally:
        await handle.stop("SIGKILL", 0.0)
        await read_all(handle)


LINUX = sorted(name for name in REAL if name.startswith("linux"))

#: Prints what a child of a post-fork spawn got: its environment, pid and open fds.
SHOW_INHERITED = """
import json, os, socket
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
names = [socket.socket(fileno=os.dup(fd)).getsockname() for fd in (3, 4)]
print(json.dumps({"env": dict(os.environ), "pid": os.getpid(), "fds": fds, "names": names}))
"""


@pytest.mark.skipif(not LINUX, reason="post-fork set-up is the Linux spawner's")
@pytest.mark.parametrize("name", LINUX)
async def test_a_child_gets_the_sockets_at_3_and_its_own_pid_in_its_environment(
    name: str, tmp_path: Path
) -> None:
    import json
    import socket

    spawner = REAL[name]()
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "s"))
    unix.listen()
    tcp_name = list(tcp.getsockname())
    bin_dir, program = os.path.split(sys.executable)
    env = {"PATH": bin_dir, "LC_ALL": "C.UTF-8", "LISTEN_FDS": "2", "X": "1"}
    request = SpawnRequest(
        process_id="t",
        argv=(program, "-c", SHOW_INHERITED),  # found on the request's PATH
        cwd=str(tmp_path),
        env=env,
        pass_fds=(unix.fileno(), tcp.fileno()),
        pid_env=("LISTEN_PID", "WATCHDOG_PID"),
    )
    try:
        handle = await spawner.spawn(request)
        out, err = await read_all(handle)
        assert await handle.wait() == 0, err
    finally:
        tcp.close()
        unix.close()
        await spawner.aclose()
    shown = json.loads(out)
    pid = str(shown["pid"])
    assert shown["pid"] == handle.pid
    # exactly the request's environment: no shell added or dropped a variable
    assert shown["env"] == {**env, "LISTEN_PID": pid, "WATCHDOG_PID": pid}
    assert shown["names"] == [str(tmp_path / "s"), tcp_name]
    # stdio, the two sockets, and the one listdir itself opened: no fd of the manager
    assert shown["fds"][:5] == [0, 1, 2, 3, 4] and len(shown["fds"]) == 6


@pytest.mark.skipif(not LINUX, reason="post-fork set-up is the Linux spawner's")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("no-such-program-xyz",), "cannot start no-such-program-xyz: not found on PATH"),
        (("plain.txt",), "cannot start plain.txt: permission denied (is it executable?)"),
        (("{tmp}/missing",), "cannot start {tmp}/missing: file not found"),
    ],
)
async def test_a_post_fork_spawn_reports_exec_errors_as_any_spawn(
    tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    (tmp_path / "plain.txt").write_text("not a program\n")
    argv = tuple(a.format(tmp=tmp_path) for a in argv)
    spawner = LinuxSpawner()
    try:
        with pytest.raises(SpawnError) as info:
            await spawner.spawn(
                SpawnRequest(
                    process_id="t",
                    argv=argv,
                    cwd=str(tmp_path),
                    env={"PATH": str(tmp_path)},
                    pid_env=("LISTEN_PID",),
                )
            )
    finally:
        await spawner.aclose()
    assert str(info.value) == message.format(tmp=tmp_path)


async def test_the_posix_spawner_says_it_cannot_pass_sockets() -> None:
    spawner = PosixSpawner()
    request = SpawnRequest(process_id="t", argv=("true",), cwd="/", env={}, pid_env=("X",))
    with pytest.raises(SpawnError, match="need the Linux spawner"):
        await spawner.spawn(request)
