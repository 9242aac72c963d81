"""The ``processman`` command: ``run`` supervises in the foreground, ``check`` validates."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from processman._version import __version__
from processman.adapters.config import load_config
from processman.adapters.logs import add_console_sink
from processman.app.manager import ProcessManager
from processman.domain.errors import ConfigError, InterpreterNotFoundError
from processman.domain.interpreter import resolve_argv
from processman.domain.model import Config

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_BAD_CONFIG = 2


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
        "SIGTERM, then stop them all. Exit 0 after a clean shutdown, 2 on a bad config.",
    )
    run.add_argument("config", nargs="?", metavar="CONFIG", help=_config_help())
    run.add_argument(
        "--only", metavar="ID,...", help="supervise only these processes (comma-separated ids)"
    )

    check = commands.add_parser(
        "check",
        help="validate a config and print what each process would run",
        description="Validate CONFIG and print each process's resolved argv, cwd and "
        "interpreter. Exit 0 when valid, 2 when not (errors on stderr).",
    )
    check.add_argument("config", nargs="?", metavar="CONFIG", help=_config_help())
    return parser


def _config_help() -> str:
    return (
        "the config file; by default the first of processman.toml, processman.yaml, "
        "processman.yml, processman.json, pb_processes.json, Procfile in the current directory"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        sys.exit(run(args.config, only=args.only))
    sys.exit(check(args.config))


def _fail(message: str) -> int:
    print(f"processman: {message}", file=sys.stderr)
    return EXIT_BAD_CONFIG


def _load(path: str | None, only: str | None = None) -> Config:
    config = load_config(path)
    if only is None:
        return config
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    known = {spec.id for spec in config.processes}
    unknown = [pid for pid in wanted if pid not in known]
    if unknown or not wanted:
        listed = ", ".join(sorted(known)) or "none"
        what = ", ".join(repr(u) for u in unknown) if unknown else "nothing"
        raise ConfigError(config.source, "--only", f"unknown id {what} (known: {listed})")
    processes = tuple(spec for spec in config.processes if spec.id in wanted)
    return Config(processes=processes, api=config.api, logs=config.logs, source=config.source)


def run(path: str | None, *, only: str | None = None) -> int:
    """``processman run``: supervise until SIGINT/SIGTERM."""
    try:
        config = _load(path, only)
    except ConfigError as exc:
        return _fail(str(exc))
    logger.remove()
    handler = None
    if config.logs.console:
        ids = [spec.id for spec in config.processes]
        handler = add_console_sink(ids, sys.stderr, colorize=None)
    logger.enable("processman")
    if config.api.listen:
        logger.bind(process="processman", stream="manager").warning(
            "api.listen is set but this version has no HTTP API yet; ignored"
        )
    try:
        anyio.run(_supervise, config)
    finally:
        if handler is not None:
            logger.remove(handler)
    return EXIT_OK


async def _supervise(config: Config) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with ProcessManager(config):
            async for received in signals:
                logger.bind(process="processman", stream="manager").info(
                    "{} received: stopping every process", signal.Signals(received).name
                )
                break


def check(path: str | None) -> int:
    """``processman check``: validate and show what would run."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _fail(str(exc))
    print(f"# {config.source}: {len(config.processes)} process(es)")
    for spec in config.processes:
        print(spec.id)
        try:
            argv, interpreter = resolve_argv(
                spec, exists=os.path.exists, which=shutil.which, windows=sys.platform == "win32"
            )
        except InterpreterNotFoundError as exc:
            argv, interpreter = (spec.script or "", *spec.args), None
            print(f"  warning:     {exc.reason}")
        print(f"  argv:        {shlex.join(argv)}")
        print(f"  cwd:         {spec.cwd}")
        if spec.script is not None:
            chosen = spec.interpreter or "auto"
            shown = interpreter or "none (run directly: needs a shebang and the run bit)"
            print(f"  interpreter: {shown} ({chosen})")
        else:
            program = argv[0]
            found = program if "/" in program else shutil.which(program)
            print(f"  program:     {found or program + ' (not found on PATH)'}")
    return EXIT_OK
