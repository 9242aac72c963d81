"""The ``processman`` command.

``run`` supervises in the foreground (and serves the HTTP API when asked), ``check``
validates a config; ``status``, ``start``, ``stop``, ``restart`` and ``logs`` are
clients of a running supervisor's HTTP API.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any

import anyio
from dependency_injector import providers
from loguru import logger

from processman._version import __version__
from processman.adapters._posix import cwd_problem
from processman.adapters.api_client import DEFAULT_API, ApiClient
from processman.adapters.config import load_config
from processman.adapters.logs import add_console_sink, logs_dir_problem
from processman.app.container import Container
from processman.app.manager import ProcessManager
from processman.app.runner import resolve_here
from processman.domain.errors import (
    ApiError,
    ApiUnreachableError,
    ConfigError,
    InterpreterNotFoundError,
)
from processman.domain.model import Config, ProcessSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from loguru import Logger

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_BAD_CONFIG = 2
EXIT_UNREACHABLE = 3

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
        description="Start every autostart process and keep them alive until SIGINT or "
        "SIGTERM (or SIGHUP or SIGQUIT, unless started ignoring them, as under nohup), then "
        "stop them all. Exit 0 after a clean shutdown, 2 on a bad config.",
    )
    run.add_argument("config", nargs="?", metavar="CONFIG", help=_CONFIG_HELP)
    run.add_argument("--api", metavar="HOST:PORT", help="serve the HTTP control API here")
    run.add_argument("--only", metavar="ID,...", help="supervise only these processes")

    check = commands.add_parser(
        "check",
        help="validate a config and print what each process would run",
        description="Validate CONFIG and print each process's resolved argv, cwd and "
        "interpreter. Exit 0 when valid, 2 when not (errors on stderr).",
    )
    check.add_argument("config", nargs="?", metavar="CONFIG", help=_CONFIG_HELP)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--api", metavar="URL", help=f"the API's base URL (PROCESSMAN_API; default {DEFAULT_API})"
    )
    client.add_argument("--token", help="bearer token (PROCESSMAN_TOKEN)")
    status = commands.add_parser(
        "status",
        parents=[client],
        help="show every process of a running supervisor",
        description="A table of id, status, pid, uptime, restarts and last error. Exit 0 "
        "on success, 1 when the server refuses, 3 when it cannot be reached.",
    )
    status.add_argument("--json", action="store_true", help="print the API's JSON array")
    for name, verb in (("start", "start"), ("stop", "stop"), ("restart", "restart")):
        command = commands.add_parser(
            name,
            parents=[client],
            help=f"{verb} one process",
            description=f"{verb.capitalize()} process ID and print its status once done. "
            "Exit 0 on success, 1 when the server refuses, 3 when it cannot be reached.",
        )
        command.add_argument("id", metavar="ID")
    logs = commands.add_parser(
        "logs",
        parents=[client],
        help="print a process's recent output",
        description="Print the last N buffered lines of process ID; with -f, go on printing "
        "new lines until Ctrl-C.",
    )
    logs.add_argument("id", metavar="ID")
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
    processes = tuple(spec for spec in config.processes if spec.id in wanted)
    return Config(processes=processes, api=config.api, logs=config.logs, source=config.source)


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Bind the API's socket up front, so that a busy port is a clear error, not a crash."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


# SPEC's two, then two that keep an ignore inherited from the shell (absent on Windows)
_STOPPING = (signal.SIGINT, signal.SIGTERM)
_ALSO_STOPPING = tuple(
    getattr(signal, name) for name in ("SIGHUP", "SIGQUIT") if hasattr(signal, name)
)


def run(path: str | None, *, only: str | None = None, api: str | None = None) -> int:
    """``processman run``: supervise until a signal to stop (SIGINT, SIGTERM, ...)."""
    try:
        config = _load(path, only, api)
    except ConfigError as exc:
        return _fail(str(exc))
    token = config.api.token or os.environ.get("PROCESSMAN_TOKEN") or None
    sock = None
    if config.api.listen:
        host, port = _split_listen(config.api.listen)
        if token is None and not _is_loopback(host):
            return _fail(
                f"refusing to serve the API on {config.api.listen} without a token: a "
                "non-loopback address needs api.token or PROCESSMAN_TOKEN"
            )
        try:
            sock = _bind(host, port)
        except OSError as exc:
            return _fail(f"cannot listen on {config.api.listen}: {exc.strerror or exc}")
    logger.remove()
    # console = false hides the children's lines, not processman's warnings and errors: a
    # crash or a full disk is still said on stderr
    handler = add_console_sink(
        [s.id for s in config.processes],
        sys.stderr,
        colorize=None,
        children=config.logs.console,
    )
    logger.enable("processman")
    _enough_descriptors(len(config.processes))
    try:
        anyio.run(_supervise, config, token, sock)
    except ConfigError as exc:  # found at start-up, e.g. a logs.dir that cannot be written
        return _fail(str(exc))
    finally:
        logger.remove(handler)
        if sock is not None:
            sock.close()
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


async def _supervise(config: Config, token: str | None, sock: socket.socket | None) -> None:
    log = logger.bind(process="processman", stream="manager")
    # SIGHUP (the terminal closed) and SIGQUIT stop the processes as SIGTERM does: without a
    # handler run died at once, and the guardian SIGKILLed every child. One of them that run
    # was started ignoring (nohup, a background job) stays ignored. All four are caught
    # before the first spawn, so children start with them at their defaults, however run
    # was started; tested.
    ignored = {s for s in _ALSO_STOPPING if signal.getsignal(s) is signal.SIG_IGN}
    with anyio.open_signal_receiver(*_STOPPING, *_ALSO_STOPPING) as signals:
        manager = ProcessManager(config, container=run_container(config))
        server = None
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as impatient:
                async with manager:
                    if not config.processes:
                        log.warning("no processes to supervise: {} lists none", config.source)
                    if sock is not None:
                        from processman.adapters.http import ApiServer, create_app  # API only

                        server = ApiServer(create_app(manager, token=token))
                        await tg.start(server.serve, sock)
                        log.info("API on {}", config.api.base_url)
                    name = await _next_stop(signals, ignored, log)
                    log.info("{} received: stopping every process (again to kill them)", name)
                    impatient.start_soon(_kill_on_next_stop, manager, signals, ignored, log)
                impatient.cancel_scope.cancel()
            # The API served the shutdown: statuses answered, starts refused (503), and
            # each log stream got its process's last lines, then ended. Nothing is open now.
            if server is not None:
                server.stop()


async def _next_stop(signals: AsyncIterator[int], ignored: set[int], log: Logger) -> str:
    """Wait for a signal that stops run (not one it was started ignoring); its name."""
    while True:
        name = signal.Signals(received := await anext(signals)).name
        if received not in ignored:
            return name
        log.info("{} received: ignored, as when processman started", name)


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
    for spec in config.processes:
        print(spec.id)
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
    return EXIT_OK


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


# --- clients of the HTTP API ----------------------------------------------------------


def client_command(args: argparse.Namespace) -> int:
    """``status``, ``start``, ``stop``, ``restart``, ``logs``."""
    base = args.api or os.environ.get("PROCESSMAN_API") or DEFAULT_API
    token = args.token or os.environ.get("PROCESSMAN_TOKEN") or None
    try:
        client = ApiClient(base, token)
    except ApiUnreachableError as exc:  # not an address at all: say where it came from
        return _fail(f"{'--api' if args.api else 'PROCESSMAN_API'}: {exc}", EXIT_UNREACHABLE)
    try:
        if args.command == "status":
            statuses = client.get("/api/processes")
            if args.json:
                print(json.dumps(statuses, indent=2))
            else:
                print(format_table(statuses))
        elif args.command in ("start", "stop", "restart"):
            quoted = _quote(args.id)
            status = client.post(f"/api/processes/{quoted}/{args.command}")
            print(format_table([status]))
        else:
            return _logs(client, args.id, args.n, args.follow)
    except ApiUnreachableError as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except ApiError as exc:
        return _fail(f"{client.base_url}: {exc.message}", EXIT_REFUSED)
    return EXIT_OK


def _quote(process_id: str) -> str:
    return urllib.parse.quote(process_id, safe="")


def _logs(client: ApiClient, process_id: str, count: int, follow: bool) -> int:
    if count < 0:
        return _fail("-n must be 0 or more", EXIT_REFUSED)
    quoted = _quote(process_id)
    for entry in client.get(f"/api/processes/{quoted}/logs", tail=count):
        _print_line(entry)
    if not follow:
        return EXIT_OK
    try:
        for event, data in client.events(f"/api/processes/{quoted}/logs/stream"):
            record = json.loads(data)
            if event == "gap":
                print(f"[processman: {record['dropped']} lines dropped]", file=sys.stderr)
            elif event == "end":
                print(f"[processman: {record['reason']}]", file=sys.stderr)
                return EXIT_OK
            else:
                _print_line(record)
    except KeyboardInterrupt:
        return EXIT_OK
    # no `end`: the connection was cut (processman killed, a network fault)
    return _fail(f"{client.base_url}: the log stream broke off", EXIT_UNREACHABLE)


def _print_line(entry: dict[str, Any]) -> None:
    out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    print(entry.get("line", ""), file=out, flush=True)


def format_table(statuses: list[dict[str, Any]]) -> str:
    """The ``status`` table: id, status, pid, uptime, restarts, last error."""
    rows = [("ID", "STATUS", "PID", "UPTIME", "RESTARTS", "LAST ERROR")]
    for s in statuses:
        rows.append(
            (
                str(s["id"]),
                str(s["status"]),
                "-" if s["pid"] is None else str(s["pid"]),
                format_uptime(float(s["uptime"])) if s["status"] == "running" else "-",
                str(s["restartCount"]),
                str(s["lastError"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        (
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        ).rstrip()
        for row in rows
    )


def format_uptime(seconds: float) -> str:
    """``42s``, ``5m03s``, ``2h10m``, ``3d04h``."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
