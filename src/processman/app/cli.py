"""The ``processman`` command.

``run`` supervises in the foreground (and serves the HTTP API when asked), ``check``
validates a config; ``status``, ``start``, ``stop``, ``restart`` and ``logs`` are
clients of a running supervisor's HTTP API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any

import anyio
from dependency_injector import providers
from loguru import logger

from processman._version import __version__
from processman.adapters._posix import cwd_problem
from processman.adapters.api_socket import ApiSocketError, api_socket
from processman.adapters.config import load_config
from processman.adapters.control_socket import ControlSocket
from processman.adapters.logs import add_console_sink, logs_dir_problem
from processman.app.container import Container
from processman.app.manager import ProcessManager
from processman.app.runner import resolve_here
from processman.domain.durations import format_uptime, parse_duration
from processman.domain.errors import (
    AlreadySupervisedError,
    ApiError,
    ApiUnreachableError,
    ConfigError,
    InterpreterNotFoundError,
    NotRunningError,
)
from processman.domain.model import CONTROL_SOCKET, Config, Probe, ProbeKind, ProcessSpec
from processman.domain.ordering import dependencies, graph_of
from processman.domain.replicas import instance, member_ids
from processman.domain.usage import describe_size, human_size

if TYPE_CHECKING:
    import socket
    from collections.abc import AsyncIterator, Callable, Sequence

    from loguru import Logger

    from processman.adapters.api_client import ApiClient

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_BAD_CONFIG = 2
EXIT_UNREACHABLE = 3

_CLIENT_EXITS = (
    " Exit 0 on success, 1 when the server refuses (an unknown id ...), 3 when it cannot "
    "be reached."
)

_CONFIG_HELP = (
    "the config file; by default the first of processman.toml, processman.yaml, "
    "processman.yml, processman.json, pb_processes.json, Procfile in the current directory"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="processman",
        description="Start, keep alive and stop the helper processes an application needs.",
    )
    parser.add_argument("--version", action="version", version=f"processman {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="supervise the processes of a config in the foreground",
        description="Start every autostart process and keep them alive until SIGINT, "
        "SIGTERM or SIGQUIT (unless started ignoring it, as under nohup), then stop them "
        "all. SIGHUP reloads the config (as `processman reload` does) instead of stopping: "
        "a terminal that closes does not stop run (it ends with the session, or run it "
        "under a service manager). The API is served on "
        f"{CONTROL_SOCKET} beside the config (only its owner may connect), so that "
        "client commands run in that directory or below it find it. Exit 0 after a "
        "clean shutdown, 2 on a bad config or when that config is "
        "supervised already.",
        epilog="example:\n  processman run                 # then, in another terminal: "
        "processman status\n  processman run --api 127.0.0.1:9876 --only web,worker",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", nargs="?", metavar="CONFIG", help=_CONFIG_HELP)
    run.add_argument(
        "--api", metavar="HOST:PORT", help="also serve the HTTP control API on this TCP address"
    )
    run.add_argument("--only", metavar="ID,...", help="supervise only these processes")

    check = commands.add_parser(
        "check",
        help="validate a config and print what each process would run",
        description="Validate CONFIG and print each process's resolved argv, cwd and "
        "interpreter, with a warning for what would fail to start on this machine. Exit 0 "
        "when valid, 2 when not (errors on stderr).",
        epilog="example:\n  processman check\n  processman check deploy/processman.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("config", nargs="?", metavar="CONFIG", help=_CONFIG_HELP)

    export = commands.add_parser(
        "export",
        help="write systemd units, Kubernetes manifests or a Procfile for a config",
        description="Write what runs the same processes without processman. systemd: "
        "one unit per process (a template for replicas), .socket units and "
        "processman.target, into DIR (required). kubernetes: a Deployment per process "
        "and a Service for each with a port, as one YAML file (kubernetes.yaml in DIR, "
        "else stdout). procfile: a Procfile (in DIR, else stdout). Whatever the target "
        "cannot express is a warning on stderr. Exit 0 when written, 1 when a file "
        "cannot be written (or exists, without --force), 2 on a bad config.",
        epilog="example:\n  processman export systemd -o deploy/systemd\n"
        "  processman export kubernetes --image ghcr.io/me/app:1.0 > k8s.yaml\n"
        "  processman export procfile processman.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument(
        "format", choices=("systemd", "kubernetes", "procfile"), help="what to write"
    )
    export.add_argument("config", nargs="?", metavar="CONFIG", help=_CONFIG_HELP)
    export.add_argument(
        "-o", "--output", metavar="DIR", help="the directory to write into (made if missing)"
    )
    export.add_argument("--image", metavar="IMAGE", help="the container image (kubernetes)")
    export.add_argument("--force", action="store_true", help="overwrite files that exist")

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--api",
        metavar="URL",
        help="the API's base URL (PROCESSMAN_API); by default the control socket "
        f"{CONTROL_SOCKET} of this directory or of its nearest parent that has one",
    )
    client.add_argument("--token", help="bearer token (PROCESSMAN_TOKEN)")

    def command(name: str, summary: str, description: str, example: str, **extra: Any) -> Any:
        return commands.add_parser(
            name,
            parents=[client],
            help=summary,
            description=description + _CLIENT_EXITS,
            epilog="example:\n" + example,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **extra,
        )

    status = command(
        "status",
        "show the processes of a running supervisor",
        "A table of id, status, pid, uptime, restarts, ready, CPU, memory and last error "
        "(CPU and memory of each whole tree; 100% is one core).",
        "  processman status            # every process\n"
        "  processman ps web worker     # two of them\n"
        "  processman status --watch    # kept up to date until Ctrl-C",
        aliases=["ps"],
    )
    status.add_argument("ids", nargs="*", metavar="ID", help="the processes to show (all)")
    status.add_argument("--json", action="store_true", help="print the API's JSON array")
    status.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="redraw on every change (and CPU and memory every 2 s) until Ctrl-C",
    )
    for name, done in (
        ("start", "once each is spawned (or failed)"),
        ("stop", "once each whole tree is gone"),
        ("restart", "once each new instance is spawned"),
    ):
        verb = command(
            name,
            f"{name} processes",
            f"{name.capitalize()} the processes (in parallel) and print their statuses {done}.",
            f"  processman {name} worker\n  processman {name} web worker\n  processman {name} all",
        )
        verb.add_argument("ids", nargs="+", metavar="ID", help="process ids, or all")
    sig = command(
        "signal",
        "send a signal to processes' whole trees",
        "Send SIG to the whole process tree of each process (grandchildren included).",
        "  processman signal HUP web          # e.g. a server that reloads on SIGHUP\n"
        "  processman signal SIGUSR1 all",
    )
    sig.add_argument("signal", metavar="SIG", help="a signal name: HUP, SIGUSR1, TERM ...")
    sig.add_argument("ids", nargs="+", metavar="ID", help="process ids, or all")
    wait = command(
        "wait",
        "wait until processes are ready",
        "Wait until each process is ready (its ready probe passed; without one, running), "
        "and print their statuses. Exit 1 when one cannot become ready in time or is no "
        "longer trying (stopped, exited, crashed): the reason on stderr.",
        "  processman wait db api --timeout 30s && ./run-integration-tests",
    )
    wait.add_argument("ids", nargs="+", metavar="ID", help="process ids, or all")
    wait.add_argument(
        "--timeout", default="60s", metavar="D", help="how long to wait, e.g. 30s or 2m (60s)"
    )
    scale = command(
        "scale",
        "run N replicas of a process",
        "Run N replicas of a process that has `replicas` in its config: new ones start, "
        "the highest-numbered ones stop and go; print the group's statuses once the new "
        "ones are spawned and the removed ones' trees are gone.",
        "  processman scale web 4\n  processman scale web 0      # keep the group, run none",
    )
    scale.add_argument("id", metavar="ID", help="the process (a group of replicas)")
    scale.add_argument("replicas", metavar="N", help="how many replicas (0 or more)")
    command(
        "reload",
        "apply the edited config of a running supervisor",
        "Read the config file of `processman run` again and apply what changed: added "
        "processes start, removed ones stop, changed ones restart with their new spec, "
        "unchanged ones are left alone (SPEC §10); print what it did. A bad config changes "
        "nothing: its error is printed and the exit is 2.",
        "  processman reload\n  kill -HUP $(pidof processman)    # the same, by signal",
    )
    logs = command(
        "logs",
        "print processes' recent output",
        "Print the last N buffered lines of the processes; with -f, go on printing new "
        "lines until Ctrl-C. Without an ID (or with several), every line gets the "
        "console's <time> <id> | prefix, in time order.",
        "  processman logs worker -n 20\n"
        "  processman logs -f              # every process, as one stream",
    )
    logs.add_argument("ids", nargs="*", metavar="ID", help="the processes (all)")
    logs.add_argument("-n", type=int, default=100, metavar="N", help="how many lines (100)")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the live stream")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        code = run(args.config, only=args.only, api=args.api)
        # Every child is gone and every sink closed: skip the interpreter's teardown of
        # every module (~20 ms of the shutdown time a supervisor is measured by).
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe
                stream.flush()
        os._exit(code)
    if args.command == "check":
        sys.exit(check(args.config))
    if args.command == "export":
        sys.exit(export(args.format, args.config, args.output, image=args.image, force=args.force))
    sys.exit(client_command(args))


def _fail(message: str, code: int = EXIT_BAD_CONFIG) -> int:
    print(f"processman: {message}", file=sys.stderr)
    return code


# --- run ----------------------------------------------------------------------------


def _load(path: str | None, only: str | None = None, api: str | None = None) -> Config:
    config = load_config(path, api_listen=api)
    if only is None:
        return config
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    known = {spec.id for spec in config.processes}
    unknown = [pid for pid in wanted if pid not in known]
    if unknown or not wanted:
        listed = ", ".join(sorted(known)) or "none"
        problem = f"unknown id {', '.join(map(repr, unknown))}" if unknown else "no id given"
        raise ConfigError(config.source, "--only", f"{problem} (known: {listed})")
    # SPEC §8: the dependencies of the named processes run too
    closure = dependencies(wanted, graph_of(config.processes))
    added = [process_id for process_id in closure if process_id not in wanted]
    if added:
        named = ", ".join(added)
        print(
            f"processman: --only: also running {named} (needed by what --only names)",
            file=sys.stderr,
        )
    processes = tuple(spec for spec in config.processes if spec.id in closure)
    return Config(processes=processes, api=config.api, logs=config.logs, source=config.source)


# SPEC's two, then two that keep an ignore inherited from the shell (absent on Windows)
_STOPPING = (signal.SIGINT, signal.SIGTERM)
_ALSO_STOPPING = tuple(getattr(signal, name) for name in ("SIGQUIT",) if hasattr(signal, name))
#: SPEC §10: SIGHUP reloads the config (absent on Windows)
_RELOADING = tuple(getattr(signal, name) for name in ("SIGHUP",) if hasattr(signal, name))


def run(path: str | None, *, only: str | None = None, api: str | None = None) -> int:
    """``processman run``: supervise until a signal to stop (SIGINT, SIGTERM, ...)."""
    try:
        config = _load(path, only, api)
    except ConfigError as exc:
        return _fail(str(exc))
    token = config.api.token or os.environ.get("PROCESSMAN_TOKEN") or None
    sock = None
    if config.api.listen:
        try:
            sock = api_socket(config.api.listen, token)
        except ApiSocketError as exc:
            return _fail(str(exc))
    # before anything is spawned: a second run of one config would start it all twice
    directory = os.path.dirname(os.path.abspath(config.source))
    control, no_control = None, ""
    try:
        control = ControlSocket.open(directory)
    except AlreadySupervisedError as exc:
        if sock is not None:
            sock.close()
        return _fail(f"{config.source}: {exc}")
    except OSError as exc:
        no_control = (
            f"no control socket in {directory} ({exc.strerror or exc}): client commands "
            "need --api (give run --api HOST:PORT)"
        )
    logger.remove()
    # console = false hides the children's lines, not processman's warnings and errors: a
    # crash or a full disk is still said on stderr
    ids = [s.id for s in config.processes]
    console = {
        "handler": add_console_sink(ids, sys.stderr, colorize=None, children=config.logs.console)
    }

    def console_switch(children: bool) -> None:
        """A reload changed logs.console: the children's lines are shown, or not."""
        logger.remove(console["handler"])
        console["handler"] = add_console_sink(ids, sys.stderr, colorize=None, children=children)

    logger.enable("processman")
    if no_control:
        logger.bind(process="processman", stream="manager").warning(no_control)
    _enough_descriptors(len(config.processes))
    try:
        anyio.run(
            _supervise,
            config,
            token,
            sock,
            control,
            lambda: _load(path, only, api),
            console_switch,
        )
    except ConfigError as exc:  # found at start-up, e.g. a logs.dir that cannot be written
        return _fail(str(exc))
    finally:
        logger.remove(console["handler"])
        if sock is not None:
            sock.close()
        if control is not None:
            control.close()
    return EXIT_OK


