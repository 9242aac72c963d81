"""POSIX helpers that the Linux and POSIX spawners (and ``processman check``) share."""

from __future__ import annotations

import os
import signal

from processman.domain.errors import SpawnError


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
