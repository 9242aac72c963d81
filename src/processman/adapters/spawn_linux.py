"""Linux spawner: a process group per process, a cgroup per instance, and a guardian.

What it adds to the POSIX spawner (``spawn_posix.py``), so that nothing a process
starts outlives it, nor the manager:

- **A cgroup v2 per instance**, when the manager's own cgroup is writable: the child
  joins ``processman-<pid>/<id>.<n>`` before it execs, so every descendant stays in it,
  ``setsid`` and double forks included. Stop signals every member, then writes
  ``cgroup.kill``, and returns once the cgroup is empty.
- **``PR_SET_PDEATHSIG``** (SIGKILL) in the child before exec, with the re-check of the
  parent that closes the race: the direct child dies with the manager.
- **Spawning from the leaf** (``spawn_from_leaf=True``, ``processman run``): instead of
  a ``preexec_fn`` that joins the cgroup in the child (CPython must then ``fork`` the
  whole manager, ~2.5 ms a spawn), the manager moves itself into the instance's cgroup,
  starts the child with ``vfork`` (~0.15 ms) so that it is born there, and moves back
  (~50 us for both moves in a burst; the first move after a quiet moment sleeps for an
  RCU grace period in the kernel's ``cgroup_threadgroup_rwsem``, ~7.5 ms, as a child
  joining from a ``preexec_fn`` does). Only for a process whose other threads never
  start processes (they would be born in the leaf too): an embedding application keeps
  the ``preexec_fn``.
  Such a child has no ``PR_SET_PDEATHSIG``: the guardian's ``cgroup.kill`` is what kills
  it with the manager.
- **A guardian**: a small ``/bin/sh`` that holds a pipe from the manager; when the pipe
  closes (the manager exited or was SIGKILLed) it writes ``cgroup.kill`` on the
  manager's cgroup, so grandchildren and escaped daemons die too, and removes it.
- Without a writable cgroup, stop falls back to the process group plus the descendants
  found by walking ``/proc``; with ``subreaper=True`` (``processman run``) the manager
  is also the child subreaper, so a daemon that double-forked away is re-parented to it
  and found by the ``PROCESSMAN_ID`` in its environment, and reaped. A guardian
  (``awk``) then holds the live process groups and kills them if the manager dies.

Exit is waited for on a pidfd and output read from non-blocking pipes, so the child
can be started with ``subprocess.Popen`` and its ``preexec_fn``, which anyio's
``open_process`` does not offer.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import shutil
import signal as signal_module
import subprocess
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from processman.adapters._posix import (
    check_cwd,
    find_program,
    low_fds_held,
    needs_post_fork,
    platform_signal,
    post_fork,
)
from processman.domain.errors import SpawnError
from processman.domain.ports import Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from processman.domain.ports import SpawnRequest

#: How long to wait for a SIGKILLed tree to disappear before giving up (D-state processes).
KILL_GRACE = 5.0
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

#: A guardian ends only when the manager does (its pipe closes). The signals it would
#: otherwise die of (systemd's stop sends SIGTERM to every process of the service's cgroup,
#: a terminal's SIGHUP, a stray kill) left the manager unguarded: its SIGKILL then
#: orphaned every child. Ignored signals stay ignored across exec (the awk guardian).
_SIGNAL_PROOF = "trap '' HUP INT QUIT TERM; "

_GUARDIAN = (
    _SIGNAL_PROOF + 'read -r _; echo 1 > "$1/cgroup.kill" 2>/dev/null; i=0; '
    'while [ $i -lt 40 ]; do rmdir "$1"/*/ 2>/dev/null; rmdir "$1" 2>/dev/null && exit 0; '
    "i=$((i+1)); sleep 0.05; done"
)


def _libc_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
        return prctl
    except (OSError, AttributeError):
        return None


def cgroup2_base() -> str | None:
    """The directory of this process's own cgroup v2, or None when there is none."""
    try:
        with open("/proc/self/cgroup") as file:
            own = next((line[3:].strip() for line in file if line.startswith("0::")), None)
        with open("/proc/self/mountinfo") as file:
            mounts = [line.split() for line in file]
    except OSError:
        return None
    if own is None:
        return None
    for fields in mounts:
        separator = fields.index("-") if "-" in fields else -1
        if separator > 0 and fields[separator + 1] == "cgroup2":
            return os.path.join(fields[4], own.lstrip("/"))
    return None


