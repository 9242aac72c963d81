"""processman: a process supervisor for the helper processes an application depends on.

Use it as a library::

    async with ProcessManager(load_config("processman.toml")) as manager:
        await manager.restart("worker")

or run ``processman run``. Child output goes to loguru records that stay disabled
until the application calls ``log_to_console()`` (the console of ``processman run``) or
``logger.enable("processman")`` (its own sinks; each record's ``extra`` names the
process).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from loguru import logger

from processman._version import __version__
from processman.adapters.config import load_config
from processman.domain.errors import (
    ConfigError,
    InterpreterNotFoundError,
    NotReadyError,
    NotRunningError,
    ProcessmanError,
    SpawnError,
    TemplateError,
    UnknownProcessError,
)
from processman.domain.model import Config, ProcessSpec, ProcessStatus, RestartPolicy, Status

if TYPE_CHECKING:
    from typing import TextIO

    from processman.app.manager import ProcessManager

logger.disable("processman")


def log_to_console(
    config: Config | None = None, *, stream: TextIO | None = None, colorize: bool | None = None
) -> int:
    """Show the children's lines and processman's own on ``stream`` (stderr), as
    ``processman run`` does: ``<time> <id> | <line>``, a colour per process.

    Args:
        config: its ids set the column width and the colours (in config order);
            without it, each process gets the next colour when it first speaks.
        stream: where to write (``sys.stderr``).
        colorize: None follows the stream (a terminal, ``NO_COLOR``, ``FORCE_COLOR``).

    Returns:
        The loguru handler id: ``logger.remove(handler_id)`` undoes it.
    """
    from processman.adapters.logs import add_console_sink

    ids = [spec.id for spec in config.processes] if config is not None else []
    handler = add_console_sink(ids, stream or sys.stderr, colorize=colorize)
    logger.enable("processman")
    return handler


def __getattr__(name: str) -> object:
    # ProcessManager (and with it dependency-injector) is imported on first use, so that
    # the processman command can import dependency-injector its own way first
    # (processman/__main__.py).
    if name == "ProcessManager":
        from processman.app.manager import ProcessManager

        return ProcessManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Config",
    "ConfigError",
    "InterpreterNotFoundError",
    "NotReadyError",
    "NotRunningError",
    "ProcessManager",
    "ProcessSpec",
    "ProcessStatus",
    "ProcessmanError",
    "RestartPolicy",
    "SpawnError",
    "Status",
    "TemplateError",
    "UnknownProcessError",
    "__version__",
    "load_config",
    "log_to_console",
]
