"""Processes for a test suite (SPEC §13): a config started, ready, and gone afterwards.

``running(config)`` runs a ``ProcessManager`` on an event loop of its own (a thread),
so that synchronous tests drive it through a ``Processes`` handle. It keeps true that:

- on entry every started process (the config's autostart ones, or ``only`` and their
  dependencies) is ready, or it raises ``ProcessFailed`` with the process's
  ``lastError`` and last log lines;
- every unrequested end of a run while it is open (a crash, a failed health check, a
  readiness timeout) is kept in ``Processes.failures`` with the same details;
- on exit every tree is stopped, and any process that inherited the run's environment
  and is still alive (an escaped daemon) is killed and reported by ``LeakedProcesses``.

The pytest plugin (``processman_pytest``) builds its fixtures on it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from processman.domain.durations import parse_duration
from processman.domain.errors import ConfigError, NotReadyError, ProcessmanError
from processman.domain.model import Config, Status

if TYPE_CHECKING:
    import builtins
    import socket
    from collections.abc import Iterator, Sequence

    from anyio.from_thread import BlockingPortal

    from processman.app.manager import ProcessManager
    from processman.domain.model import ProcessStatus
    from processman.domain.ports import LogEntry

__all__ = ["LeakedProcesses", "ProcessFailed", "Processes", "running"]

#: How many of a failed process's last lines a report shows.
REPORT_LINES = 50

#: Set in every child's environment: the processes of one ``running`` are found by it.
RUN_VARIABLE = "PROCESSMAN_TEST_RUN"


class ProcessFailed(ProcessmanError):
    """A process crashed, or was not ready in time: its ``lastError`` and last lines."""

    def __init__(self, process_id: str, what: str, last_error: str, lines: list[str]) -> None:
        super().__init__(process_id, what, last_error)
        self.process_id = process_id
        self.what = what
        self.last_error = last_error
        self.lines = lines

    def __str__(self) -> str:
        return f"{self.process_id} {self.what}: {self.last_error or 'no error recorded'}"

    def report(self) -> str:
        """The text a test report shows: what happened, then the last log lines."""
        shown = "\n".join(self.lines) if self.lines else "(no output)"
        return f"{self}\n--- last {len(self.lines)} log lines of {self.process_id} ---\n{shown}"


class LeakedProcesses(ProcessmanError):
    """Processes of the trees outlived the stop (they are killed before this is raised)."""

    def __init__(self, leaked: list[str]) -> None:
        super().__init__(leaked)
        self.leaked = leaked

    def __str__(self) -> str:
        return "still alive after every process was stopped (killed now): " + "; ".join(self.leaked)


class Processes:
    """The synchronous handle of ``running``: each method runs on the manager's loop."""

    def __init__(self, portal: BlockingPortal, manager: ProcessManager, url: str | None) -> None:
        self._portal = portal
        self._manager = manager
        #: the HTTP API's base URL, or None when the config sets no ``api.listen``
        self.url = url
        #: every unrequested end of a run seen so far, oldest first
        self.failures: builtins.list[ProcessFailed] = []
        self._last: dict[str, Status] = {}

    @property
    def manager(self) -> ProcessManager:
        """The ``ProcessManager`` (its coroutines run on this handle's loop, not the test's)."""
        return self._manager

    def status(self, process_id: str) -> ProcessStatus:
        """The status of one process (or replica)."""
        return self._portal.call(self._manager.status, process_id)

    def list(self) -> builtins.list[ProcessStatus]:
        """Every process's status, replicas included."""
        return self._portal.call(self._manager.list)

    def logs(self, process_id: str, n: int = 100) -> builtins.list[LogEntry]:
        """The last ``n`` lines of a process (or group) as ``LogEntry`` objects."""
        return self._portal.call(self._manager.logs, process_id, n)

    def start(self, process_id: str) -> Any:
        """Start a process (its dependencies first); its status, or its replicas'."""
        return self._portal.call(self._manager.start, process_id)

    def stop(self, process_id: str) -> Any:
        """Stop a process (its dependents first); returns once its tree is gone."""
        return self._portal.call(self._manager.stop, process_id)

    def restart(self, process_id: str) -> Any:
        """Restart a process (rolling for a group)."""
        return self._portal.call(self._manager.restart, process_id)

    def wait_ready(
        self, *process_ids: str, timeout: float | str | None = None
    ) -> builtins.list[ProcessStatus]:
        """Wait until every named process is ready; ``ProcessFailed`` when one cannot be.

        ``timeout`` is seconds or a duration string (``"30s"``); None waits as long as
        it takes.
        """
        __tracebackhide__ = True  # pytest: the failure is the caller's line
        seconds = _seconds(timeout)
        try:
            return self._portal.call(
                lambda: self._manager.wait_ready(*process_ids, timeout=seconds)
            )
        except NotReadyError as exc:
            reason = str(exc).partition(": ")[2]  # its state and last error, without its id
            raise self.failure(exc.process_id, "was not ready in time", reason) from None

    def failure(self, process_id: str, what: str, reason: str = "") -> ProcessFailed:
        """A ``ProcessFailed`` for ``process_id`` as it is now: its last error (or
        ``reason``) and last lines."""
        status = self._portal.call(self._manager.status, process_id)
        lines = [entry.line for entry in self.logs(process_id, REPORT_LINES)]
        return ProcessFailed(process_id, what, reason or status.last_error, lines)

    def _watch(self, status: ProcessStatus) -> None:
        """Keep an unrequested end of a run (on the manager's loop, from its events)."""
        before, self._last[status.id] = self._last.get(status.id), status.status
        if status.status is before:
            return  # the same status: a new pid, readiness or error text
        if status.status in (Status.BACKOFF, Status.CRASHED) or (
            status.status is Status.EXITED and status.exit_code != 0
        ):
            lines = [entry.line for entry in self._manager.logs(status.id, REPORT_LINES)]
            verb = "crashed" if status.status is not Status.EXITED else "exited"
            self.failures.append(ProcessFailed(status.id, verb, status.last_error, lines))


