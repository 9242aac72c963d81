"""The ports: what the supervisor needs from the outside world, as narrow Protocols.

Adapters satisfy them structurally (no inheritance); ``tests/fakes.py`` has a fake
for each. The data that crosses them (``SpawnRequest``, ``LogBatch``) lives here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    import builtins
    from contextlib import AbstractContextManager

    from processman.domain.model import Config, Probe, ProcessMetrics, ProcessStatus

StreamName = Literal["stdout", "stderr"]


class SpawnRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a spawner needs to start one instance."""

    process_id: str
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    #: the manager's file descriptors the child gets as 3, 4, ... (listening sockets)
    pass_fds: tuple[int, ...] = ()
    #: variables of ``env`` set to the child's own pid, after the fork (``LISTEN_PID``)
    pid_env: tuple[str, ...] = ()
    #: ``maxMemory``: a spawner that can have the kernel enforce it (a cgroup's
    #: ``memory.max``) does, and says so in ``ProcessHandle.limits_memory``
    max_memory: int | None = None


class Usage(msgspec.Struct, frozen=True):
    """What an instance's whole tree uses: CPU time since it began, and memory now."""

    cpu_seconds: float
    memory_bytes: int


@runtime_checkable
class ProcessHandle(Protocol):
    """One running instance (and, on POSIX, its process group)."""

    @property
    def pid(self) -> int:
        """The pid of the direct child."""
        ...

    @property
    def stdout(self) -> AsyncIterable[bytes]:
        """The child's stdout, chunk by chunk, until it is closed."""
        ...

    @property
    def stderr(self) -> AsyncIterable[bytes]:
        """The child's stderr, chunk by chunk, until it is closed."""
        ...

    async def wait(self) -> int:
        """Wait for the child to exit; return its code (-N for a death by signal N)."""
        ...

    async def stop(self, signal: str, grace: float) -> int | None:
        """Send ``signal`` to the tree, SIGKILL it after ``grace`` seconds; return once it is gone.

        Returns the child's exit code (None if it could not be learnt).
        """
        ...

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is a process of this instance's tree, descendants that left
        its group included where the platform can tell (a cgroup, adopted orphans)."""
        ...

    def signal(self, signal: str) -> None:
        """Send ``signal`` (a name such as ``"SIGHUP"``) to every process of the tree.

        Raises:
            ValueError: the platform cannot send that signal.
        """
        ...

    def usage(self) -> Usage | None:
        """Measure the tree now (its cgroup, else its processes); None once it is gone."""
        ...

    @property
    def limits_memory(self) -> bool:
        """Whether the kernel enforces the request's ``max_memory`` on the tree."""
        ...

    def killed_for_memory(self) -> bool:
        """Whether the kernel killed the tree for going over its ``max_memory``."""
        ...


@runtime_checkable
class Prober(Protocol):
    """Tries network probes (SPEC §8: ``http``, ``tcp``); ``exec``, ``logLine`` and
    ``notify`` are the runner's own (they need the spawner, the output, a socket)."""

    async def check(self, probe: Probe) -> str | None:
        """One try, bounded by ``probe.timeout``: None when it passed, else its result
        in a few words (``GET http://127.0.0.1:8000/health: 503``, ``connection refused``)."""
        ...

    async def aclose(self) -> None:
        """Release what the tries held (an HTTP client's connections)."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """An sd_notify socket (``NOTIFY_SOCKET``) shared by every instance that uses it."""

    path: str

    async def serve(self, on_message: Callable[[list[int], dict[str, str]], None]) -> None:
        """Hand every datagram's fields to ``on_message`` with the sender's pid and its
        ancestors' pids, until cancelled."""
        ...

    def close(self) -> None:
        """Stop receiving and remove the socket."""
        ...


@runtime_checkable
class Listeners(Protocol):
    """Listening sockets processman owns and passes to children (SPEC §9)."""

    def open(self, address: str) -> int:
        """Bind and listen on ``address``; its fd. Raises ``SpawnError`` naming it."""
        ...

    def close(self, fd: int) -> None:
        """Close one that ``open`` returned."""
        ...

    def close_all(self) -> None:
        """Close every one still open."""
        ...


@runtime_checkable
class Spawner(Protocol):
    """Starts processes."""

    async def spawn(self, request: SpawnRequest) -> ProcessHandle:
        """Start one instance; return once it runs.

        Raises:
            SpawnError: naming the program or directory and the reason.
        """
        ...

    async def aclose(self) -> None:
        """Release what the spawner holds (the Linux spawner's cgroup tree and guardian);
        called once, when the manager has stopped every process."""
        ...


