"""``ProcessManager``: the public service that supervises every process of a config."""

from __future__ import annotations

import builtins
import math
import os
from contextlib import AbstractContextManager, AsyncExitStack
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import msgspec
from dependency_injector import providers
from loguru import logger

from processman.app.broadcast import LogHub, StatusEvent, StatusHub, StatusStream, Subscription
from processman.app.container import Container
from processman.app.output import DRAIN_GRACE
from processman.app.runner import ProcessRunner
from processman.domain.errors import (
    ConfigError,
    NotReadyError,
    NotRunningError,
    UnknownProcessError,
)
from processman.domain.model import (
    IN_MEMORY,
    Config,
    ProcessMetrics,
    ProcessSpec,
    ProcessStatus,
    Status,
    normalise_signal,
)
from processman.domain.ordering import (
    Graph,
    dependencies,
    dependents,
    expand_groups,
    needs_start,
    stop_layers,
    unmet,
    waiting_reason,
)
from processman.domain.reload import ReloadPlan, plan_reload
from processman.domain.replicas import instance, instances, member_ids

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence
    from types import TracebackType

    from anyio.abc import TaskGroup

    from processman.domain.ports import (
        Clock,
        FileWatcher,
        Listeners,
        LogBuffer,
        LogEntry,
        LogSink,
        Notifier,
        Prober,
        Spawner,
    )

T = TypeVar("T")


