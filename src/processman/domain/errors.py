"""Every error processman raises, in one tree.

::

    ProcessmanError
    ├── ConfigError                  a config file is missing, malformed or invalid
    ├── TemplateError                a ``${NAME}`` could not be expanded
    ├── UnknownProcessError          (also a KeyError) no process has that id
    ├── NotRunningError              (also a RuntimeError) the manager is not running
    ├── ProcessNotRunningError       a command needs a running process (signal)
    ├── NotReadyError                a process did not become ready (wait_ready)
    ├── WatchError                   development mode cannot watch a path
    ├── AlreadySupervisedError       another ``processman run`` supervises this config
    ├── SpawnError                   a process could not be started
    │   └── InterpreterNotFoundError no interpreter candidate exists
    └── ApiError                     the control API refused a request (CLI client)
        └── ApiUnreachableError      the control API could not be reached

Errors carry structured fields and read well as strings.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class ProcessmanError(Exception):
    """Base class of every error processman raises on purpose."""


class ConfigError(ProcessmanError):
    """A configuration file cannot be used.

    Attributes:
        file: the config file (or ``"<config>"`` when built in code).
        field: the path of the offending field, e.g. ``processes[1].backoff``;
            empty when the whole file is at fault.
        reason: what was wrong.
    """

    def __init__(self, file: str, field: str, reason: str) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.reason}"


class TemplateError(ProcessmanError):
    """A template names a variable that is not defined and has no default."""

    def __init__(self, name: str, reason: str = "") -> None:
        self.name = name
        self.reason = reason or (
            f"undefined variable ${{{name}}} (give a default with ${{{name}:-...}})"
        )
        super().__init__(self.reason)


class UnknownProcessError(ProcessmanError, KeyError):
    """No process has this id."""

    def __init__(self, process_id: str) -> None:
        self.process_id = process_id
        super().__init__(process_id)

    def __str__(self) -> str:
        return f"unknown process id {self.process_id!r}"


class NotRunningError(ProcessmanError, RuntimeError):
    """A command reached a ``ProcessManager`` that is not running: not yet entered, or
    shutting down or shut down (a start then would leave a child nobody stops)."""


class ProcessNotRunningError(ProcessmanError):
    """A command that needs a running instance (a signal) found none."""

    def __init__(self, process_id: str, status: str) -> None:
        self.process_id = process_id
        self.status = status
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"process {self.process_id!r} is {self.status}: no process to signal"


class NotReadyError(ProcessmanError):
    """A process waited for is not ready: the time ran out, or it stopped trying
    (``stopped``, ``exited`` or ``crashed``)."""

    def __init__(
        self, process_id: str, status: str, last_error: str, timeout: float | None
    ) -> None:
        self.process_id = process_id
        self.status = status
        self.last_error = last_error
        self.timeout = timeout
        super().__init__(str(self))

    def __str__(self) -> str:
        when = f" after {self.timeout:g}s" if self.timeout is not None else ""
        state = "running, not ready" if self.status == "running" else self.status
        why = f": {self.last_error}" if self.last_error else ""
        return f"{self.process_id} is not ready{when}: {state}{why}"


class WatchError(ProcessmanError):
    """A watch path cannot be watched."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"cannot watch {self.path}: {self.reason}"


class AlreadySupervisedError(ProcessmanError):
    """A live ``processman run`` answers on the control socket at ``path``."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        super().__init__(str(self))

    def __str__(self) -> str:
        by = f"pid {self.pid}" if self.pid else "another processman run"
        return f"already supervised by {by} (its control socket {self.path} answers)"


class SpawnError(ProcessmanError):
    """A process could not be started.

    Attributes:
        program: the program or directory at fault.
        reason: why, in words.
    """

    def __init__(self, program: str, reason: str) -> None:
        self.program = program
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"cannot start {self.program}: {self.reason}"

    @classmethod
    def from_exec(
        cls,
        program: str,
        exc: OSError | ValueError,
        *,
        search_path: Sequence[str],
        exists: Callable[[str], bool],
        cwd: str | None = None,
    ) -> SpawnError:
        """The error for an exec of ``program`` (POSIX) that failed with ``exc``.

        ``search_path`` is the child's PATH as a list (``os.get_exec_path(env)``),
        ``exists`` asks the file system. A name without ``/`` that is in none of PATH's
        directories is "not found on PATH", whatever exec said: it reports the first
        error other than ENOENT on its way through PATH, such as the EACCES of a
        directory it may not search (``/root/.local/bin`` for another user) or the ELOOP
        of a broken link, whether or not the program is anywhere at all. A failed change
        to the working directory ``cwd`` (the child reports it with that filename) names
        the directory, not the program.
        """
        if isinstance(exc, ValueError):  # e.g. an embedded NUL in an argument or a variable
            return cls(program, str(exc))
        if cwd is not None and exc.filename == cwd:
            reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
            return cls(cwd, f"working directory cannot be entered ({reason or exc})")
        bare = "/" not in program
        if isinstance(exc, FileNotFoundError) or (
            bare and not any(exists(posixpath.join(d or ".", program)) for d in search_path)
        ):
            return cls(program, "not found on PATH" if bare else "file not found")
        if isinstance(exc, PermissionError):
            return cls(program, "permission denied (is it executable?)")
        return cls(program, exc.strerror or str(exc))


class InterpreterNotFoundError(SpawnError):
    """``interpreter = "auto"`` (or a named interpreter) found nothing to run the script."""

    def __init__(self, script: str, tried: Sequence[str]) -> None:
        self.tried = tuple(tried)
        super().__init__(script, "no interpreter found; tried " + ", ".join(self.tried))


class ApiError(ProcessmanError):
    """The control API answered with an error (``status`` is the HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class ApiUnreachableError(ApiError):
    """No answer from the control API at ``url``."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(0, f"cannot reach the processman API at {url}: {reason}")