#: Descriptors the manager holds for each process (its stdout and stderr pipes, a pidfd),
#: and for itself (the loop, the guardian, the API's connections, log files).
DESCRIPTORS_EACH, DESCRIPTORS_OWN = 3, 256


def _enough_descriptors(processes: int) -> None:
    """Raise the soft limit on open files to what ``processes`` need, as supervisord's
    ``minfds`` does: a common soft limit of 1,024 let only ~300 processes start, the rest
    failed with "Too many open files". Never above the hard limit (said, if too low)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = DESCRIPTORS_EACH * processes + DESCRIPTORS_OWN
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < want:
        logger.bind(process="processman", stream="manager").warning(
            "only {} open files are allowed (the hard limit): {} processes need about {}, "
            "so some will fail to start; raise it with ulimit -Hn, or LimitNOFILE= in systemd",
            hard,
            processes,
            want,
        )


def run_container(config: Config) -> Container:
    """The wiring of ``processman run``: a process that owns all its children and whose
    own threads start none, so it is the subreaper and spawns from inside the cgroups."""
    container = Container()
    container.subreaper.override(providers.Object(True))
    container.spawn_from_leaf.override(providers.Object(True))
    container.loguru_records.override(providers.Object(config.logs.console))
    return container


async def _supervise(
    config: Config,
    token: str | None,
    sock: socket.socket | None,
    control: ControlSocket | None,
    read_config: Callable[[], Config],
    console_switch: Callable[[bool], None],
) -> None:
    log = logger.bind(process="processman", stream="manager")
    # SIGQUIT stops the processes as SIGTERM does; SIGHUP reloads (SPEC §10). Without a
    # handler run died at once, and the guardian SIGKILLed every child. One of them that
    # run was started ignoring (nohup, a background job) stays ignored. All are caught
    # before the first spawn, so children start with them at their defaults, however run
    # was started; tested.
    ignored = {s for s in (*_ALSO_STOPPING, *_RELOADING) if signal.getsignal(s) is signal.SIG_IGN}
    with anyio.open_signal_receiver(*_STOPPING, *_ALSO_STOPPING, *_RELOADING) as signals:
        container = run_container(config)
        container.console_switch.override(providers.Object(console_switch))
        manager = ProcessManager(config, container=container)
        server = None
        on_socket = _ControlServer(manager, control, read_config) if control is not None else None
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as impatient:
                async with manager:
                    if not config.processes:
                        log.warning("no processes to supervise: {} lists none", config.source)
                    if sock is not None:
                        from processman.adapters.http import ApiServer, create_app  # API only

                        server = ApiServer(
                            create_app(manager, token=token, read_config=read_config)
                        )
                        await tg.start(server.serve, sock)
                        log.info("API on {}", config.api.base_url)
                    if on_socket is not None:
                        tg.start_soon(on_socket.serve)

                    def reload() -> None:
                        tg.start_soon(_reload_on_hup, manager, read_config, log)

                    name = await _next_stop(signals, ignored, log, reload)
                    log.info("{} received: stopping every process (again to kill them)", name)
                    impatient.start_soon(_kill_on_next_stop, manager, signals, ignored, log)
                impatient.cancel_scope.cancel()
            # The API served the shutdown: statuses answered, starts refused (503), and
            # each log stream got its process's last lines, then ended. Nothing is open now.
            if server is not None:
                server.stop()
            if on_socket is not None:
                on_socket.stop()


class _ControlServer:
    """The API on the control socket, without a token (only its owner may connect).

    The HTTP adapter (starlette, uvicorn) is imported when the first client connects,
    not before: until then the connections wait in the socket's backlog, and a run that
    nobody asks pays nothing for it.
    """

    def __init__(
        self, manager: ProcessManager, control: ControlSocket, read_config: Callable[[], Config]
    ) -> None:
        self._manager = manager
        self._control = control
        self._read_config = read_config
        self._server: Any = None
        self._stopped = False
        self._waiting = anyio.CancelScope()

    async def serve(self) -> None:
        """Wait for a first client, then serve until ``stop``."""
        with self._waiting:
            await anyio.wait_readable(self._control.socket)
        if self._stopped:
            return
        from processman.adapters.http import ApiServer, create_app

        self._server = ApiServer(
            create_app(self._manager, auth=False, read_config=self._read_config)
        )
        await self._server.serve(self._control.socket)

    def stop(self) -> None:
        """End the server (its open streams get their grace), or the wait for a client."""
        self._stopped = True
        self._waiting.cancel()
        if self._server is not None:
            self._server.stop()


async def _next_stop(
    signals: AsyncIterator[int],
    ignored: set[int],
    log: Logger,
    on_reload: Callable[[], object] | None = None,
) -> str:
    """Wait for a signal that stops run (not one it was started ignoring); its name.
    SIGHUP calls ``on_reload`` (ignored without one: run is stopping)."""
    while True:
        name = signal.Signals(received := await anext(signals)).name
        if received in ignored:
            log.info("{} received: ignored, as when processman started", name)
        elif received in _RELOADING:
            if on_reload is None:
                log.info("{} received while stopping: no reload", name)
            else:
                on_reload()
        else:
            return name


async def _reload_on_hup(
    manager: ProcessManager, read_config: Callable[[], Config], log: Logger
) -> None:
    """SIGHUP: read the config again and apply it; one line either way."""
    try:
        config = await anyio.to_thread.run_sync(read_config)
        plan = await manager.reload(config)
    except ConfigError as exc:
        log.error("SIGHUP: the config was not reloaded: {}", exc)
        return
    except NotRunningError:
        return  # stopping meanwhile
    done = (("added", plan.added), ("removed", plan.removed), ("changed", plan.changed))
    changes = [f"{key} {', '.join(ids)}" for key, ids in done if ids]
    log.info("SIGHUP: config reloaded: {}", "; ".join(changes) or "nothing changed")


async def _kill_on_next_stop(
    manager: ProcessManager, signals: AsyncIterator[int], ignored: set[int], log: Logger
) -> None:
    """A second Ctrl-C while processes wait out their stopTimeout: SIGKILL them now (as
    docker compose does)."""
    name = await _next_stop(signals, ignored, log)
    log.warning("{} received again: killing every process now", name)
    await manager.kill_stopping()


# --- check --------------------------------------------------------------------------


def check(path: str | None) -> int:
    """``processman check``: validate and show what would run."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _fail(str(exc))
    print(f"# {config.source}: {len(config.processes)} process(es)")
    if not config.processes:
        print("warning: no processes to supervise")
    if config.logs.dir and (problem := logs_dir_problem(config.logs.dir)):
        where = f"cannot write logs to {config.logs.dir}"
        print(f"warning: {where}: {problem} (run would refuse to start)")
    for group in config.processes:
        print(group.id)
        spec = group
        if group.replicas is not None:
            ids = member_ids(group)
            shown = f"{ids[0]} ... {ids[-1]}" if len(ids) > 2 else ", ".join(ids) or "none"
            print(f"  replicas:    {group.replicas} ({shown}; below: the first's)")
            spec = instance(group, 0)
        if group.port is not None:
            print(f"  port:        {group.port} (PORT; a replica's: plus its index)")
        for address in group.sockets:
            print(f"  socket:      {address} (listened on by processman, passed as an fd)")
        if group.max_memory is not None:
            print(f"  maxMemory:   {describe_size(group.max_memory)} (the whole tree; then killed)")
        missing = False
        try:
            argv, interpreter = resolve_here(spec)
        except InterpreterNotFoundError as exc:
            argv, interpreter, missing = (spec.script or "", *spec.args), None, True
            print(f"  warning:     {exc.reason}")
        for problem in _start_problems(spec, interpreter, missing):
            print(f"  warning:     {problem}")
        print(f"  argv:        {shlex.join(argv)}")
        print(f"  cwd:         {spec.cwd}")
        if spec.script is not None:
            chosen = spec.interpreter or "auto"
            if interpreter is not None:
                shown = interpreter
            elif missing:
                shown = "none found (see the warning above)"
            else:
                shown = "none (run directly: needs a shebang and the run bit)"
            print(f"  interpreter: {shown} ({chosen})")
        else:
            program = argv[0]
            found = program if "/" in program else shutil.which(program)
            print(f"  program:     {found or program + ' (not found on PATH)'}")
        if spec.depends_on:
            needs = ", ".join(f"{dep} ({condition})" for dep, condition in spec.depends_on.items())
            print(f"  dependsOn:   {needs}")
        for name, probe in (("ready", spec.ready), ("health", spec.health)):
            if probe is not None:
                print(f"  {name + ':':<12} {_describe_probe(probe, spec.ready_timeout)}")
    return EXIT_OK


