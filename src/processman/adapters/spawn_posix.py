"""POSIX spawner: each process in its own session and process group.

Stop = ``stopSignal`` to the group, wait ``stopTimeout``, SIGKILL the group, and
return only when no live (non-zombie) member of the group is left.
"""

from __future__ import annotations

import os
import signal as signal_module
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio

from processman.adapters._posix import check_cwd, needs_post_fork, platform_signal
from processman.adapters._usage import processes_usage, tree_of
from processman.domain.errors import SpawnError

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from anyio.abc import Process

    from processman.domain.ports import SpawnRequest, Usage

#: How long to wait for a SIGKILLed group to disappear before giving up (D-state processes).
KILL_GRACE = 5.0


class PosixSpawner:
    """``Spawner`` for Linux and macOS."""

    async def aclose(self) -> None:
        """Nothing to release: each group is gone with its stop."""

    async def spawn(self, request: SpawnRequest) -> PosixProcess:
        """Start ``request.argv`` in a new session; its pid is also its process group id."""
        check_cwd(request.cwd)
        program = request.argv[0]
        if needs_post_fork(request):
            raise SpawnError(
                program, "inherited sockets and WATCHDOG_PID need the Linux spawner (Linux)"
            )
        try:
            process = await anyio.open_process(
                list(request.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=request.cwd,
                env=dict(request.env),
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            raise SpawnError.from_exec(
                program,
                exc,
                search_path=os.get_exec_path(dict(request.env)),
                exists=os.path.isfile,
                cwd=request.cwd,
            ) from None
        return PosixProcess(process)


class PosixProcess:
    """A child started by ``PosixSpawner``, leader of its own process group."""

    def __init__(self, process: Process) -> None:
        self._process = process
        self._pgid = process.pid

    @property
    def pid(self) -> int:
        """The child's pid (and process group id)."""
        return self._process.pid

    @property
    def stdout(self) -> AsyncIterable[bytes]:
        """The child's stdout pipe."""
        assert self._process.stdout is not None
        return self._process.stdout

    @property
    def stderr(self) -> AsyncIterable[bytes]:
        """The child's stderr pipe."""
        assert self._process.stderr is not None
        return self._process.stderr

    async def wait(self) -> int:
        """The exit code; -N for a death by signal N."""
        return await self._process.wait()

    async def stop(self, signal: str, grace: float) -> int | None:
        """Signal the group, then SIGKILL it after ``grace`` seconds; return when it is empty."""
        _signal_group(self._pgid, signal_module.Signals[signal])
        with anyio.move_on_after(grace):
            await self._process.wait()
            await _wait_group_gone(self._pgid)
        if _group_alive(self._pgid) or self._process.returncode is None:
            _signal_group(self._pgid, signal_module.SIGKILL)
            with anyio.move_on_after(KILL_GRACE):
                await self._process.wait()
                await _wait_group_gone(self._pgid)
        return self._process.returncode

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is in the child's process group."""
        try:
            return os.getpgid(pid) == self._pgid
        except OSError:
            return False

    def signal(self, signal: str) -> None:
        """Send ``signal`` to the process group."""
        _signal_group(self._pgid, platform_signal(signal))

    def usage(self) -> Usage | None:
        """The tree's CPU time and memory, summed over its processes."""
        return processes_usage(tree_of(self._process.pid))

    #: no kernel limit here: the runner checks ``maxMemory`` every second
    limits_memory = False

    def killed_for_memory(self) -> bool:
        """Never: nothing here asks the kernel to kill the tree."""
        return False


def _signal_group(pgid: int, sig: signal_module.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - a member changed uid; kill what we may
        pass


async def _wait_group_gone(pgid: int) -> None:
    delay = 0.002
    while _group_alive(pgid):
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.05)


def _group_alive(pgid: int) -> bool:
    """True while the group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    if not sys.platform.startswith("linux"):
        return True
    # killpg(0) also succeeds for zombies (reparented orphans an init may never reap):
    # look at the members' states.
    return bool(live_group_members(pgid))


def live_group_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes of group ``pgid`` (Linux, via /proc)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members
