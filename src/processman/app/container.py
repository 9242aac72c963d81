"""The wiring diagram: the only place that names concrete adapters.

Read it top to bottom: the decoded config goes in, the clock, the spawner (chosen by
platform) and the log sinks come out. ``ProcessManager`` asks one of these for its
collaborators; override a provider to swap one::

    container = Container()
    container.spawner.override(providers.Object(MySpawner()))
    ProcessManager(config, container=container)
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from processman.adapters.clock import AnyioClock
from processman.adapters.config import load_config
from processman.adapters.logs import FileSink, LoguruSink, RingBufferSink
from processman.adapters.notify import NotifySocket
from processman.adapters.probes import NetworkProber
from processman.adapters.sockets import SocketBinder
from processman.adapters.spawn_linux import LinuxSpawner
from processman.adapters.spawn_posix import PosixSpawner
from processman.adapters.spawn_windows import WindowsSpawner
from processman.adapters.watch import WatchfilesWatcher
from processman.domain.model import Config

if TYPE_CHECKING:
    from collections.abc import Callable

    from processman.domain.ports import LogSink


def platform_family() -> str:
    """``"linux"``, ``"windows"`` or ``"posix"`` (macOS, BSD): the spawner ``Selector``'s key."""
    if sys.platform.startswith("linux") and hasattr(os, "pidfd_open"):
        return "linux"
    return "windows" if sys.platform == "win32" else "posix"


def _sinks(*sinks: LogSink | None) -> list[LogSink]:
    return [sink for sink in sinks if sink is not None]


def _loguru_sink(wanted: bool) -> LoguruSink | None:
    return LoguruSink() if wanted else None


class Container(containers.DeclarativeContainer):
    """processman's adapters, wired."""

    config = providers.Dependency(instance_of=Config)

    # Linux: a cgroup per instance unless PROCESSMAN_CGROUPS=0; the subreaper and spawning
    # from inside the cgroup only for a process that owns all its children and threads
    # (processman run turns them on).
    cgroups_wanted = providers.Callable(lambda: os.environ.get("PROCESSMAN_CGROUPS") != "0")
    subreaper = providers.Object(False)
    spawn_from_leaf = providers.Object(False)

    clock = providers.Singleton(AnyioClock)

    watcher = providers.Singleton(WatchfilesWatcher)

    prober = providers.Singleton(NetworkProber)

    # made only when a process's ready probe is notify
    notifier = providers.Factory(NotifySocket)
    listeners = providers.Factory(SocketBinder)
    # what ``ProcessManager.reload()`` reads a config file with
    config_loader = providers.Object(load_config)

    spawner = providers.Selector(
        providers.Callable(platform_family),
        linux=providers.Singleton(
            LinuxSpawner,
            cgroups=cgroups_wanted,
            subreaper=subreaper,
            spawn_from_leaf=spawn_from_leaf,
        ),
        posix=providers.Singleton(PosixSpawner),
        windows=providers.Singleton(WindowsSpawner),
    )

    ring_buffer = providers.Singleton(RingBufferSink, capacity=config.provided.logs.buffer_lines)

    # Child lines as loguru records; processman run without a console turns them off
    # (no loguru sink would take them, and each costs a loguru call).
    loguru_records = providers.Object(True)

    file_sink = providers.Singleton(
        FileSink.from_settings, config.provided.logs, config.provided.source
    )
    # what a reload makes a new file sink with, for new [logs] settings
    file_sink_for = providers.Object(FileSink.from_settings)

    loguru_sink = providers.Singleton(_loguru_sink, loguru_records)
    # what a reload that turns logs.console on makes a loguru sink with
    loguru_sink_for = providers.Object(LoguruSink)
    # processman run's console: a reload of logs.console calls it with the new value
    console_switch: providers.Object[Callable[[bool], None] | None] = providers.Object(None)

    log_sinks = providers.Callable(_sinks, loguru_sink, file_sink)