def _describe_probe(probe: Probe, ready_timeout: float) -> str:
    if probe.kind is ProbeKind.LOG_LINE:
        return f"logLine {probe.target!r} (within {ready_timeout:g}s)"
    if probe.kind is ProbeKind.NOTIFY:
        return f"notify: READY=1 over NOTIFY_SOCKET (within {ready_timeout:g}s)"
    if probe.kind is ProbeKind.WATCHDOG:
        return f"watchdog: WATCHDOG=1 over NOTIFY_SOCKET at least every {probe.period:g}s"
    what = shlex.join(probe.command) if probe.command else probe.target
    timing = f"every {probe.period:g}s, timeout {probe.timeout:g}s"
    return f"{probe.kind} {what} ({timing})"


def _start_problems(spec: ProcessSpec, interpreter: str | None, missing: bool) -> list[str]:
    """What would make this process fail to start on this machine now: the config is
    valid, so these are warnings (exit 0), as the interpreter one is."""
    problems = []
    cwd_state = cwd_problem(spec.cwd) if os.name == "posix" else None
    if cwd_state is None and not os.path.isdir(spec.cwd):
        cwd_state = "does not exist" if not os.path.exists(spec.cwd) else "is not a directory"
    if cwd_state is not None:
        problems.append(f"cwd {spec.cwd} {cwd_state}")
    script = spec.script
    if script is not None and not os.path.isfile(script):
        state = "does not exist" if not os.path.exists(script) else "is not a file"
        problems.append(f"script {script} {state}")
    elif script is not None and interpreter is None and not missing and os.name == "posix":
        # run directly (on Windows, by its extension instead)
        if not os.access(script, os.X_OK):
            problems.append(f"{script} is not executable (chmod +x it, or set interpreter)")
        try:
            with open(script, "rb") as file:
                first = file.read(2)
        except OSError as exc:
            problems.append(f"{script} cannot be read: {exc.strerror or exc}")
        else:
            if first != b"#!":
                problems.append(f"{script} has no #! line to say what runs it")
    program = spec.command[0] if spec.command else None
    if program is not None and "/" in program and not os.path.exists(program):
        problems.append(f"program {program} does not exist")
    return problems


