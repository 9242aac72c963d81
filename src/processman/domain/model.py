"""The domain model: what a process is (its spec), what it is doing (its status)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

import msgspec

from processman.domain.durations import MAX_SECONDS

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID = re.compile(ID_PATTERN)

#: Signal names accepted for ``stopSignal`` (POSIX names; Windows maps them itself).
SIGNAL_NAMES = frozenset(
    "SIGHUP SIGINT SIGQUIT SIGILL SIGTRAP SIGABRT SIGBUS SIGFPE SIGKILL SIGUSR1 SIGSEGV "
    "SIGUSR2 SIGPIPE SIGALRM SIGTERM SIGCHLD SIGCONT SIGSTOP SIGTSTP SIGTTIN SIGTTOU SIGURG "
    "SIGXCPU SIGXFSZ SIGVTALRM SIGPROF SIGWINCH SIGIO SIGPWR SIGSYS".split()
)


class Status(StrEnum):
    """The statuses of SPEC §2; each compares equal to its string."""

    WAITING = "waiting"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"
    CRASHED = "crashed"


class RestartPolicy(StrEnum):
    """When a process that ended is started again."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


def normalise_signal(name: str) -> str:
    """Return ``SIGTERM`` for ``TERM``/``sigterm``/``SIGTERM``.

    Raises:
        ValueError: for a number or an unknown name.
    """
    upper = name.strip().upper()
    full = upper if upper.startswith("SIG") else "SIG" + upper
    if full not in SIGNAL_NAMES:
        raise ValueError(f'unknown signal {name!r} (use a name such as "SIGTERM" or "INT")')
    return full


def check_id(process_id: str) -> None:
    """Raise ValueError unless ``process_id`` matches SPEC's id pattern."""
    if not _ID.match(process_id):
        raise ValueError(
            f"invalid id {process_id!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 64 characters)"
        )


class ProbeKind(StrEnum):
    """How a probe (SPEC §8) tells that an instance is ready or healthy."""

    HTTP = "http"
    TCP = "tcp"
    EXEC = "exec"
    LOG_LINE = "logLine"
    NOTIFY = "notify"
    WATCHDOG = "watchdog"


#: The kinds each probe may be.
READY_KINDS = frozenset(
    {ProbeKind.HTTP, ProbeKind.TCP, ProbeKind.EXEC, ProbeKind.LOG_LINE, ProbeKind.NOTIFY}
)
HEALTH_KINDS = frozenset({ProbeKind.HTTP, ProbeKind.TCP, ProbeKind.EXEC, ProbeKind.WATCHDOG})


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    """A ``ready`` or ``health`` probe, resolved: templates expanded, seconds.

    ``target`` is the URL (http), ``HOST:PORT`` (tcp) or the regex (logLine); ``command``
    the argv of an exec probe; ``period`` is the watchdog interval for a watchdog.
    """

    kind: ProbeKind
    target: str = ""
    command: tuple[str, ...] = ()
    period: float = 1.0
    timeout: float = 1.0
    initial_delay: float = 0.0
    failures: int = 3

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("failures must be 1 or more")
        if not 0 < self.period <= MAX_SECONDS or not 0 < self.timeout <= MAX_SECONDS:
            raise ValueError("period and timeout must be above 0s")


class Condition(StrEnum):
    """What a dependency must be for its dependent to start (SPEC §8)."""

    STARTED = "started"
    READY = "ready"
    COMPLETED = "completed"
    SUCCEEDED = "succeeded"


class ProcessSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One process, fully resolved: absolute paths, expanded templates, seconds.

    Exactly one of ``script`` and ``command`` is set. ``command`` is the argv
    (without ``args``); ``script`` is run through ``interpreter``.
    """

    id: str
    cwd: str
    script: str | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = msgspec.field(default_factory=dict)
    interpreter: str | None = None
    restart: RestartPolicy = RestartPolicy.ALWAYS
    max_retries: int = -1
    backoff: float = 1.0
    max_backoff: float = 30.0
    healthy_after: float = 10.0
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10.0
    autostart: bool = True
    dev_mode: bool = False
    watch_paths: tuple[str, ...] = ()
    watch_ignore: tuple[str, ...] = ()
    watch_debounce: float = 0.05
    ready: Probe | None = None
    ready_timeout: float = 60.0
    health: Probe | None = None
    depends_on: dict[str, Condition] = msgspec.field(default_factory=dict)
    #: a group's number of replicas (SPEC §9); None: a single instance
    replicas: int | None = None
    #: ``PORT`` of the first instance; each replica gets this plus its index
    port: int | None = None
    #: addresses processman listens on and hands to every instance (SPEC §9)
    sockets: tuple[str, ...] = ()
    #: set on a replica: its group's id and its index (``replicas.instance``)
    group: str | None = None
    replica: int | None = None
    #: ``maxMemory`` in bytes (SPEC §11): the tree is killed past it
    max_memory: int | None = None

    @property
    def group_id(self) -> str:
        """The group this instance belongs to: its own id when it has no replicas."""
        return self.group if self.group is not None else self.id

    @property
    def notifies(self) -> bool:
        """Whether its children talk sd_notify: a ``notify`` ready or ``watchdog`` health."""
        return (self.ready is not None and self.ready.kind is ProbeKind.NOTIFY) or (
            self.health is not None and self.health.kind is ProbeKind.WATCHDOG
        )

    def __post_init__(self) -> None:
        check_id(self.id)
        if self.ready is not None and self.ready.kind not in READY_KINDS:
            raise ValueError(f"a {self.ready.kind} probe cannot be a ready probe")
        if self.health is not None and self.health.kind not in HEALTH_KINDS:
            raise ValueError(f"a {self.health.kind} probe cannot be a health probe")
        if self.id in self.depends_on:
            raise ValueError("a process cannot depend on itself")
        if (self.script is None) == (self.command is None):
            raise ValueError("exactly one of script and command must be set")
        if self.command is not None and not self.command:
            raise ValueError("command is empty")
        if self.command is not None and self.interpreter is not None:
            raise ValueError("interpreter applies to script only, not to command")
        if self.replicas is not None and self.replicas < 0:
            raise ValueError("replicas must be 0 or more")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("port must be 1-65535")
        if self.max_memory is not None and self.max_memory <= 0:
            raise ValueError("maxMemory must be more than 0 bytes")
        if self.max_retries < -1:
            raise ValueError("maxRetries must be -1 (unlimited) or more")
        for name in (
            "backoff",
            "max_backoff",
            "healthy_after",
            "stop_timeout",
            "watch_debounce",
            "ready_timeout",
        ):
            seconds = getattr(self, name)
            if seconds < 0:
                raise ValueError(f"{name} is negative")
            if not seconds <= MAX_SECONDS:  # NaN too
                raise ValueError(f"{name} must be at most 2562047h, got {seconds!r} seconds")
        if self.max_backoff < self.backoff:
            raise ValueError("maxBackoff is below backoff")
        if normalise_signal(self.stop_signal) != self.stop_signal:
            raise ValueError(f"write stop_signal as {normalise_signal(self.stop_signal)!r}")


#: The control socket of ``processman run``, in the config file's directory (SPEC §6).
CONTROL_SOCKET = ".processman.sock"


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[api]`` section: where the HTTP control API listens, and its token."""

    listen: str | None = None
    token: str | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` for ``PROCESSMAN_API``; a wildcard host as 127.0.0.1; "" if off."""
        if not self.listen:
            return ""
        host, _, port = self.listen.rpartition(":")
        if host in ("", "0.0.0.0", "::", "[::]", "*"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[logs]`` section."""

    dir: str | None = None
    rotation_bytes: int = 10 * 1024 * 1024
    retention: int = 5
    buffer_lines: int = 1000
    console: bool = True


#: The ``source`` of a config made in Python rather than read from a file.
IN_MEMORY = "<config>"


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """A whole configuration: processes in file order, and the optional sections."""

    processes: tuple[ProcessSpec, ...]
    api: ApiSettings = ApiSettings()
    logs: LogSettings = LogSettings()
    source: str = IN_MEMORY

    def __post_init__(self) -> None:
        from processman.domain.replicas import member_ids  # replicas imports this module

        seen: set[str] = set()
        for spec in self.processes:
            if spec.id in seen:
                raise ValueError(f"duplicate process id {spec.id!r}")
            seen.add(spec.id)
        instances: set[str] = set()
        for spec in self.processes:
            for member in member_ids(spec) if spec.replicas is not None else ():
                if member in seen or member in instances:
                    raise ValueError(f"replica id {member!r} of {spec.id!r} is taken")
                instances.add(member)
        seen |= instances
        for spec in self.processes:
            unknown = [dep for dep in spec.depends_on if dep not in seen]
            if unknown:
                raise ValueError(f"{spec.id} depends on unknown process {unknown[0]!r}")
        from processman.domain.ordering import find_cycle  # ordering imports this module

        group_of = {member: spec.id for spec in self.processes for member in member_ids(spec)}
        cycle = find_cycle(
            {
                spec.id: {group_of.get(dep, dep): None for dep in spec.depends_on}
                for spec in self.processes
            }
        )
        if cycle:
            raise ValueError("dependency cycle " + " -> ".join(cycle))

    def get(self, process_id: str) -> ProcessSpec | None:
        """The spec with this id, or None."""
        return next((p for p in self.processes if p.id == process_id), None)


class ProcessStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A snapshot of one process, as ``ProcessManager.status()`` returns it.

    Attributes are snake_case; encoded (the HTTP API) the fields are camelCase.
    """

    id: str
    status: Status
    pid: int | None
    start_time: datetime | None
    uptime: float
    restart_count: int
    exit_code: int | None
    last_error: str
    command: tuple[str, ...]
    dev_mode: bool
    ready: bool = False
    notify_status: str = ""
    group: str = ""
    replica: int | None = None
    #: the tree's CPU use since the previous reading (100 = one core); None unless running
    cpu_percent: float | None = None
    #: the tree's resident memory; None unless running
    memory_bytes: int | None = None


class ProcessMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """One process as ``/metrics`` exposes it: its status, its tree's CPU time so far
    (None unless running), and the lines it has written per stream."""

    status: ProcessStatus
    cpu_seconds: float | None
    log_lines: dict[str, int]
