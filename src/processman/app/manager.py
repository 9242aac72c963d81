"""``ProcessManager``: the public service that supervises every process of a config."""

from __future__ import annotations

import math
import os
from contextlib import AbstractContextManager, AsyncExitStack
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import msgspec
from dependency_injector import providers
from loguru import logger

from processman.app.broadcast import LogHub, StatusEvent, StatusHub, StatusStream, Subscription
from processman.app.container import Container
from processman.app.runner import ProcessRunner
from processman.domain.errors import NotReadyError, NotRunningError, UnknownProcessError
from processman.domain.model import (
    Config,
    ProcessSpec,
    ProcessStatus,
    Status,
    normalise_signal,
)
from processman.domain.ordering import (
    Graph,
    dependencies,
    dependents,
    graph_of,
    needs_start,
    stop_layers,
    unmet,
    waiting_reason,
)

if TYPE_CHECKING:
    import builtins
    from collections.abc import Awaitable, Callable, Iterable, Sequence
    from types import TracebackType

    from anyio.abc import TaskGroup

    from processman.domain.ports import (
        Clock,
        FileWatcher,
        LogBuffer,
        LogEntry,
        LogSink,
        Notifier,
        Prober,
        Spawner,
    )

#: After every tree is gone, how long the output readers get to drain the pipes.
DRAIN_GRACE = 1.0