class CgroupTree:
    """``processman-<pid>`` (``-2``, ... for more managers in one process) under the
    manager's cgroup, its leaves, and its guardian."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: the leaves have the memory controller: memory.current, memory.max
        self.memory = False
        self._leaves = itertools.count(1)
        self._guardian, self._guardian_pipe = _start_guardian(
            ["/bin/sh", "-c", _GUARDIAN, "processman-guardian", path]
        )

    @classmethod
    def create(cls) -> CgroupTree | None:
        """Make the tree, or None where cgroups v2 are not available or not writable."""
        base = cgroup2_base()
        if base is None:
            return None
        # One tree per spawner: a second manager in this process gets processman-<pid>-2
        # (sharing the first's, closing it killed the first's processes).
        stem = os.path.join(base, f"processman-{os.getpid()}")
        for n in itertools.count(1):
            path = stem if n == 1 else f"{stem}-{n}"
            try:
                os.mkdir(path)
                break
            except FileExistsError:
                continue
            except OSError:
                return None
        if not os.path.exists(os.path.join(path, "cgroup.kill")):  # kernels before 5.14
            os.rmdir(path)
            return None
        tree = cls(path)
        tree.memory = _enable_memory_controller(path)
        return tree

    @property
    def home(self) -> str:
        """The manager's own cgroup, which holds the tree."""
        return os.path.dirname(self.path)

    def new_leaf(self, process_id: str) -> str:
        """A fresh cgroup for one instance."""
        leaf = os.path.join(self.path, f"{process_id}.{next(self._leaves)}")
        os.mkdir(leaf)
        return leaf

    async def aclose(self) -> None:
        """Let the guardian empty and remove the tree, and wait for it."""
        _release(self._guardian_pipe)
        await _wait_exit(self._guardian)


# On EOF (the manager is gone), SIGKILL every process group still registered ("+pgid"
# registers one, "-pgid" forgets it once its tree is gone, so a reused pgid is safe).
_GROUP_GUARDIAN = (
    "/^[+]/ { g[substr($0, 2)] = 1; next } /^-/ { delete g[substr($0, 2)]; next } "
    'END { for (p in g) system("kill -9 -" p " 2>/dev/null") }'
)


class GroupGuardian:
    """An ``awk`` holding the live process groups; it kills them if the manager dies."""

    def __init__(self, awk: str) -> None:
        self._process, self._pipe = _start_guardian(
            ["/bin/sh", "-c", _SIGNAL_PROOF + 'exec "$0" "$@"', awk, _GROUP_GUARDIAN]
        )

    def add(self, pgid: int) -> None:
        """Kill this group if the manager dies."""
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        """The group is gone: forget it."""
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        try:
            os.write(self._pipe, line.encode())
        except OSError:
            pass  # the guardian was killed: groups are then only as safe as PDEATHSIG makes them

    async def aclose(self) -> None:
        """End the guardian (every group is gone by now) and reap it."""
        _release(self._pipe)
        await _wait_exit(self._process)


class Adoptions:
    """As child subreaper, the manager adopts what its processes' trees orphan.

    Adopted processes are found by the ``PROCESSMAN_ID`` every child gets in its
    environment (and passes on to its descendants), and reaped once dead.
    """

    def __init__(self, manager_pid: int, prctl: Callable[..., int] | None, enabled: bool) -> None:
        self._manager_pid = manager_pid
        self.enabled = enabled and prctl is not None
        if self.enabled and prctl is not None:
            prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.leaders: set[int] = set()  # direct children waited on through their pidfd

    def of(self, process_id: str) -> list[int]:
        """Live adopted processes of ``process_id``, with their descendants."""
        if not self.enabled:
            return []
        marker = b"\0PROCESSMAN_ID=" + process_id.encode() + b"\0"
        found = []
        for pid in self._adopted():
            if _state(pid) in (b"Z", b"X", None):
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as file:
                    environ = b"\0" + file.read()
            except OSError:
                continue
            if marker in environ:
                found += [pid, *_descendants(pid)]
        return found

    def reap(self) -> None:
        """Reap adopted processes that have died (never a leader: its pidfd does that)."""
        if not self.enabled:
            return
        for pid in self._adopted():
            if _state(pid) == b"Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def _adopted(self) -> list[int]:
        """The manager's children that are not leaders (called on every reap: kept cheap)."""
        return [pid for pid in _children(self._manager_pid) if pid not in self.leaders]