def _measure(runners: Sequence[ProcessRunner], now: float) -> None:
    """Measure every runner whose reading is a second old (SPEC §11: when asked). In this
    thread: four threads side by side took twice as long for 500 (the GIL)."""
    for runner in runners:
        handle = runner.measurement_due(now)
        if handle is not None:
            runner.take_measurement(handle, handle.usage(), now)


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
        #: the container's file sink, which a reload with new [logs] settings replaces
        self._file_sink: LogSink | None = self.container.file_sink() if log_sinks is None else None
        self._own_file_sink = log_sinks is None
        self._loguru_sink: LogSink | None = (
            self.container.loguru_sink() if log_sinks is None else None
        )
        self._hub = LogHub(group_of=self._group_of)
        self._sinks: list[LogSink] = [self.ring_buffer, self._hub, *extra]
        self._environ = dict(os.environ if environ is None else environ)
        self._runners: dict[str, ProcessRunner] = {}  # by instance id
        #: each process of the config (a group's template), in config order
        self._groups: dict[str, ProcessSpec] = {spec.id: spec for spec in config.processes}
        #: each group's instance ids, replicas by index (a single process: its own id)
        self._members: dict[str, builtins.list[str]] = {}
        self._group_locks: dict[str, anyio.Lock] = {}  # made in the event loop
        self._reload_lock: anyio.Lock | None = None
        self._listeners: Listeners = self.container.listeners()
        self._socket_fds: dict[str, tuple[int, ...]] = {}  # by group, once opened
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
            stack.callback(self._close_sockets)  # after the shutdown: every child is gone
            stack.push_async_callback(self._shutdown)
            for spec in self.config.processes:
                self._members[spec.id] = []
                for one in instances(spec):
                    self._runners[one.id] = self._new_runner(one, tg)
                    self._members[spec.id].append(one.id)
            if any(spec.notifies for spec in self.config.processes):
                self._open_notifier(tg)
            # a dependency of an autostart process starts with it, autostart or not
            wanted = dependencies(
                [
                    i
                    for spec in self.config.processes
                    if spec.autostart
                    for i in self._members[spec.id]
                ],
                self._graph(),
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
            listen_fds=self._listen_fds,
        )

    def _group_of(self, process_id: str) -> str | None:
        runner = self._runners.get(process_id)
        return runner.spec.group if runner is not None else None

    def _listen_fds(self, spec: ProcessSpec) -> tuple[int, ...]:
        """The group's listening sockets, opened at its first spawn and kept open (all its
        replicas share them); an address that cannot be bound is a ``SpawnError``."""
        group = spec.group_id
        fds = self._socket_fds.get(group)
        if fds is None:
            opened: builtins.list[int] = []
            try:
                for address in spec.sockets:
                    opened.append(self._listeners.open(address))
            except BaseException:
                for fd in opened:
                    self._listeners.close(fd)
                raise
            fds = self._socket_fds[group] = tuple(opened)
        return fds

    def _close_sockets(self, group: str | None = None) -> None:
        for fd in self._socket_fds.pop(group, ()) if group else ():
            self._listeners.close(fd)
        if group is None:
            self._socket_fds.clear()
            self._listeners.close_all()

    async def add_process(self, spec: ProcessSpec) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Supervise one more process (with ``replicas``, a group) while running (what
        reloading does); start it if it is ``autostart``; return its status (a group's:
        its replicas') once spawned (or failed).

        Raises:
            ValueError: a process has this id, or one of its replica ids, already.
            NotRunningError: the manager is not running, or shuts down.
        """
        if self._stack is None or self._tg is None:
            raise NotRunningError("the ProcessManager is not running: nothing is added")
        taken = [i for i in [spec.id, *member_ids(spec)] if i in self._runners or i in self._groups]
        if taken:
            raise ValueError(f"a process has the id {taken[0]!r} already")
        runners = self._add_group(spec)
        await self._start_added(spec, runners)
        return self._answer(spec.id)

    def _add_group(self, spec: ProcessSpec) -> builtins.list[ProcessRunner]:
        self._groups[spec.id] = spec
        self._members[spec.id] = []
        self._set_processes()
        return self._new_instances(spec, instances(spec))

    async def _add_instances(self, group: ProcessSpec, specs: Sequence[ProcessSpec]) -> None:
        """New runners for ``specs`` (instances of ``group``), started as a start request
        would start them when the group is ``autostart``."""
        await self._start_added(group, self._new_instances(group, specs))

    def _new_instances(
        self, group: ProcessSpec, specs: Sequence[ProcessSpec]
    ) -> builtins.list[ProcessRunner]:
        assert self._tg is not None
        if group.notifies and self._notifier is None:
            self._open_notifier(self._tg)
        added = []
        for spec in specs:
            runner = self._runners[spec.id] = self._new_runner(spec, self._tg)
            self._members[group.id].append(spec.id)
            self._status_changed(runner)
            added.append(runner)
        return added

    async def _start_added(self, group: ProcessSpec, runners: builtins.list[ProcessRunner]) -> None:
        if group.autostart:
            await _each(runners, lambda runner: self._start_one(runner.spec.id))
        for runner in runners:
            runner.start_watching()

    async def reload(self, config: Config | None = None) -> ReloadPlan:
        """Apply a new config (None: read the config's file again), touching only what
        changed (SPEC §10): added processes
        start (if autostart), removed ones stop and are forgotten, changed ones are
        restarted with their new spec if active (a group: one replica at a time; a
        ``replicas`` change alone scales; a ``dependsOn`` change alone applies at the next
        start), unchanged ones are left alone. ``api`` keeps its old value (a warning);
        ``logs`` settings apply to the lines from now on (``_apply_logs``). Reloads run
        one at a time.

        Raises:
            ConfigError: the file cannot be read or is not a valid config (nothing
                changes).
            NotRunningError: the manager is not running.
        """
        self._require_entered()
        if self._stack is None or self._tg is None:
            raise NotRunningError("the ProcessManager is not running: nothing is reloaded")
        if config is None:
            source = self.config.source
            if source == IN_MEMORY:
                raise ConfigError(source, "", "not read from a file: pass the new config")
            load = self.container.config_loader()
            config = await anyio.to_thread.run_sync(load, source)
        if self._reload_lock is None:
            self._reload_lock = anyio.Lock()
        async with self._reload_lock:
            plan = plan_reload(self.config, config)
            if config.logs != self.config.logs:
                self._apply_logs(config)  # first: a directory it cannot write changes nothing
            wanted = {spec.id: spec for spec in config.processes}
            await _each_of(plan.removed, self.remove_process)
            await _each_of(
                plan.changed,
                lambda process_id: self._apply_change(
                    wanted[process_id], process_id in plan.scaled, process_id in plan.respecified
                ),
            )
            added = [(wanted[i], self._add_group(wanted[i])) for i in plan.added]
            self._groups = {i: self._groups[i] for i in wanted}
            self._members = {i: self._members[i] for i in wanted}
            self.config = msgspec.structs.replace(config, api=self.config.api)
            self._set_processes()
            await _each_of(added, lambda pair: self._start_added(*pair))
            for warning in plan.warnings:
                logger.bind(process="processman", stream="manager", pid=None).warning(warning)
            return plan

    def _apply_logs(self, config: Config) -> None:
        """New ``[logs]`` settings, for the lines from now on: the buffer's size, and the
        log files' directory, rotation and retention (a new file sink; the old one is
        closed), and ``console`` for ``processman run`` (its console, and whether the
        children's lines become loguru records for it).

        Raises:
            ConfigError: the new directory cannot be written (nothing is changed).
        """
        old, new = self.config.logs, config.logs
        files = (new.dir, new.rotation_bytes, new.retention)
        if self._own_file_sink and files != (old.dir, old.rotation_bytes, old.retention):
            sink = self.container.file_sink_for()(new, config.source)
            if self._file_sink is not None:
                self._sinks.remove(self._file_sink)
                self._file_sink.close()
            self._file_sink = sink
            if sink is not None:
                self._sinks.append(sink)
        self.ring_buffer.capacity = new.buffer_lines
        switch = self.container.console_switch()
        if new.console != old.console and switch is not None and self._own_file_sink:
            switch(new.console)
            if new.console and self._loguru_sink is None:
                self._loguru_sink = self.container.loguru_sink_for()()
                self._sinks.append(self._loguru_sink)
            elif not new.console and self._loguru_sink is not None:
                self._sinks.remove(self._loguru_sink)
                self._loguru_sink = None

    async def _apply_change(self, spec: ProcessSpec, scaled: bool, respecified: bool) -> None:
        old = self._groups[spec.id]
        if (old.replicas is None) != (spec.replicas is None):  # other ids: anew
            await self.remove_process(spec.id)
            await self._start_added(spec, self._add_group(spec))
            return
        if scaled:
            assert spec.replicas is not None
            await self.scale(spec.id, spec.replicas)
            return
        async with self._group_lock(spec.id):
            if spec.sockets != old.sockets:  # the next spawn listens on the new ones
                self._close_sockets(spec.id)
            if spec.replicas is not None:  # the count changes by the scale below
                self._groups[spec.id] = msgspec.structs.replace(spec, replicas=old.replicas)
            else:
                self._groups[spec.id] = spec
            self._set_processes()
            for member in builtins.list(self._members[spec.id]):
                runner = self._runners[member]
                one = spec if runner.spec.replica is None else instance(spec, runner.spec.replica)
                await runner.update_spec(one, restart=not respecified)
                if spec.replicas is not None and not respecified:
                    await self._became_ready(runner)  # rolling: the others serve meanwhile
        if spec.replicas is not None and spec.replicas != old.replicas:
            await self.scale(spec.id, spec.replicas)

    async def remove_process(self, process_id: str) -> None:
        """Stop a process (a group: all its replicas; return once every tree is gone) and
        forget it: its ids are unknown afterwards; buffered lines stay until another
        takes the id.

        Raises:
            UnknownProcessError: no process of the config has this id (a replica is
                removed by ``scale``).
        """
        self._require_entered()
        if process_id not in self._groups:
            raise UnknownProcessError(process_id)
        async with self._group_lock(process_id):
            await self._remove_instances(process_id, builtins.list(self._members[process_id]))
            if process_id in self._groups:
                del self._groups[process_id]
                del self._members[process_id]
                self._close_sockets(process_id)
                self._set_processes()

    async def _remove_instances(self, group: str, ids: Sequence[str]) -> None:
        runners = [self._runners[i] for i in ids]
        await _each(runners, ProcessRunner.close)
        for runner in runners:
            await runner.output.wait_drained()
            runner.stop_watching()
            process_id = runner.spec.id
            if self._runners.get(process_id) is runner:
                del self._runners[process_id]
                self._members[group].remove(process_id)
                self._statuses.publish(StatusEvent("removed", process_id))

    def _set_processes(self) -> None:
        specs = tuple(self._groups.values())
        self.config = msgspec.structs.replace(self.config, processes=specs)
        self._with_dependencies = any(spec.depends_on for spec in specs)

    def _group_lock(self, group: str) -> anyio.Lock:
        """Serialises a group's scale and rolling restart."""
        lock = self._group_locks.get(group)
        if lock is None:
            lock = self._group_locks[group] = anyio.Lock()
        return lock

    async def scale(self, process_id: str, replicas: int) -> builtins.list[ProcessStatus]:
        """Run ``replicas`` instances of a group (SPEC §9): new ones start as a start
        request would start them, the highest-numbered ones are stopped and removed;
        return the group's statuses once the new ones are spawned and the removed ones'
        trees are gone.

        Raises:
            UnknownProcessError: no process has this id.
            ValueError: the process has no ``replicas`` in its config, or the count is
                not an integer of 0 or more.
        """
        self._require_entered()
        spec = self._groups.get(process_id)
        if spec is None:
            raise UnknownProcessError(process_id)
        if spec.replicas is None:
            raise ValueError(f"set replicas in the config to scale {process_id!r}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ValueError(f"replicas must be an integer of 0 or more, got {replicas!r}")
        async with self._group_lock(process_id):
            spec = self._groups[process_id]
            members = self._members[process_id]
            have = len(members)
            spec = self._groups[process_id] = msgspec.structs.replace(spec, replicas=replicas)
            self._set_processes()
            if replicas > have:
                await self._add_instances(spec, [instance(spec, i) for i in range(have, replicas)])
            elif replicas < have:
                await self._remove_instances(process_id, members[replicas:])
        return self._replicas(process_id)

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
        """What ``spec`` waits for (SPEC §8), or None when every dependency is met (a
        group's: every replica's)."""
        depends_on = expand_groups(spec.depends_on, self._members)
        states = {dep: self._runners[dep].dep_state() for dep in depends_on if dep in self._runners}
        missing = unmet(depends_on, states)
        return waiting_reason(missing, states) if missing else None

    def _graph(self) -> Graph:
        """The dependencies between instances: a group's dependents depend on each of
        its replicas."""
        return {
            process_id: expand_groups(runner.spec.depends_on, self._members)
            for process_id, runner in self._runners.items()
        }

    def _every_status(self) -> builtins.list[ProcessStatus]:
        """The event hub's snapshot: the last readings, nothing measured."""
        self._require_entered()
        return [runner.status() for runner in self._in_order()]

    def _in_order(self) -> builtins.list[ProcessRunner]:
        """Every runner, in config order, a group's replicas by index."""
        return [self._runners[i] for members in self._members.values() for i in members]

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
        return self._runner(process_id).measured_status()

    def list(self) -> builtins.list[ProcessStatus]:
        """The status of every process, in config order (each replica of a group)."""
        self._require_entered()
        runners = self._in_order()
        _measure(runners, self._clock.monotonic())
        return [runner.status() for runner in runners]

    def metrics(self) -> builtins.list[ProcessMetrics]:
        """What ``/metrics`` exposes of every process, in config order (measured now,
        unless less than a second ago)."""
        self._require_entered()
        found = []
        runners = self._in_order()
        _measure(runners, self._clock.monotonic())
        for runner in runners:
            status = runner.status()
            reading = runner.reading
            found.append(
                ProcessMetrics(
                    status=status,
                    cpu_seconds=reading.cpu_seconds if reading else None,
                    log_lines=dict(runner.output.lines),
                )
            )
        return found

    def group(self, group_id: str) -> builtins.list[ProcessStatus]:
        """The statuses of a group's replicas, by index (of a single process: its own).

        Raises:
            UnknownProcessError: no process of the config has this id.
        """
        self._require_entered()
        if group_id not in self._members:
            raise UnknownProcessError(group_id)
        return [self._runners[i].measured_status() for i in self._members[group_id]]

    def is_group(self, process_id: str) -> bool:
        """Whether ``process_id`` names a process with ``replicas`` (its commands act on
        every replica and answer with a list)."""
        spec = self._groups.get(process_id)
        return spec is not None and spec.replicas is not None

    def _answer(self, process_id: str) -> ProcessStatus | builtins.list[ProcessStatus]:
        """A command's reply: not measured (a reading taken just after a spawn would be
        a near-empty tree, kept for a second)."""
        if self.is_group(process_id):
            return self._replicas(process_id)
        return self._runner(process_id).status()

    def _replicas(self, group_id: str) -> builtins.list[ProcessStatus]:
        return [self._runners[i].status() for i in self._members[group_id]]

    def _targets(self, process_id: str) -> builtins.list[ProcessRunner]:
        """The runners a command on ``process_id`` acts on: a group's replicas, or one."""
        self._require_entered()
        if self.is_group(process_id):
            return [self._runners[i] for i in self._members[process_id]]
        return [self._runner(process_id)]

    def logs(self, process_id: str, tail: int = 100) -> builtins.list[LogEntry]:
        """The last ``tail`` buffered lines of a process, oldest first (a group's: of all
        its replicas in time order, each line naming its replica)."""
        if not self.is_group(process_id):
            self._runner(process_id)
            return self.ring_buffer.tail(process_id, tail)
        merged = [
            msgspec.structs.replace(entry, process=runner.spec.id)
            for runner in self._targets(process_id)
            for entry in self.ring_buffer.tail(runner.spec.id, tail)
        ]
        merged.sort(key=lambda entry: entry.time)  # stable: a replica's order is kept
        return merged[-tail:] if tail else []

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
        group = self.is_group(process_id)
        if not group:
            self._runner(process_id)
        if self._stack is None:
            raise NotRunningError("the ProcessManager has shut down: no more lines will come")
        return self._hub.subscribe(process_id, group=group)

    async def wait_for_status(self, process_id: str, *statuses: Status | str) -> ProcessStatus:
        """Wait until the process is in one of ``statuses``; wrap in ``anyio.fail_after``."""
        wanted = [Status(s) for s in statuses]
        return await self._runner(process_id).wait_for_status(wanted)

    # --- commands -------------------------------------------------------------------

    async def start(self, process_id: str) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Start a process; return its status once it is spawned (or failed), or at once
        with status ``waiting`` while its dependencies do not meet their conditions.

        Its dependencies (transitively) that are stopped, crashed, or exited without
        meeting their condition are started first (SPEC §8). A group's replicas start
        together, and the answer is their statuses.
        """
        targets = self._targets(process_id)
        await _each(targets, lambda runner: self._start_one(runner.spec.id))
        return self._answer(process_id)

    async def _start_one(self, process_id: str) -> ProcessStatus:
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

    async def stop(self, process_id: str) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Stop a process (a group: every replica at once), and first every process that
        depends on it (dependents first); return once every tree is gone."""
        targets = self._targets(process_id)
        await self._stop_dependents([runner.spec.id for runner in targets])
        await _each(targets, ProcessRunner.stop)
        return self._answer(process_id)

    async def restart(self, process_id: str) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Stop (if running) and start a process; return once the new instance is spawned.

        Its dependents are stopped first, and started again afterwards: they wait until
        it meets their conditions. A group restarts *rolling* (``rolling_restart``).
        """
        if self.is_group(process_id):
            return await self.rolling_restart(process_id)
        runner = self._runner(process_id)
        stopped = await self._stop_dependents([process_id])
        status = await runner.restart()
        for dependent in reversed(stopped):  # dependencies of theirs first
            await self._runners[dependent].start()
        return status

    async def rolling_restart(self, process_id: str) -> builtins.list[ProcessStatus]:
        """Restart a group's replicas one at a time, each new instance ready (SPEC §8)
        before the next is stopped, so that the others serve meanwhile; return the
        group's statuses.

        The group's dependents are left running: it never stops serving as a whole. A
        new instance that does not become ready (it exits, backs off, or its
        ``readyTimeout`` passes) ends the roll there, the replicas not yet restarted
        still serving the old code.
        """
        self._require_entered()
        if process_id not in self._members:
            raise UnknownProcessError(process_id)
        async with self._group_lock(process_id):
            for member in builtins.list(self._members.get(process_id, ())):
                runner = self._runners.get(member)
                if runner is None:
                    continue
                await runner.restart()
                if not await self._became_ready(runner):
                    break
        return self._replicas(process_id)

    async def _became_ready(self, runner: ProcessRunner) -> bool:
        """Wait until ``runner``'s new instance is ready; False once it no longer runs."""
        async with self.events() as stream:
            async for _ in stream:
                state = runner.state.status
                if runner.status().ready:
                    return True
                if state not in (Status.STARTING, Status.RUNNING):
                    return False
        return False

    async def _stop_dependents(self, process_ids: builtins.list[str]) -> builtins.list[str]:
        """Stop what depends on ``process_ids`` in layers; the ids that were active."""
        graph = self._graph()
        found: builtins.list[str] = []
        for process_id in process_ids:
            found += [d for d in dependents(process_id, graph) if d not in found]
        order = [node for layer in stop_layers(graph) for node in layer if node in found]
        order = [node for node in order if node not in process_ids]
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

    async def signal(
        self, process_id: str, signal: str
    ) -> ProcessStatus | builtins.list[ProcessStatus]:
        """Send ``signal`` (``"HUP"`` or ``"SIGHUP"``) to the whole tree of a running process
        (a group: of each running replica); return its status.

        Raises:
            UnknownProcessError: no process has this id.
            ProcessNotRunningError: it is not running (a group: none of its replicas).
            ValueError: not a signal name, or one the platform cannot send.
        """
        name = normalise_signal(signal)
        await anyio.lowlevel.checkpoint()
        targets = self._targets(process_id)
        if not self.is_group(process_id):
            return targets[0].signal(name)
        running = [r for r in targets if r.state.status in (Status.STARTING, Status.RUNNING)]
        if not running:
            return targets[0].signal(name) if targets else self._answer(process_id)
        for runner in running:
            runner.signal(name)
        return self._answer(process_id)

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
        process_ids = tuple(r.spec.id for i in process_ids for r in self._targets(i))
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


async def _each_of(items: Iterable[T], command: Callable[[T], Awaitable[object]]) -> None:
    """Run ``command`` on each item in parallel; the first error of a command is raised
    as itself (a refused start is a ``NotRunningError``, not a group of them)."""
    items = builtins.list(items)
    if len(items) <= 1:
        for item in items:
            await command(item)
        return

    async def one(item: T) -> None:
        await command(item)

    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(one, item)
    except ExceptionGroup as group:
        raise group.exceptions[0] from None


async def _each(
    runners: Iterable[ProcessRunner],
    command: Callable[[ProcessRunner], Awaitable[object]],
) -> None:
    """Run one command on many runners in parallel (``_each_of``)."""
    await _each_of(runners, command)
