"""processman: a process supervisor for the helper processes an application depends on.

Use it as a library::

    async with ProcessManager(load_config("processman.toml")) as manager:
        await manager.restart("worker")

or run ``processman run``. Child output goes to loguru records that stay disabled
until the application calls ``logger.enable("processman")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from processman._version import __version__
from processman.adapters.config import load_config
from processman.domain.errors import (
    ConfigError,
    InterpreterNotFoundError,
    NotRunningError,
    ProcessmanError,
    SpawnError,
    TemplateError,
    UnknownProcessError,
)
from processman.domain.model import Config, ProcessSpec, ProcessStatus, RestartPolicy, Status

if TYPE_CHECKING:
    from processman.app.manager import ProcessManager

logger.disable("processman")


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
]