# --- export ---------------------------------------------------------------------------


def export(
    kind: str, path: str | None, output: str | None, *, image: str | None, force: bool
) -> int:
    """``processman export``: render the config (``domain.export``) and write the files."""
    from processman.adapters.config import load_export_source
    from processman.domain import export as render

    if kind == "systemd" and output is None:
        return _fail("export systemd: give the directory to write the units into (-o DIR)")
    if kind == "kubernetes" and not image:
        return _fail("export kubernetes: give the container image (--image IMAGE)")
    try:
        source = load_export_source(path)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        if kind == "systemd":
            python = shutil.which("python3") or sys.executable  # waits for tcp/http probes
            result = render.systemd(
                source, exists=os.path.exists, which=shutil.which, python=python
            )
        elif kind == "kubernetes":
            assert image is not None
            result = render.kubernetes(source, image=image, exists=os.path.exists)
            result.files["kubernetes.yaml"] = _yaml_documents(result.documents)
        else:
            result = render.procfile(source, exists=os.path.exists, which=shutil.which)
    except render.ExportError as exc:
        return _fail(f"{source.config.source}: {exc}")
    for warning in result.warnings:
        print(f"processman: warning: {warning}", file=sys.stderr)
    if output is None:
        for text in result.files.values():
            sys.stdout.write(text)
        return EXIT_OK
    return _write_files(output, result.files, force=force)