class LogBatch(msgspec.Struct, frozen=True):
    """Consecutive lines of one stream of one instance, read at ``time``."""

    process: str
    stream: StreamName
    pid: int
    time: datetime
    lines: list[str]


@runtime_checkable
class LogSink(Protocol):
    """Where child output goes (console via loguru, files, the ring buffer, ...)."""

    def write(self, batch: LogBatch) -> None:
        """Take a batch of lines; must not block for long (it runs on the event loop)."""
        ...

    def close(self) -> None:
        """Flush and release what the sink holds."""
        ...


class LogEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One buffered line, as the API serves it; lines of a group name their replica."""

    time: datetime
    stream: StreamName
    line: str
    process: str | None = None


@runtime_checkable
class LogBuffer(LogSink, Protocol):
    """A sink that remembers the last lines of each process (the ring buffer)."""

    #: lines kept per process; may be changed while it runs (a reload)
    capacity: int

    def tail(self, process_id: str, count: int) -> list[LogEntry]:
        """The last ``count`` lines of a process, oldest first."""
        ...


class LogSubscription(Protocol):
    """Live lines of one process, from the moment of subscription."""

    async def receive(self) -> tuple[list[LogEntry], int]:
        """Wait for lines; return them and how many were dropped right after them; raise
        ``anyio.EndOfStream`` once the manager has shut down and the last were received."""
        ...


@runtime_checkable
class ProcessControl(Protocol):
    """What a driving adapter (the HTTP API) needs of the manager."""

    @property
    def config(self) -> Config:
        """The configuration being supervised."""
        ...

    def list(self) -> builtins.list[ProcessStatus]:
        """Every status, in config order."""
        ...

    def metrics(self) -> builtins.list[ProcessMetrics]:
        """What ``/metrics`` exposes of every process."""
        ...

    def status(self, process_id: str) -> ProcessStatus:
        """One status; raises UnknownProcessError."""
        ...

    def group(self, group_id: str) -> builtins.list[ProcessStatus]:
        """A group's replicas' statuses; raises UnknownProcessError."""
        ...

    def is_group(self, process_id: str) -> bool:
        """Whether the id names a process with ``replicas``."""
        ...

    async def reload(self, config: Config | None = None) -> Any:
        """Apply a new config (SPEC §10; None: read its file again); its ``ReloadPlan``.
        Raises ``ConfigError`` for a bad one, changing nothing."""
        ...

    async def scale(self, process_id: str, replicas: int) -> builtins.list[ProcessStatus]:
        """Run that many replicas; ValueError without ``replicas`` or for a bad count."""
        ...

    async def start(self, process_id: str) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Start; return once spawned or failed (a group: a list, one per replica)."""
        ...

    async def stop(self, process_id: str) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Stop; return once the tree is gone (a group: a list, one per replica)."""
        ...

    async def signal(
        self, process_id: str, signal: str
    ) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Send ``signal`` to a running process's whole tree."""
        ...

    async def wait_ready(
        self,
        *process_ids: str,
        timeout: float | None = None,  # noqa: ASYNC109 - SPEC §8's signature
    ) -> builtins.list[ProcessStatus]:
        """Wait until the processes are ready (``NotReadyError`` otherwise)."""
        ...

    async def restart(self, process_id: str) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Restart; return once the new instance is spawned."""
        ...

    def logs(self, process_id: str, tail: int = 100) -> builtins.list[LogEntry]:
        """The last buffered lines, oldest first."""
        ...

    def events(self) -> Any:
        """Status changes: a snapshot, then every change (``StatusStream``)."""
        ...

    def subscribe(self, process_id: str) -> AbstractContextManager[LogSubscription]:
        """Live lines of a process while the block runs; raises UnknownProcessError, and
        NotRunningError once the manager has shut down."""
        ...


class WatchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What one development-mode process watches."""

    paths: tuple[str, ...]  # absolute; directories are watched recursively
    ignore: tuple[str, ...] = ()  # watchIgnore: .gitignore-style patterns
    ignore_dirs: tuple[str, ...] = ()  # absolute directories never watched (logs.dir)
    debounce: float = 0.05  # quiet period in seconds


@runtime_checkable
class FileWatcher(Protocol):
    """Reports file changes under some paths."""

    async def watch(self, request: WatchRequest, on_change: Callable[[set[str]], None]) -> None:
        """Call ``on_change`` with each batch of changed paths, once no change was seen for
        ``request.debounce``; return only when cancelled.

        Raises:
            WatchError: when a path cannot be watched (e.g. it does not exist).
        """
        ...


@runtime_checkable
class Clock(Protocol):
    """Time, so that tests can control it."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def utcnow(self) -> datetime:
        """The current wall time, aware, in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...