class LinuxSpawner:
    """``Spawner`` for Linux: see the module docstring.

    Args:
        cgroups: use a cgroup per instance where possible (set False to use only
            process groups and /proc).
        subreaper: make the manager the child subreaper (only for a process that owns
            its children, as ``processman run`` does: a host application's own orphans
            would be adopted too).
        spawn_from_leaf: start children with ``vfork`` from inside their cgroup (see the
            module docstring; only for a process that owns its threads, as
            ``processman run`` does).
    """

    def __init__(
        self, *, cgroups: bool = True, subreaper: bool = False, spawn_from_leaf: bool = False
    ) -> None:
        self._want_cgroups = cgroups
        self._want_subreaper = subreaper
        self._spawn_from_leaf = spawn_from_leaf
        self._tree: CgroupTree | None = None
        self._tree_checked = False
        self._prctl = _libc_prctl()
        self._manager_pid = os.getpid()
        self._adoptions: Adoptions | None = None
        self._group_guardian: GroupGuardian | None = None

    @property
    def uses_cgroups(self) -> bool:
        """True once instances are put in cgroups."""
        return self._tree is not None

    @property
    def spawns_from_leaf(self) -> bool:
        """True while children are started from inside their cgroup (see the module)."""
        return self._spawn_from_leaf

    def _cgroup_tree(self) -> CgroupTree | None:
        if not self._tree_checked:
            self._tree_checked = True
            self._tree = CgroupTree.create() if self._want_cgroups else None
            self._adoptions = Adoptions(self._manager_pid, self._prctl, self._want_subreaper)
            if self._tree is None:
                awk = shutil.which("awk")
                self._group_guardian = GroupGuardian(awk) if awk else None
        return self._tree

    async def spawn(self, request: SpawnRequest) -> LinuxProcess:
        """Start ``request.argv`` in a new session (and cgroup); return once it runs."""
        check_cwd(request.cwd)
        tree = self._cgroup_tree()
        leaf = None
        if tree is not None:
            try:
                leaf = tree.new_leaf(request.process_id)
            except OSError:  # the tree was removed under us, or a limit was hit
                leaf = None
        limited = (
            leaf is not None
            and request.max_memory is not None
            and _limit_memory(leaf, request.max_memory)
        )
        try:
            process = self._start(request, leaf)
            process.limits_memory = limited
            process.memory_accounted = leaf is not None and tree is not None and tree.memory
            return process
        except subprocess.SubprocessError:
            # joining the cgroup failed in the child (no permission): go on without
            if leaf is not None:
                _rmdir(leaf)
            self._tree = None
            awk = shutil.which("awk")
            if self._group_guardian is None and awk:
                self._group_guardian = GroupGuardian(awk)
            return self._start(request, None)
        except BaseException:
            if leaf is not None:
                _rmdir(leaf)
            raise

    def _start(self, request: SpawnRequest, leaf: str | None) -> LinuxProcess:
        program = request.argv[0]
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        home = self._enter(leaf)
        try:
            setup = None if home else _child_setup(self._manager_pid, leaf, self._prctl)
            if not needs_post_fork(request):
                popen = subprocess.Popen(
                    list(request.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out_write,
                    stderr=err_write,
                    cwd=request.cwd,
                    env=dict(request.env),
                    start_new_session=True,
                    preexec_fn=setup,  # noqa: PLW1509
                )
            else:  # the child's own pid in its environment, fds at 3, 4, ...: a fork
                in_child = post_fork(request)
                if setup is not None:
                    in_child = _both(setup, in_child)
                with low_fds_held(len(request.pass_fds)):
                    popen = subprocess.Popen(
                        list(request.argv),
                        executable=find_program(program, request.env),
                        stdin=subprocess.DEVNULL,
                        stdout=out_write,
                        stderr=err_write,
                        cwd=request.cwd,
                        env=None,
                        start_new_session=True,
                        pass_fds=tuple(range(3, 3 + len(request.pass_fds))),
                        preexec_fn=in_child,  # noqa: PLW1509
                    )
        except (OSError, ValueError) as exc:
            os.close(out_read)
            os.close(err_read)
            raise SpawnError.from_exec(
                program,
                exc,
                search_path=os.get_exec_path(dict(request.env)),
                exists=os.path.isfile,
                cwd=request.cwd,
            ) from None
        except subprocess.SubprocessError as exc:
            os.close(out_read)
            os.close(err_read)
            if leaf is not None:
                raise  # the cgroup could not be joined: spawn() retries without
            raise SpawnError(program, f"the child's set-up failed: {exc}") from None
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            if home:
                _join(home)
            os.close(out_write)
            os.close(err_write)
        assert self._adoptions is not None
        guardian = self._group_guardian if leaf is None else None
        return LinuxProcess(
            popen, out_read, err_read, leaf, request.process_id, self._adoptions, guardian
        )

    def _enter(self, leaf: str | None) -> str | None:
        """Move the manager into ``leaf`` to spawn from there: the cgroup to return to, or
        None to spawn with the ``preexec_fn`` (not wanted, or the move is not allowed)."""
        if leaf is None or not self._spawn_from_leaf or self._tree is None:
            return None
        try:
            _join(leaf)
        except OSError:
            self._spawn_from_leaf = False  # the preexec_fn joins from the child instead
            return None
        return self._tree.home

    async def aclose(self) -> None:
        """Remove the cgroup tree, stop the guardians, reap what was adopted."""
        if self._tree is not None:
            tree, self._tree = self._tree, None
            await tree.aclose()
        if self._group_guardian is not None:
            guardian, self._group_guardian = self._group_guardian, None
            await guardian.aclose()
        if self._adoptions is not None:
            self._adoptions.reap()


def _both(first: Callable[[], None], then: Callable[[], None]) -> Callable[[], None]:
    def setup() -> None:
        first()
        then()

    return setup


def _child_setup(
    parent: int, leaf: str | None, prctl: Callable[..., int] | None
) -> Callable[[], None]:
    procs = os.path.join(leaf, "cgroup.procs").encode() if leaf else None

    def setup() -> None:  # runs in the child between fork and exec: keep it tiny
        if procs is not None:
            _join_procs(procs)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal_module.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the manager died before prctl took effect
            os._exit(1)

    return setup


class LinuxProcess:
    """A child started by ``LinuxSpawner``: its group, its cgroup, its pipes."""

    def __init__(
        self,
        popen: subprocess.Popen[Any],
        stdout_fd: int,
        stderr_fd: int,
        leaf: str | None,
        process_id: str,
        adoptions: Adoptions,
        guardian: GroupGuardian | None,
    ) -> None:
        self._popen = popen
        self._pid = popen.pid
        self._pidfd = os.pidfd_open(self._pid)
        self._leaf = leaf
        self._process_id = process_id
        self._adoptions = adoptions
        adoptions.leaders.add(self._pid)
        self._guardian = guardian
        if guardian is not None:
            guardian.add(self._pid)
        self._code: int | None = None
        self._waiting = False
        self._changed = anyio.Event()
        #: the leaf's memory.max holds the request's max_memory (set by the spawner)
        self.limits_memory = False
        #: the leaf has memory.current (set by the spawner)
        self.memory_accounted = False
        # kept open once measured, until the leader is reaped: the leader's
        # /proc/<pid>/stat and the leaf's cgroup.procs (a re-read costs a quarter of an
        # open, and a scrape of 500 processes must answer within 50 ms)
        self._stat_fd: int | None = None
        self._procs_fd: int | None = None
        self._stdout = _Pipe(stdout_fd)
        self._stderr = _Pipe(stderr_fd)

    @property
    def pid(self) -> int:
        """The child's pid (and process group id)."""
        return self._pid

    @property
    def stdout(self) -> _Pipe:
        """The child's stdout."""
        return self._stdout

    @property
    def stderr(self) -> _Pipe:
        """The child's stderr."""
        return self._stderr

    async def wait(self) -> int:
        """The exit code; -N for a death by signal N. Any number of tasks may wait."""
        while self._code is None:
            if self._waiting:
                await self._changed.wait()
                continue
            self._waiting = True
            try:
                await anyio.wait_readable(self._pidfd)
                self._reap()
            finally:
                self._waiting = False
                self._changed.set()
                self._changed = anyio.Event()
        return self._code

    def _reap(self) -> None:
        pid, status = os.waitpid(self._pid, os.WNOHANG)
        if pid == 0:
            return
        self._code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = self._code
        os.close(self._pidfd)
        for fd in (self._stat_fd, self._procs_fd):
            if fd is not None:
                os.close(fd)
        self._stat_fd = self._procs_fd = None
        self._adoptions.leaders.discard(self._pid)
        self._adoptions.reap()

    async def stop(self, signal: str, grace: float) -> int | None:
        """Signal the whole tree, SIGKILL it after ``grace``; return once it is gone."""
        descendants = [] if self._leaf else self._outside_the_group()
        self._signal_tree(signal_module.Signals[signal], descendants)
        with anyio.move_on_after(grace):
            await self.wait()
            await self._wait_tree_gone(descendants)
        if self._code is None or self._tree_alive(descendants):
            if not self._leaf:
                descendants = sorted(set(descendants) | set(self._outside_the_group()))
            self._kill_tree(descendants)
            with anyio.move_on_after(KILL_GRACE):
                await self.wait()
                await self._wait_tree_gone(descendants)
        if not self._tree_alive(descendants):
            if self._leaf is not None:
                _rmdir(self._leaf)
            if self._guardian is not None:
                self._guardian.remove(self._pid)
                self._guardian = None
        self._adoptions.reap()
        return self._code

    def usage(self) -> Usage | None:
        """The tree's CPU time and memory: its cgroup's ``cpu.stat`` and
        ``memory.current`` where the leaf has the memory controller, else its
        processes' (found by its cgroup, or by parent links without one)."""
        if self._leaf is None:
            return _processes_usage(_tree(self._pid), self._leader_stat)
        if self.memory_accounted:
            cpu = _cgroup_value(self._leaf, "cpu.stat", "usage_usec")
            memory = _cgroup_value(self._leaf, "memory.current")
            if cpu is not None and memory is not None and _cgroup_populated(self._leaf):
                return Usage(cpu / 1e6, int(memory))
        # one read per process gives both (cpu.stat as well would cost a third more
        # for a scrape of 500, and a scrape must answer within 50 ms)
        if self._code is not None:
            return None
        try:
            if self._procs_fd is None:
                procs = os.path.join(self._leaf, "cgroup.procs")
                self._procs_fd = os.open(procs, os.O_RDONLY | os.O_CLOEXEC)
            members = [int(pid) for pid in os.pread(self._procs_fd, 65536, 0).split()]
        except OSError:
            return None
        if len(members) > 6000:  # more than 64 KiB of pids: read them all
            members = _cgroup_members(self._leaf)
        return _processes_usage(members, self._leader_stat)

    def _leader_stat(self, pid: int) -> bytes | None:
        """``/proc/<pid>/stat`` of the leader from a descriptor kept open while it lives
        (a reused pid can never be read through it); of another process, opened each
        time."""
        if pid != self._pid:
            return _read(f"/proc/{pid}/stat")
        if self._code is not None:
            return None
        try:
            if self._stat_fd is None:
                self._stat_fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(self._stat_fd, 4096, 0)
        except OSError:
            return None

    def killed_for_memory(self) -> bool:
        """Whether the kernel's OOM killer ended the tree at its ``memory.max``."""
        if self._leaf is None or not self.limits_memory:
            return False
        kills = _cgroup_value(self._leaf, "memory.events", "oom_group_kill")
        return bool(kills) or bool(_cgroup_value(self._leaf, "memory.events", "oom_kill"))

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is in the tree: its cgroup, or its group and the descendants
        that left it (by parent links, and the orphans adopted as the subreaper)."""
        if self._leaf is not None:
            return pid in _cgroup_members(self._leaf)
        return pid == self._pid or _same_group(pid, self._pid) or pid in self._outside_the_group()

    def signal(self, signal: str) -> None:
        """Send ``signal`` to every process of the tree (its cgroup, or its group and the
        descendants that left it)."""
        sig = platform_signal(signal)
        descendants = [] if self._leaf else self._outside_the_group()
        self._signal_tree(sig, descendants)

    def _outside_the_group(self) -> list[int]:
        """Without a cgroup: descendants by parent links, and adopted orphans."""
        return _descendants(self._pid) + self._adoptions.of(self._process_id)

    def _signal_tree(self, sig: signal_module.Signals, descendants: list[int]) -> None:
        if self._leaf is not None:
            for pid in _cgroup_members(self._leaf):  # each member once: the group is inside
                _kill(pid, sig)
            return
        _killpg(self._pid, sig)
        for pid in descendants:
            _kill(pid, sig)

    def _kill_tree(self, descendants: list[int]) -> None:
        if self._leaf is not None:
            try:
                with open(os.path.join(self._leaf, "cgroup.kill"), "w") as file:
                    file.write("1")
                return
            except OSError:
                pass
            for pid in _cgroup_members(self._leaf):
                _kill(pid, signal_module.SIGKILL)
        _killpg(self._pid, signal_module.SIGKILL)
        for pid in descendants:
            _kill(pid, signal_module.SIGKILL)

    def _tree_alive(self, descendants: list[int]) -> bool:
        if self._leaf is not None and _cgroup_populated(self._leaf):
            return True
        if _group_alive(self._pid):
            return True
        return any(_alive(pid) for pid in descendants)

    async def _wait_tree_gone(self, descendants: list[int]) -> None:
        delay = 0.001
        while self._tree_alive(descendants):
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.05)


class _Pipe:
    """A non-blocking pipe read end, as an async iterator of chunks; closed at EOF.

    An iterator object rather than an async generator: a reader may stop and go on
    later, and nothing is closed behind its back by the garbage collector.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd

    def __aiter__(self) -> _Pipe:
        return self

    async def __anext__(self) -> bytes:
        while self._fd is not None:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if data:
                # A child that writes faster than its lines are handled keeps the pipe
                # full: without a turn for the others here, its reader held the event
                # loop (other children's readers, the API, the shutdown waited).
                await anyio.lowlevel.checkpoint()
                return data
            os.close(self._fd)
            self._fd = None
        raise StopAsyncIteration


async def _wait_exit(process: subprocess.Popen[Any]) -> None:
    """Wait (on a pidfd, not by polling) until ``process`` has exited (at most 5 s), reap it."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # already reaped
        process.poll()
        return
    try:
        with anyio.move_on_after(5):
            await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    process.poll()


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # still populated (a D-state process): the guardian removes it at the end


def _kill(pid: int, sig: signal_module.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int, sig: signal_module.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _start_guardian(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start a guardian in its own session reading a pipe: (the process, the write end),
    which the manager holds open for as long as it lives (``_release`` closes it)."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            argv,
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    _hold(write_end)
    return process, write_end


#: Write ends of the live guardians' pipes, closed in every forked child: a process the
#: host application forks (multiprocessing's default on Linux) inherits them, and the
#: guardians would not see the manager die while it lives (a SIGKILLed manager left its
#: escaped descendants running until then).
_HELD_PIPES: set[int] = set()
_at_fork_registered = False


def _hold(write_end: int) -> None:
    global _at_fork_registered  # one hook per process, registered with the first guardian
    if not _at_fork_registered:
        os.register_at_fork(after_in_child=_close_held_pipes)
        _at_fork_registered = True
    _HELD_PIPES.add(write_end)


def _close_held_pipes() -> None:
    for fd in _HELD_PIPES:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_PIPES.clear()


def _release(write_end: int) -> None:
    """Close a guardian's pipe: it does its work and exits."""
    _HELD_PIPES.discard(write_end)
    os.close(write_end)


def _join(cgroup: str) -> None:
    """Move the calling process (all its threads) into ``cgroup``."""
    _join_procs(os.path.join(cgroup, "cgroup.procs").encode())


def _join_procs(procs: bytes) -> None:
    fd = os.open(procs, os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def _same_group(pid: int, pgid: int) -> bool:
    try:
        return os.getpgid(pid) == pgid
    except OSError:
        return False


def _cgroup_members(leaf: str) -> list[int]:
    data = _read(f"{leaf}/cgroup.procs")
    return [int(line) for line in data.split()] if data else []


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, by parent links (their ``children`` files)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(_children(current))
    return found


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _read(path: str) -> bytes | None:
    """A small file of /proc or /sys in one read (``open()`` costs four times as much:
    a scrape of 500 processes reads 2,000 of them); None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:  # a cgroup of thousands of processes
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _processes_usage(
    pids: list[int], read_stat: Callable[[int], bytes | None] | None = None
) -> Usage | None:
    """CPU time (theirs and their reaped children's) and resident memory of ``pids``
    from /proc (one read each: ``stat``), summed over the live ones; None when none is."""
    cpu, memory, alive = 0, 0, False
    for pid in pids:
        stat = read_stat(pid) if read_stat is not None else _read(f"/proc/{pid}/stat")
        if not stat:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        alive = True
        cpu += sum(int(field) for field in fields[11:15])  # utime stime cutime cstime
        memory += int(fields[21]) * _PAGE  # rss, in pages
    return Usage(cpu / _CLOCK_TICKS, memory) if alive else None


def _cgroup_value(leaf: str, name: str, key: str | None = None) -> float | None:
    """A number from a cgroup file: the whole file (``memory.current``), or the value of
    ``key`` in a flat-keyed one (``cpu.stat``); None where the controller is absent."""
    data = _read(f"{leaf}/{name}")
    if data is None:
        return None
    if key is None:
        return float(data) if data.strip().isdigit() else None
    wanted = key.encode()
    for line in data.splitlines():
        field, _, value = line.partition(b" ")
        if field == wanted and value.strip().isdigit():
            return float(value)
    return None


def _enable_memory_controller(tree: str) -> bool:
    """Give the tree's leaves ``memory.current`` and ``memory.max`` where the manager's
    cgroup passes the memory controller down (its ``subtree_control``); the tree itself
    holds no process, so it may pass it on. Elsewhere the leaves go without (False)."""
    try:
        with open(os.path.join(tree, "cgroup.controllers")) as file:
            if "memory" not in file.read().split():
                return False
        with open(os.path.join(tree, "cgroup.subtree_control"), "w") as file:
            file.write("+memory")
    except OSError:
        return False
    return True


def _limit_memory(leaf: str, limit: int) -> bool:
    """Set the leaf's ``memory.max`` (the whole tree killed together past it, not one
    process of it); False where the memory controller is not enabled there."""
    try:
        with open(os.path.join(leaf, "memory.max"), "w") as file:
            file.write(str(limit))
    except OSError:
        return False
    try:
        with open(os.path.join(leaf, "memory.oom.group"), "w") as file:
            file.write("1")
    except OSError:
        pass  # kernels before 4.19: the OOM killer picks one process of the tree
    return True


def _cgroup_populated(leaf: str) -> bool:
    try:
        with open(os.path.join(leaf, "cgroup.events")) as file:
            return "populated 1" in file.read()
    except OSError:
        return False


def _proc_table() -> dict[int, tuple[int, int, bytes]]:
    """pid -> (ppid, pgid, state) for every process, from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _children(pid: int) -> list[int]:
    """The children of ``pid``: its threads' ``children`` files, or a /proc scan without."""
    if not _has_children_files():
        return [child for child, (parent, _, _) in _proc_table().items() if parent == pid]
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                found += [int(field) for field in file.read().split()]
        except OSError:
            continue  # the thread ended
    return found


@functools.cache
def _has_children_files() -> bool:
    """``/proc/<pid>/task/<tid>/children`` exists (CONFIG_PROC_CHILDREN, most kernels)."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _state(pid: int) -> bytes | None:
    """The state letter of ``pid`` (``R``, ``S``, ``Z``...), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :][:1]


def _descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` by parent links (the ones that left its group too)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _, state) in table.items():
        if state not in (b"Z", b"X"):
            children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _alive(pid: int) -> bool:
    return _state(pid) not in (b"Z", b"X", None)


def _group_alive(pgid: int) -> bool:
    """True while the group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return any(g == pgid and s not in (b"Z", b"X") for _, g, s in _proc_table().values())