def _yaml_documents(documents: list[dict[str, Any]]) -> str:
    import yaml  # only a Kubernetes export pays for it

    return "".join(
        "---\n" + yaml.safe_dump(document, sort_keys=False, width=1000) for document in documents
    )


def _write_files(directory: str, files: dict[str, str], *, force: bool) -> int:
    """Write every file under ``directory`` or none: an existing one is kept unless
    ``force``, and a directory that cannot be written is one line."""
    paths = {os.path.join(directory, name): text for name, text in files.items()}
    existing = [path for path in paths if os.path.lexists(path)]
    if existing and not force:
        listed = ", ".join(existing[:3]) + (" ..." if len(existing) > 3 else "")
        return _fail(f"{listed} exists already (give --force to overwrite)", EXIT_REFUSED)
    try:
        for path, text in paths.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
    except OSError as exc:
        where = exc.filename or directory
        return _fail(f"cannot write {where}: {exc.strerror or exc}", EXIT_REFUSED)
    print(f"processman: wrote {len(paths)} file(s) into {directory}", file=sys.stderr)
    return EXIT_OK


# --- clients of the HTTP API ----------------------------------------------------------


def client_command(args: argparse.Namespace) -> int:
    """``status``, ``start``, ``stop``, ``restart``, ``signal``, ``wait``, ``logs``."""
    try:
        client = _client(args)
    except (ApiUnreachableError, _NothingRunsHere) as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    try:
        if args.command in ("status", "ps"):
            if args.watch:
                return _watch(client, args.ids)
            return _status(client, args.ids, args.json)
        if args.command in ("start", "stop", "restart"):
            return _act(client, args.command, args.ids, {})
        if args.command == "signal":
            return _act(client, "signal", args.ids, {"signal": args.signal})
        if args.command == "reload":
            return _reload(client)
        if args.command == "scale":
            answer = client.post(f"/api/processes/{_quote(args.id)}/scale", replicas=args.replicas)
            print(format_table(answer))
            return EXIT_OK
        if args.command == "wait":
            try:
                seconds = parse_duration(args.timeout)
            except ValueError as exc:
                return _fail(f"--timeout: {exc}", EXIT_REFUSED)
            # the server answers within the timeout: give it that, and a margin
            client.command_timeout = max(client.command_timeout, seconds + 30)
            return _act(client, "wait", args.ids, {"timeout": args.timeout})
        return _logs(client, args.ids, args.n, args.follow)
    except ApiUnreachableError as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except ApiError as exc:
        return _fail(f"{client.base_url}: {exc.message}", EXIT_REFUSED)


