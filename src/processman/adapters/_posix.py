"""POSIX helpers that the Linux and POSIX spawners (and ``processman check``) share."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
from typing import TYPE_CHECKING

from processman.domain.errors import SpawnError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from processman.domain.ports import SpawnRequest


def platform_signal(name: str) -> signal.Signals:
    """The signal called ``name`` (``"SIGUSR1"``) here.

    Raises:
        ValueError: this platform has no such signal (``SIGPWR`` on macOS).
    """
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(f"{name} does not exist on this platform") from None


def cwd_problem(cwd: str) -> str | None:
    """Why a child could not enter ``cwd`` as its working directory; None when it can.

    One stat and one access check, done inline: a worker thread would cost more. The
    child runs as the manager's user, so the manager's permissions are the child's.
    """
    if not os.path.isdir(cwd):
        return "does not exist" if not os.path.exists(cwd) else "is not a directory"
    if not os.access(cwd, os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return "cannot be entered (permission denied)"
    return None


def check_cwd(cwd: str) -> None:
    """Raise the ``SpawnError`` that names ``cwd`` when a child could not enter it."""
    problem = cwd_problem(cwd)
    if problem is not None:
        raise SpawnError(cwd, f"working directory {problem}")


def needs_post_fork(request: SpawnRequest) -> bool:
    """Whether the child needs set-up that only the child can do: fds moved to 3, 4, ...
    and variables that hold its own pid."""
    return bool(request.pass_fds or request.pid_env)


def post_fork(request: SpawnRequest) -> Callable[[], None]:
    """What the child runs between fork and exec for such a request, with the spawn
    made with ``env=None`` (so that exec takes the environment this sets up) and
    ``pass_fds=range(3, 3 + len(request.pass_fds))`` (so that close_fds, which comes
    after, keeps them).

    The environment is ``request.env`` plus each of ``pid_env`` set to the child's pid
    (systemd's ``LISTEN_PID``, ``WATCHDOG_PID``); no shell runs in between, so nothing
    is added or dropped. The fds are first copied above their targets, so that one whose
    number is another's target is not overwritten before it is moved.
    """
    items = list(request.env.items())
    pid_keys = request.pid_env
    fds = request.pass_fds
    first_free = 3 + len(fds)

    clearenv = _clearenv()

    def setup() -> None:
        pid = str(os.getpid())
        clearenv()  # what os.environ knows of, and what was put there beside it
        os.environ.clear()
        for key, value in items:
            os.environ[key] = value
        for key in pid_keys:
            os.environ[key] = pid
        staged = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, first_free) for fd in fds]
        for target, fd in enumerate(staged, start=3):
            os.dup2(fd, target)  # inheritable
            os.close(fd)

    return setup


def _clearenv() -> Callable[[], object]:
    """libc's ``clearenv``: a variable set with ``os.putenv`` (or by a C library) is not in
    ``os.environ``, whose ``clear`` would leave it."""
    import ctypes

    try:
        return ctypes.CDLL(None).clearenv
    except AttributeError:  # a libc without it (macOS): os.environ.clear() has to do
        return lambda: None


@contextlib.contextmanager
def low_fds_held(count: int) -> Iterator[None]:
    """Keep fds 3 ... 2 + ``count`` taken while a child is spawned with ``post_fork``: the
    pipe over which the child reports a failed exec is then not among the fds it moves
    there."""
    held = []
    try:
        while count:
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            if fd >= 3 + count:
                os.close(fd)
                break
            held.append(fd)
        yield
    finally:
        for fd in held:
            os.close(fd)


def find_program(program: str, env: Mapping[str, str]) -> str:
    """``program`` as exec will run it with ``env``'s PATH (the spawn itself gets no env
    to search with).

    Raises:
        FileNotFoundError: it is on no directory of that PATH.
        PermissionError: it is there, but not executable.
    """
    if os.sep in program:
        return program
    search = os.get_exec_path(dict(env))
    found = shutil.which(program, path=os.pathsep.join(search))
    if found is not None:
        return found
    if any(os.path.isfile(os.path.join(d or ".", program)) for d in search):
        raise PermissionError(13, "Permission denied", program)
    raise FileNotFoundError(2, "No such file or directory", program)