def _seconds(value: float | str | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    return parse_duration(value)


@contextlib.contextmanager
def running(
    config: str | os.PathLike[str] | Config,
    only: Sequence[str] | None = None,
    timeout: float | str = "60s",
) -> Iterator[Processes]:
    """Start ``config`` (a path or a ``Config``), wait until every started process is
    ready, and yield the handle; stop everything on the way out and check for leaks.

    Raises:
        ConfigError: a bad config, or an unknown id in ``only``.
        ProcessFailed: a process was not ready within ``timeout``.
        LeakedProcesses: a process of the trees outlived the stop.
    """
    __tracebackhide__ = True  # pytest: the failure is the caller's line
    from anyio.from_thread import start_blocking_portal

    from processman.adapters.config import load_config
    from processman.app.manager import ProcessManager

    loaded = config if isinstance(config, Config) else load_config(config)
    loaded, started = _select(loaded, only)
    marker = secrets.token_hex(8)
    environ = {**os.environ, RUN_VARIABLE: marker}
    sock = _api_socket(loaded)
    with contextlib.ExitStack() as closing, start_blocking_portal() as portal:
        if sock is not None:
            closing.callback(sock.close)  # after the server, and the portal, are done
        manager = ProcessManager(loaded, environ=environ)
        # the manager is left as if nothing had happened whatever the body raised, so
        # that its task group does not wrap the test's own exception in a group
        supervised = portal.wrap_async_context_manager(manager)
        try:
            supervised.__enter__()
            try:
                with _api(portal, manager, loaded, sock) as url:
                    handle = Processes(portal, manager, url)
                    portal.start_task_soon(_follow, manager, handle)
                    statuses = handle.list()
                    for process_id in started:  # a process, or a group of replicas
                        members = [s for s in statuses if process_id in (s.id, s.group)]
                        if any(s.status is Status.STOPPED for s in members):
                            handle.start(process_id)
                    handle.wait_ready(*started, timeout=timeout)
                    yield handle
            finally:
                supervised.__exit__(None, None, None)
        finally:
            leaked = _kill_leftovers(marker)
    if leaked:
        raise LeakedProcesses(leaked)


def _select(config: Config, only: Sequence[str] | None) -> tuple[Config, list[str]]:
    """The config cut down to ``only`` and their dependencies, and the ids to start."""
    from processman.domain.ordering import dependencies, graph_of

    if only is None:
        return config, [spec.id for spec in config.processes if spec.autostart]
    if isinstance(only, str):
        only = [only]
    known = {spec.id for spec in config.processes}
    unknown = [process_id for process_id in only if process_id not in known]
    if unknown:
        listed = ", ".join(sorted(known))
        raise ConfigError(config.source, "only", f"unknown id {unknown[0]!r} (known: {listed})")
    closure = dependencies(list(only), graph_of(config.processes))
    processes = tuple(spec for spec in config.processes if spec.id in closure)
    return (
        Config(processes=processes, api=config.api, logs=config.logs, source=config.source),
        list(only),
    )


async def _follow(manager: ProcessManager, handle: Processes) -> None:
    async with manager.events() as events:
        async for event in events:
            if event.kind == "status" and event.status is not None:
                handle._watch(event.status)


def _api_socket(config: Config) -> socket.socket | None:
    """The API's socket, bound before anything starts, when the config sets
    ``api.listen``; as ``processman run``, a non-loopback address needs a token.

    Raises:
        ConfigError: naming ``api.listen``, when it cannot be served.
    """
    if not config.api.listen:
        return None
    from processman.adapters.api_socket import ApiSocketError, api_socket

    try:
        return api_socket(config.api.listen, _token(config))
    except ApiSocketError as exc:
        raise ConfigError(config.source, "api.listen", str(exc)) from None


def _token(config: Config) -> str | None:
    return config.api.token or os.environ.get("PROCESSMAN_TOKEN") or None


@contextlib.contextmanager
def _api(
    portal: BlockingPortal, manager: ProcessManager, config: Config, sock: socket.socket | None
) -> Iterator[str | None]:
    """The HTTP API on ``sock`` while the handle is open; its base URL, or None."""
    if sock is None:
        yield None
        return
    from processman.adapters.http import ApiServer, create_app

    server = ApiServer(create_app(manager, token=_token(config)))
    future, _ = portal.start_task(server.serve, sock)
    try:
        yield config.api.base_url
    finally:
        portal.call(server.stop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)


def _kill_leftovers(marker: str) -> list[str]:
    """Kill every process that still carries this run's marker; describe each one."""
    import psutil

    leaked = []
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(RUN_VARIABLE) != marker:
                continue
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.Error, OSError):
            continue
        found.append(process)
        command = " ".join(process.info["cmdline"] or []) or "?"
        leaked.append(f"pid {process.pid} ({command})")
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.kill()
    deadline = time.monotonic() + 5
    psutil.wait_procs(found, timeout=max(0.0, deadline - time.monotonic()))
    return leaked