def _client(args: argparse.Namespace) -> ApiClient:
    """The client of ``--api``, else ``PROCESSMAN_API``, else the nearest control socket.

    Raises:
        ApiUnreachableError: an address that is none (naming where it came from), or no
            control socket here or above.
    """
    # here, not at import: `run` never needs http.client
    from processman.adapters.api_client import ApiClient, find_control_socket

    token = args.token or os.environ.get("PROCESSMAN_TOKEN") or None
    base = args.api or os.environ.get("PROCESSMAN_API")
    if base:
        try:
            return ApiClient(base, token)
        except ApiUnreachableError as exc:  # not an address at all: say where it came from
            source = "--api" if args.api else "PROCESSMAN_API"
            raise _NothingRunsHere(f"{source}: {exc}") from None
    here = os.getcwd()
    path = find_control_socket(here)
    if path is None:
        raise _NothingRunsHere(
            f"no processman runs here: no {CONTROL_SOCKET} in {here} or above it; start "
            "`processman run` here (or in a parent directory), or give --api URL"
        )
    return ApiClient(token=token, socket_path=path)


class _NothingRunsHere(Exception):
    """No ``--api``, no ``PROCESSMAN_API`` and no control socket."""


def _status(client: ApiClient, ids: list[str], as_json: bool) -> int:
    if ids:
        statuses = []
        for process_id in dict.fromkeys(ids):
            found = client.get(f"/api/processes/{_quote(process_id)}")
            statuses.extend(found if isinstance(found, list) else [found])
    else:
        statuses = client.get("/api/processes")
    print(json.dumps(statuses, indent=2) if as_json else format_table(statuses))
    return EXIT_OK