class ProcessManager:
    """Supervises the processes of a ``Config``; use it as an async context manager.

    Entering starts every ``autostart`` process (in parallel) and returns once each is
    spawned or failed; leaving stops every process in parallel and returns when every
    tree is gone.

    Args:
        config: the processes to supervise (``load_config``).
        spawner, clock, watcher, prober: replace the container's adapters.
        log_sinks: replace the container's log sinks (the ring buffer the API serves
            is always kept).
        container: a ``processman.app.Container``, e.g. with providers overridden.
        environ: the environment children inherit (``os.environ`` by default).
    """

    def __init__(
        self,
        config: Config,
        *,
        spawner: Spawner | None = None,
        clock: Clock | None = None,
        watcher: FileWatcher | None = None,
        prober: Prober | None = None,
        log_sinks: Sequence[LogSink] | None = None,
        container: Container | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.container = container if container is not None else Container()
        self.container.config.override(providers.Object(config))
        self._spawner: Spawner = spawner if spawner is not None else self.container.spawner()
        self._clock: Clock = clock if clock is not None else self.container.clock()
        self._watcher: FileWatcher = watcher if watcher is not None else self.container.watcher()
        self._prober: Prober = prober if prober is not None else self.container.prober()
        self.ring_buffer: LogBuffer = self.container.ring_buffer()
        extra = list(log_sinks) if log_sinks is not None else self.container.log_sinks()
        self._hub = LogHub()
        self._sinks: list[LogSink] = [self.ring_buffer, self._hub, *extra]
        self._environ = dict(os.environ if environ is None else environ)
        self._runners: dict[str, ProcessRunner] = {}
        self._statuses = StatusHub(self._every_status)
        self._recheck_wanted = False
        self._rechecking = False
        #: whether any process depends on another: only then is a status change a reason
        #: to look at the waiting ones (a config without dependencies pays nothing)
        self._with_dependencies = any(spec.depends_on for spec in config.processes)
        self._tg: TaskGroup | None = None
        self._notifier: Notifier | None = None
        self._notify_scope: anyio.CancelScope | None = None  # made in the event loop
        self._stack: AsyncExitStack | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> ProcessManager:
        if self._stack is not None:
            raise RuntimeError("this ProcessManager is already running")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.push_async_callback(_shielded, self._spawner.aclose)
            stack.push_async_callback(_shielded, self._prober.aclose)
            tg = self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._end_lingering_tasks, tg)  # last of all
            stack.push_async_callback(self._shutdown)
            for spec in self.config.processes:
                self._runners[spec.id] = self._new_runner(spec, tg)
            if any(spec.notifies for spec in self.config.processes):
                self._open_notifier(tg)
            # a dependency of an autostart process starts with it, autostart or not
            wanted = dependencies(
                [spec.id for spec in self.config.processes if spec.autostart], self._graph()
            )
            autostart = [self._runners[process_id] for process_id in wanted]
            await _each(autostart, ProcessRunner.start)
            for runner in self._runners.values():
                runner.start_watching()
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    def _open_notifier(self, tg: TaskGroup) -> None:
        """The sd_notify socket, for the processes with a ``notify`` or ``watchdog`` probe; it
        stays open until they are all stopped (``STOPPING=1`` comes while they stop)."""
        notifier: Notifier = self.container.notifier()
        self._notifier = notifier
        scope = self._notify_scope = anyio.CancelScope()

        async def serve() -> None:
            with scope:
                try:
                    await notifier.serve(self._on_notify)
                finally:
                    notifier.close()

        tg.start_soon(serve)

    def _notify_path(self) -> str | None:
        return self._notifier.path if self._notifier is not None else None

    def _on_notify(self, senders: list[int], fields: dict[str, str]) -> None:
        """A datagram from a process outside every instance's tree is ignored."""
        for runner in self._runners.values():
            if runner.notified(senders, fields):
                return

    def _new_runner(self, spec: ProcessSpec, tg: TaskGroup) -> ProcessRunner:
        return ProcessRunner(
            spec,
            spawner=self._spawner,
            clock=self._clock,
            sinks=self._sinks,
            task_group=tg,
            environ=self._environ,
            api_url=self.config.api.base_url,
            watcher=self._watcher,
            ignore_dirs=(self.config.logs.dir,) if self.config.logs.dir else (),
            on_change=self._status_changed,
            waiting_for=self._waiting_for,
            prober=self._prober,
            notify_path=self._notify_path,
        )

    async def add_process(self, spec: ProcessSpec) -> ProcessStatus:
        """Supervise one more process while running (what scaling and reloading do);
        start it if it is ``autostart``; return its status once spawned (or failed).

        Raises:
            ValueError: a process has this id already.
            NotRunningError: the manager is not running, or shuts down.
        """
        if self._stack is None or self._tg is None:
            raise NotRunningError("the ProcessManager is not running: nothing is added")
        if spec.id in self._runners:
            raise ValueError(f"a process has the id {spec.id!r} already")
        if spec.notifies and self._notifier is None:
            self._open_notifier(self._tg)
        runner = self._runners[spec.id] = self._new_runner(spec, self._tg)
        self._set_processes()
        self._status_changed(runner)
        if spec.autostart:
            await runner.start()
        runner.start_watching()
        return runner.status()

    async def remove_process(self, process_id: str) -> None:
        """Stop a process (return once its tree is gone) and forget it: its id is
        unknown afterwards; its buffered lines stay until another takes the id."""
        runner = self._runner(process_id)
        await runner.close()
        await runner.output.wait_drained()
        runner.stop_watching()
        if self._runners.get(process_id) is runner:
            del self._runners[process_id]
            self._set_processes()
            self._statuses.publish(StatusEvent("removed", process_id))

    def _set_processes(self) -> None:
        specs = tuple(runner.spec for runner in self._runners.values())
        self.config = msgspec.structs.replace(self.config, processes=specs)
        self._with_dependencies = any(spec.depends_on for spec in specs)

    def events(self) -> StatusStream:
        """Status changes: first a ``status`` event for every process, then one each time
        a process's status, pid, readiness or last error changes (``removed`` when one is
        gone).

        An async iterator (and an async context manager that ends it); a reader that
        falls far behind gets a ``gap`` event, then a fresh snapshot. It ends once the
        manager has shut down and its last events are read.
        """
        self._require_entered()
        stream = self._statuses.subscribe()
        if self._stack is None:  # shut down: the statuses as they are, and the end
            stream.close()
        return stream

    def _status_changed(self, runner: ProcessRunner) -> None:
        if self._runners.get(runner.spec.id) is not runner:
            return
        if self._statuses.listening:
            self._statuses.publish(StatusEvent("status", runner.spec.id, runner.status()))
        if self._tg is not None and self._with_dependencies and self._any_waiting():
            # a waiting process may start now, or waits for something else
            self._recheck_wanted = True
            if not self._rechecking:
                self._rechecking = True
                self._tg.start_soon(self._recheck_waiting)

    def _any_waiting(self) -> bool:
        return any(r.state.status is Status.WAITING for r in self._runners.values())

    async def _recheck_waiting(self) -> None:
        try:
            while self._recheck_wanted:
                self._recheck_wanted = False
                for runner in list(self._runners.values()):
                    if runner.state.status is Status.WAITING:
                        await runner.recheck()
        finally:
            self._rechecking = False

    def _waiting_for(self, spec: ProcessSpec) -> str | None:
        """What ``spec`` waits for (SPEC §8), or None when every dependency is met."""
        states = {
            dep: self._runners[dep].dep_state() for dep in spec.depends_on if dep in self._runners
        }
        missing = unmet(spec.depends_on, states)
        return waiting_reason(missing, states) if missing else None

    def _graph(self) -> Graph:
        return graph_of(runner.spec for runner in self._runners.values())

    def _every_status(self) -> builtins.list[ProcessStatus]:
        return [runner.status() for runner in self._runners.values()]

    async def _shutdown(self) -> None:
        with anyio.CancelScope(shield=True):
            # dependents before their dependencies; the others in parallel
            for layer in stop_layers(self._graph()):
                await _each([self._runners[i] for i in layer], ProcessRunner.close)
            if self._notify_scope is not None:
                self._notify_scope.cancel()  # every process is gone: the socket closes
            # The readers end at EOF once the trees are gone: let them finish the pipes.
            with anyio.move_on_after(DRAIN_GRACE):
                for runner in self._runners.values():
                    await runner.output.wait_drained()
            self._statuses.close()
            for sink in self._sinks:
                try:
                    sink.close()
                except Exception as exc:  # the others still close, and the shutdown ends
                    logger.bind(process="processman", stream="manager", pid=None).error(
                        "log sink {} failed to close: {}", type(sink).__name__, exc
                    )

    def _end_lingering_tasks(self, tg: TaskGroup) -> None:
        """Pipe readers (shielded: see ``OutputPump``), retry timers, watchers."""
        for runner in self._runners.values():
            runner.output.cancel()
        tg.cancel_scope.cancel()

    # --- queries --------------------------------------------------------------------

    def status(self, process_id: str) -> ProcessStatus:
        """The status of one process.

        Raises:
            UnknownProcessError: no process has this id.
        """
        return self._runner(process_id).status()

    def list(self) -> builtins.list[ProcessStatus]:
        """The status of every process, in config order."""
        self._require_entered()
        return [runner.status() for runner in self._runners.values()]

    def logs(self, process_id: str, tail: int = 100) -> builtins.list[LogEntry]:
        """The last ``tail`` buffered lines of a process, oldest first."""
        self._runner(process_id)
        return self.ring_buffer.tail(process_id, tail)

    def subscribe(self, process_id: str) -> AbstractContextManager[Subscription]:
        """Live lines of a process (across restarts) while the ``with`` block runs.

        ``await subscription.receive()`` returns ``(entries, dropped)``: a reader that
        falls behind loses lines (counted in ``dropped``) instead of slowing anyone. Once
        the manager has shut down and the last lines are received, it raises
        ``anyio.EndOfStream``. The checks are made by this call, the subscription starts
        with the block.

        Raises:
            UnknownProcessError: no process has this id.
            NotRunningError: the manager is not running (no line would ever come).
        """
        self._runner(process_id)
        if self._stack is None:
            raise NotRunningError("the ProcessManager has shut down: no more lines will come")
        return self._hub.subscribe(process_id)

    async def wait_for_status(self, process_id: str, *statuses: Status | str) -> ProcessStatus:
        """Wait until the process is in one of ``statuses``; wrap in ``anyio.fail_after``."""
        wanted = [Status(s) for s in statuses]
        return await self._runner(process_id).wait_for_status(wanted)

    # --- commands -------------------------------------------------------------------

    async def start(self, process_id: str) -> ProcessStatus:
        """Start a process; return its status once it is spawned (or failed), or at once
        with status ``waiting`` while its dependencies do not meet their conditions.

        Its dependencies (transitively) that are stopped, crashed, or exited without
        meeting their condition are started first (SPEC §8).
        """
        runner = self._runner(process_id)
        graph = self._graph()
        needed = dependencies([process_id], graph)[:-1]
        for dep in needed:  # dependencies first
            conditions = [
                deps[dep]
                for node, deps in graph.items()
                if dep in deps and (node in needed or node == process_id)
            ]
            state = self._runners[dep].dep_state()
            if any(needs_start(condition, state) for condition in conditions):
                await self._runners[dep].start()
        return await runner.start()

    async def stop(self, process_id: str) -> ProcessStatus:
        """Stop a process, and first every process that depends on it (dependents first);
        return once every tree is gone."""
        runner = self._runner(process_id)
        await self._stop_dependents(process_id)
        return await runner.stop()

    async def restart(self, process_id: str) -> ProcessStatus:
        """Stop (if running) and start a process; return once the new instance is spawned.

        Its dependents are stopped first, and started again afterwards: they wait until
        it meets their conditions.
        """
        runner = self._runner(process_id)
        stopped = await self._stop_dependents(process_id)
        status = await runner.restart()
        for dependent in reversed(stopped):  # dependencies of theirs first
            await self._runners[dependent].start()
        return status

    async def _stop_dependents(self, process_id: str) -> builtins.list[str]:
        """Stop what depends on ``process_id`` in layers; the ids that were active."""
        order = dependents(process_id, self._graph())
        active = [
            dependent
            for dependent in order
            if self._runners[dependent].state.status
            not in (Status.STOPPED, Status.EXITED, Status.CRASHED)
        ]
        graph = {node: deps for node, deps in self._graph().items() if node in active}
        for layer in stop_layers(graph):
            await _each([self._runners[i] for i in layer], ProcessRunner.stop)
        return active

    async def signal(self, process_id: str, signal: str) -> ProcessStatus:
        """Send ``signal`` (``"HUP"`` or ``"SIGHUP"``) to the whole tree of a running process;
        return its status.

        Raises:
            UnknownProcessError: no process has this id.
            ProcessNotRunningError: it is not running.
            ValueError: not a signal name, or one the platform cannot send.
        """
        name = normalise_signal(signal)
        await anyio.lowlevel.checkpoint()
        return self._runner(process_id).signal(name)

    async def wait_ready(
        self,
        *process_ids: str,
        timeout: float | None = None,  # noqa: ASYNC109 - SPEC §8's signature
    ) -> builtins.list[ProcessStatus]:
        """Wait until every named process is ready (SPEC §8); return their statuses.

        Raises:
            UnknownProcessError: no process has one of the ids.
            NotReadyError: ``timeout`` seconds passed, or one of them is ``stopped``,
                ``exited`` or ``crashed`` (it is no longer trying); the message names it
                and its last error.
        """
        for process_id in process_ids:
            self._runner(process_id)
        given_up = (Status.STOPPED, Status.EXITED, Status.CRASHED)
        with anyio.move_on_after(timeout if timeout is not None else math.inf) as scope:
            async with self.events() as stream:
                async for _ in stream:
                    statuses = [self.status(process_id) for process_id in process_ids]
                    for status in statuses:
                        if status.status in given_up:
                            raise NotReadyError(status.id, status.status, status.last_error, None)
                    if all(status.ready for status in statuses):
                        return statuses
        late = next(s for s in (self.status(i) for i in process_ids) if not s.ready)
        if not scope.cancelled_caught:  # the manager shut down
            raise NotReadyError(late.id, late.status, late.last_error, None)
        raise NotReadyError(late.id, late.status, late.last_error, timeout)

    async def kill_stopping(self) -> None:
        """SIGKILL every tree being stopped now, without waiting out its ``stopTimeout``
        (what ``processman run`` does on a second Ctrl-C); return once they are gone."""
        await _each(self._runners.values(), ProcessRunner.kill_now)

    def _runner(self, process_id: str) -> ProcessRunner:
        self._require_entered()
        try:
            return self._runners[process_id]
        except KeyError:
            raise UnknownProcessError(process_id) from None

    def _require_entered(self) -> None:
        # once left, the statuses stay readable; a start is refused by its runner
        if self._stack is None and not self._runners:
            raise NotRunningError("the ProcessManager is not running: use it inside `async with`")


async def _shielded(close: Callable[[], Awaitable[object]]) -> None:
    """Finish ``close`` even when the ``async with`` block is left by a cancellation."""
    with anyio.CancelScope(shield=True):
        await close()


async def _each(
    runners: Iterable[ProcessRunner],
    command: Callable[[ProcessRunner], Awaitable[object]],
) -> None:
    """Run one command on many runners in parallel."""

    async def one(runner: ProcessRunner) -> None:
        await command(runner)

    async with anyio.create_task_group() as tg:
        for runner in runners:
            tg.start_soon(one, runner)