#: how often ``status --watch`` asks for fresh CPU and memory figures
WATCH_MEASURE_SECONDS = 2.0


def _watch(client: ApiClient, ids: list[str]) -> int:
    """``status --watch``: the table from ``/api/events``, redrawn in place on every
    change, on the terminal's alternate screen (left as it was found on Ctrl-C); CPU and
    memory from ``/api/processes`` every 2 s. Not a terminal: one table per change."""
    import threading

    statuses: dict[str, dict[str, Any]] = {}
    wanted = set(ids)
    tty = sys.stdout.isatty()
    lock = threading.Lock()
    done = threading.Event()

    def shown(status: dict[str, Any]) -> bool:
        return not wanted or status["id"] in wanted or status.get("group") in wanted

    def draw() -> None:
        with lock:
            if done.is_set():  # the terminal is being given back
                return
            table = format_table([s for s in statuses.values() if shown(s)])
            if tty:  # in place, line by line: no clear, so no flicker
                lines = table.split("\n")
                sys.stdout.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines))
                sys.stdout.write("\x1b[J")
            else:
                sys.stdout.write(table + "\n\n")
            sys.stdout.flush()

    def measure() -> None:
        while not done.wait(WATCH_MEASURE_SECONDS):
            try:
                fresh = client.get("/api/processes")
            except ApiError:
                continue
            with lock:
                for status in fresh:
                    if status["id"] in statuses:
                        statuses[status["id"]] = status
            draw()

    if tty:
        sys.stdout.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor
    threading.Thread(target=measure, daemon=True).start()
    try:
        for event, data in client.events("/api/events"):
            if event == "end":
                break
            body = json.loads(data) if data else {}
            with lock:
                if event == "status":
                    statuses[body["id"]] = body
                elif event == "removed":
                    statuses.pop(body["id"], None)
                elif event == "gap":  # a fresh snapshot follows
                    statuses.clear()
            draw()
    except KeyboardInterrupt:
        pass
    finally:
        with lock:  # after any redraw under way, and none after this
            done.set()
            if tty:
                sys.stdout.write("\x1b[?25h\x1b[?1049l")
                sys.stdout.flush()
    return EXIT_OK


def _act(client: ApiClient, action: str, ids: list[str], query: dict[str, object]) -> int:
    """One command on many processes, in parallel; the statuses, then each refusal."""
    from concurrent.futures import ThreadPoolExecutor

    if "all" in ids:  # each process of the config: a group restarts rolling
        ids = [status.get("group") or status["id"] for status in client.get("/api/processes")]
    ids = list(dict.fromkeys(ids))

    def one(process_id: str) -> list[dict[str, Any]] | ApiError:
        try:
            answer = client.post(f"/api/processes/{_quote(process_id)}/{action}", **query)
        except ApiError as exc:
            return exc
        return answer if isinstance(answer, list) else [answer]

    if not ids:
        return EXIT_OK
    with ThreadPoolExecutor(max_workers=min(len(ids), 32)) as pool:
        results = list(pool.map(one, ids))
    statuses = [s for r in results if not isinstance(r, ApiError) for s in r]
    if statuses:
        print(format_table(statuses))
    code = EXIT_OK
    for result in results:
        if isinstance(result, ApiUnreachableError):
            _fail(str(result), EXIT_UNREACHABLE)
            code = EXIT_UNREACHABLE
        elif isinstance(result, ApiError):
            _fail(f"{client.base_url}: {result.message}", EXIT_REFUSED)
            code = max(code, EXIT_REFUSED)
    return code


def _reload(client: ApiClient) -> int:
    try:
        plan = client.post("/api/reload")
    except ApiError as exc:
        if exc.status == 400:  # the config's error: file and field
            return _fail(exc.message, EXIT_BAD_CONFIG)
        raise
    for key in ("added", "removed", "changed", "unchanged"):
        print(f"{key + ':':<10} {', '.join(plan[key]) or '-'}")
    for warning in plan["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _quote(process_id: str) -> str:
    return urllib.parse.quote(process_id, safe="")


def _logs(client: ApiClient, ids: list[str], count: int, follow: bool) -> int:
    if count < 0:
        return _fail("-n must be 0 or more", EXIT_REFUSED)
    # every id, in config order: the colours are the console's, whichever are shown
    statuses = client.get("/api/processes")
    every = [status["id"] for status in statuses]
    wanted = list(dict.fromkeys(ids)) or every
    replicas: dict[str, list[str]] = {}  # a group's lines are prefixed with each replica
    for status in statuses:
        if status.get("replica") is not None:
            replicas.setdefault(status["group"], []).append(status["id"])
    shown = [member for pid in wanted for member in replicas.get(pid, [pid])]
    prefixed = len(wanted) > 1 or not ids or any(pid in replicas for pid in wanted)
    printer = _LinePrinter(shown if prefixed else [], every)
    backlog = []
    for process_id in wanted:
        for entry in client.get(f"/api/processes/{_quote(process_id)}/logs", tail=count):
            # a group's lines name their replica
            backlog.append((entry.get("time", ""), entry.get("process", process_id), entry))
    backlog.sort(key=lambda item: item[0])  # stable: each process's own order is kept
    for _, process_id, entry in backlog:
        printer.print(process_id, entry)
    if not follow:
        return EXIT_OK
    try:
        return _follow(client, wanted, printer)
    except KeyboardInterrupt:
        return EXIT_OK


def _follow(client: ApiClient, ids: list[str], printer: _LinePrinter) -> int:
    """Print the live lines of ``ids`` as they come (a thread per stream) until every
    stream has ended or one breaks off."""
    import queue
    import threading

    arrived: queue.Queue[tuple[str, str, str] | BaseException] = queue.Queue()

    def read(process_id: str) -> None:
        try:
            for event, data in client.events(f"/api/processes/{_quote(process_id)}/logs/stream"):
                arrived.put((process_id, event, data))
                if event == "end":
                    return
            arrived.put((process_id, "broke off", ""))  # no `end`: processman killed, a fault
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            arrived.put(exc)

    for process_id in ids:
        threading.Thread(target=read, args=(process_id,), daemon=True).start()
    ended = 0
    while ended < len(ids):
        item = arrived.get()
        if isinstance(item, BaseException):
            raise item
        process_id, event, data = item
        if event == "broke off":
            return _fail(f"{client.base_url}: the log stream broke off", EXIT_UNREACHABLE)
        record = json.loads(data)
        if event == "gap":
            print(
                f"[processman: {record['dropped']} lines of {process_id} dropped]", file=sys.stderr
            )
        elif event == "end":
            ended += 1
            if ended == len(ids):
                print(f"[processman: {record['reason']}]", file=sys.stderr)
        else:
            printer.print(record.get("process", process_id), record)
    return EXIT_OK


class _LinePrinter:
    """Prints log entries: bare for one process; with the console's ``<time> <id> |``
    prefix (coloured on a terminal) when ``prefixed`` names the processes shown."""

    def __init__(self, prefixed: list[str], every: list[str]) -> None:
        from processman.adapters.logs import console_colours, should_colorize

        self.prefixed = bool(prefixed)
        self.width = max((len(pid) for pid in prefixed), default=0)
        self.colours = console_colours(every) if should_colorize(sys.stdout) else {}

    def print(self, process_id: str, entry: dict[str, Any]) -> None:
        line = str(entry.get("line", ""))
        if not self.prefixed:
            out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
            print(line, file=out, flush=True)
            return
        from processman.adapters.logs import console_line

        colour = self.colours.get(process_id, "37") if self.colours else None
        text = console_line(
            _local_stamp(entry.get("time")), process_id, self.width, line + "\n", colour
        )
        sys.stdout.write(text)
        sys.stdout.flush()


def _local_stamp(when: object) -> str:
    """``HH:MM:SS.mmm`` in local time, as the console shows it, from an RFC 3339 time."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(str(when)).astimezone()
    except ValueError:
        return " " * 12
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def format_table(statuses: list[dict[str, Any]]) -> str:
    """The ``status`` table: id, status, pid, uptime, restarts, ready, CPU, memory, last
    error (READY is yes or no while running)."""
    rows = [("ID", "STATUS", "PID", "UPTIME", "RESTARTS", "READY", "CPU", "MEM", "LAST ERROR")]
    for s in statuses:
        running = s["status"] == "running"
        cpu, memory = s.get("cpuPercent"), s.get("memoryBytes")
        rows.append(
            (
                str(s["id"]),
                str(s["status"]),
                "-" if s["pid"] is None else str(s["pid"]),
                format_uptime(float(s["uptime"])) if running else "-",
                str(s["restartCount"]),
                ("yes" if s.get("ready") else "no") if running else "-",
                "-" if cpu is None else f"{cpu:.1f}%",
                "-" if memory is None else human_size(int(memory)),
                str(s["lastError"]),
            )
        )
    last = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(last)]
    return "\n".join(
        (
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:last])) + "  " + row[last]
        ).rstrip()
        for row in rows
    )
