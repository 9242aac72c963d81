"""One supervised process: serialises its commands, runs the state machine, performs effects.

The decisions are ``domain.state.transition``'s; this module only carries out the
effects it returns (spawn, stop the tree, schedule or cancel a retry) and turns
what happens (spawned, exited, stop done, delay elapsed) back into events.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from processman.app.output import DRAIN_GRACE, OutputPump
from processman.app.probing import InstanceProbes
from processman.domain.environment import child_environment
from processman.domain.errors import (
    NotRunningError,
    ProcessNotRunningError,
    SpawnError,
    WatchError,
)
from processman.domain.interpreter import resolve_argv
from processman.domain.model import ProbeKind, ProcessSpec, ProcessStatus, Status
from processman.domain.ordering import DepState
from processman.domain.ports import SpawnRequest, WatchRequest
from processman.domain.reload_loop import ReloadLoop
from processman.domain.replicas import listen_environment
from processman.domain.state import (
    Await,
    CancelRetry,
    DepsMet,
    Effect,
    Event,
    Exited,
    FileChanged,
    Notified,
    OverMemory,
    ProbeFailed,
    Ready,
    RetryDue,
    ScheduleRetry,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    State,
    Stop,
    StopDone,
    StopTree,
    WatchFailed,
    describe_exit,
    snapshot,
    transition,
)
from processman.domain.usage import (
    MEMORY_CHECK_SECONDS,
    Reading,
    due,
    human_size,
    memory_error,
    next_reading,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from anyio.abc import TaskGroup

    from processman.domain.ports import (
        Clock,
        FileWatcher,
        LogSink,
        Prober,
        ProcessHandle,
        Spawner,
        Usage,
    )


class ProcessRunner:
    """Supervises one process for a ``ProcessManager``.

    Every command takes the runner's lock, so two instances never run at once and
    concurrent start/stop/restart requests leave a consistent state.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        spawner: Spawner,
        clock: Clock,
        sinks: Sequence[LogSink],
        task_group: TaskGroup,
        environ: Mapping[str, str],
        api_url: str = "",
        watcher: FileWatcher | None = None,
        ignore_dirs: tuple[str, ...] = (),
        on_change: Callable[[ProcessRunner], None] | None = None,
        waiting_for: Callable[[ProcessSpec], str | None] | None = None,
        prober: Prober | None = None,
        notify_path: Callable[[], str | None] | None = None,
        listen_fds: Callable[[ProcessSpec], tuple[int, ...]] | None = None,
    ) -> None:
        self.spec = spec
        self._listen_fds = listen_fds
        self._prober = prober
        self._notify_path = notify_path
        self._probes: InstanceProbes | None = None
        self._probe_scope: anyio.CancelScope | None = None
        self._on_change = on_change
        self._waiting_for = waiting_for
        self._spawner = spawner
        self._clock = clock
        self._tg = task_group
        self._environ = environ
        self._api_url = api_url
        self._watcher = watcher
        self._ignore_dirs = ignore_dirs
        self._reload_wanted = False
        self._reloading = False
        self._watch_scope: anyio.CancelScope | None = None
        self._reload_loop = ReloadLoop()
        self._state = State()
        self._lock = anyio.Lock()
        self._closed = False
        self._handle: ProcessHandle | None = None
        self._reading: Reading | None = None  # the current run's last CPU/memory reading
        self._stopping: set[ProcessHandle] = set()  # stops that may wait out their grace
        self._retry_scope: anyio.CancelScope | None = None
        self._changed = anyio.Event()
        self._argv = self._preview_argv()
        self._log = logger.bind(process=spec.id, stream="manager", pid=None)
        self.output = OutputPump(
            spec.id, sinks=sinks, clock=clock, task_group=task_group, log=self._log
        )

    # --- queries ------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state (for the manager and tests)."""
        return self._state

    def status(self) -> ProcessStatus:
        """A snapshot of the public status (CPU and memory as last measured)."""
        return snapshot(self._state, self.spec, self._argv, self._clock.monotonic(), self._reading)

    def measured_status(self) -> ProcessStatus:
        """The status with CPU and memory measured now, unless measured less than a
        second ago (SPEC §11: read when asked, never polled)."""
        self.measure()
        return self.status()

    def measure(self, *, fresh: bool = False) -> Reading | None:
        """The current run's reading of its tree's CPU and memory, measured anew when
        the last one is a second old (or ``fresh``); None unless running."""
        now = self._clock.monotonic()
        handle = self.measurement_due(now) if not fresh else self._handle
        if handle is not None and self._state.run is not None:
            self.take_measurement(handle, handle.usage(), now)
        return self._reading if self._state.status is Status.RUNNING else None

    @property
    def reading(self) -> Reading | None:
        """The current run's last reading, without measuring; None unless running."""
        return self._reading if self._state.status is Status.RUNNING else None

    def measurement_due(self, now: float) -> ProcessHandle | None:
        """The handle to measure at ``now``, when running and the last reading is a
        second old."""
        handle = self._handle
        if handle is None or self._state.status is not Status.RUNNING:
            return None
        return handle if due(self._reading, now) else None

    def take_measurement(self, handle: ProcessHandle, usage: Usage | None, now: float) -> None:
        """Keep what ``handle.usage()`` measured at ``now``, if that instance still runs."""
        run = self._state.run
        if usage is None or handle is not self._handle or run is None:
            return
        self._reading = next_reading(
            self._reading, now, run.started_at, usage.cpu_seconds, usage.memory_bytes
        )

    async def wait_for_status(self, statuses: Sequence[Status]) -> ProcessStatus:
        """Wait until the status is one of ``statuses``; return that snapshot."""
        while self._state.status not in statuses:
            await self._changed.wait()
        return self.status()

    # --- commands -----------------------------------------------------------------

    def dep_state(self) -> DepState:
        """What a dependent's condition is checked against."""
        state = self._state
        ready = state.status is Status.RUNNING and (self.spec.ready is None or state.ready)
        return DepState(state.status, ready, state.exit_code, state.last_error)

    async def start(self) -> ProcessStatus:
        """Start it (no-op when running); return once spawned or failed, or at once while
        it waits for its dependencies (``waiting``)."""
        async with self._lock:
            self._refuse_if_closed()
            await self._apply(self._start_event())
            return self.status()

    async def recheck(self) -> None:
        """Waiting: start now if every dependency meets its condition, else say for what."""
        if self._state.status is not Status.WAITING:
            return
        async with self._lock:
            if self._state.status is Status.WAITING and not self._closed:
                await self._apply(self._start_event())

    def _start_event(self) -> Event:
        reason = (
            self._waiting_for(self.spec) if self._waiting_for and self.spec.depends_on else None
        )
        if reason is not None:
            return Await(reason)
        return DepsMet() if self._state.status is Status.WAITING else Start()

    async def stop(self) -> ProcessStatus:
        """Stop it; return once the whole tree is gone."""
        async with self._lock:
            await self._apply(Stop())
            return self.status()

    async def restart(self) -> ProcessStatus:
        """Stop (if running) and start with k reset; return once the new instance is spawned."""
        async with self._lock:
            self._refuse_if_closed()
            await self._apply(Stop())
            await self._apply(self._start_event())
            return self.status()

    async def update_spec(self, spec: ProcessSpec, *, restart: bool = True) -> ProcessStatus:
        """Take a reloaded spec (SPEC §10): an active instance (``starting``, ``running``,
        ``backoff``, ``waiting``) is restarted with it when ``restart``; otherwise it keeps
        its status, and the spec applies from its next start."""
        async with self._lock:
            self._refuse_if_closed()
            old = self.spec
            active = self._state.status in _ACTIVE
            if restart and active:
                await self._apply(Stop())  # as the old spec says to stop
            self.spec = spec
            self._argv = self._preview_argv() if self._handle is None else self._argv
            if _watch_of(old) != _watch_of(spec):
                self.stop_watching()
                self._watch_scope = None
                self.start_watching()
            if restart and active:
                await self._apply(self._start_event())
            return self.status()

    def signal(self, signal: str) -> ProcessStatus:
        """Send ``signal`` (a normalised name) to the current instance's whole tree.

        Not behind the lock: a stop waiting out its ``stopTimeout`` must not hold up a
        signal, and the instance signalled is the one that runs now.

        Raises:
            ProcessNotRunningError: no instance runs.
            ValueError: the platform cannot send that signal.
        """
        if self._handle is None or self._state.status is not Status.RUNNING:
            raise ProcessNotRunningError(self.spec.id, self._state.status)
        self._handle.signal(signal)
        return self.status()

    async def close(self) -> ProcessStatus:
        """Stop it for good: a start or restart after this (or queued behind it) raises."""
        async with self._lock:
            self._closed = True
            await self._apply(Stop())
            return self.status()

    async def kill_now(self) -> None:
        """SIGKILL the trees being stopped instead of waiting out their ``stopTimeout``.

        A second stop of the same handle, beside the one that waits: both return once the
        tree is gone."""
        for handle in list(self._stopping):
            await handle.stop("SIGKILL", 0.0)

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise NotRunningError("the ProcessManager has shut down: nothing more is started")

    def start_watching(self) -> None:
        """In development mode, reload on file changes (until ``stop_watching``)."""
        if self.spec.dev_mode and self._watcher is not None and self._watch_scope is None:
            self._watch_scope = anyio.CancelScope()
            self._tg.start_soon(self._watch_changes, self._watcher, self._watch_scope)

    def stop_watching(self) -> None:
        """End the file watch (a process removed while the manager runs)."""
        if self._watch_scope is not None:
            self._watch_scope.cancel()

    # --- the imperative shell -------------------------------------------------------

    async def _apply(self, event: Event) -> None:
        state, effects = transition(self._state, event, self.spec, self._clock.monotonic())
        if state is not self._state:
            old, self._state = self._state, state
            self._announce(old, state, event, effects)
            self._changed.set()
            self._changed = anyio.Event()
            if self._on_change is not None and _visible(old) != _visible(state):
                self._on_change(self)
        for effect in effects:
            await self._perform(effect)

    async def _perform(self, effect: Effect) -> None:
        if isinstance(effect, Spawn):
            await self._spawn()
        elif isinstance(effect, StopTree):
            self._stop_probes()
            handle, self._handle = self._handle, None
            code = await self._stop(handle, effect.signal, effect.grace) if handle else None
            await self._apply(StopDone(code))
        elif isinstance(effect, ScheduleRetry):
            self._tg.start_soon(self._retry_after, effect.delay)
        elif isinstance(effect, CancelRetry):
            if self._retry_scope is not None:
                self._retry_scope.cancel()
                self._retry_scope = None

    async def _spawn(self) -> None:
        try:
            argv, _ = resolve_here(self.spec)
            self._argv = argv
            env = child_environment(self._environ, self.spec, self._api_url)
            path = self._notify_path() if self._notify_path is not None else None
            pid_env: tuple[str, ...] = ()
            if path is not None and self.spec.notifies:
                env = {**env, "NOTIFY_SOCKET": path}
            health = self.spec.health
            if path is not None and health is not None and health.kind is ProbeKind.WATCHDOG:
                # as systemd's WatchdogSec=: WATCHDOG_PID is the child's own, set after the fork
                env["WATCHDOG_USEC"] = str(round(health.period * 1_000_000))
                pid_env = ("WATCHDOG_PID",)
            pass_fds: tuple[int, ...] = ()
            if self.spec.sockets and self._listen_fds is not None:
                # socket activation (sd_listen_fds): fds 3, 4, ... and LISTEN_PID, its own
                pass_fds = self._listen_fds(self.spec)
                env.update(listen_environment(self.spec.sockets))
                pid_env = (*pid_env, "LISTEN_PID")
            request = SpawnRequest(
                process_id=self.spec.id,
                argv=argv,
                cwd=self.spec.cwd,
                env=env,
                pass_fds=pass_fds,
                pid_env=pid_env,
                max_memory=self.spec.max_memory,
            )
            handle = await self._spawner.spawn(request)
        except SpawnError as exc:
            await self._apply(SpawnFailed(str(exc)))
            return
        except Exception as exc:  # a spawner bug must not take the other processes down
            self._log.opt(exception=exc).error("the spawner failed unexpectedly")
            await self._apply(SpawnFailed(f"cannot start {self._argv[0]}: {exc!r}"))
            return
        self._handle = handle
        self._reading = None
        self.output.start(handle)
        self._tg.start_soon(self._watch_exit, handle)
        await self._apply(Spawned(handle.pid, self._clock.utcnow()))
        if self.spec.max_memory is not None and not handle.limits_memory:
            self._tg.start_soon(self._check_memory, handle, self.spec.max_memory)
        if self.spec.ready is not None or self.spec.health is not None:
            self._start_probes(handle, env)

    def _start_probes(self, handle: ProcessHandle, env: Mapping[str, str]) -> None:
        """Probe this instance while it runs (``_stop_probes`` ends it)."""

        async def ready() -> None:
            async with self._lock:
                if self._handle is handle:
                    await self._apply(Ready())

        def failed(reason: str) -> None:
            self._tg.start_soon(self._probe_failed, handle, reason)

        probes = InstanceProbes(
            self.spec,
            clock=self._clock,
            prober=self._prober,
            spawner=self._spawner,
            env=env,
            ready=ready,
            failed=failed,
        )
        self._probes = probes
        if probes.wants_lines:

            def lines(pid: int, batch: list[str]) -> None:
                if pid == handle.pid:
                    probes.lines(batch)
                if not probes.wants_lines:
                    self.output.line_hook = None

            self.output.line_hook = lines
        scope = self._probe_scope = anyio.CancelScope()
        spawned_at = self._clock.monotonic()

        async def run() -> None:
            with scope:
                await probes.run(spawned_at)

        self._tg.start_soon(run)

    def notified(self, senders: list[int], fields: dict[str, str]) -> bool:
        """An sd_notify datagram: if its sender is in the current instance's tree
        (``senders`` is its pid and its ancestors'), act on it and return True."""
        handle = self._handle
        if handle is None or not (handle.pid in senders or handle.holds(senders[0])):
            return False
        if self._probes is not None:
            if fields.get("READY") == "1":
                self._probes.notify_ready()
            if "WATCHDOG" in fields:
                self._probes.watchdog(fields["WATCHDOG"])
        if "STATUS" in fields:
            self._tg.start_soon(self._set_notify_status, handle, fields["STATUS"])
        return True  # STOPPING=1, BARRIER=1 (the fd is closed by the socket) and others: no more

    async def _set_notify_status(self, handle: ProcessHandle, text: str) -> None:
        async with self._lock:
            if self._handle is handle:
                await self._apply(Notified(text))

    def _stop_probes(self) -> None:
        if self._probe_scope is not None:
            self._probe_scope.cancel()
            self._probe_scope = None
        self._probes = None
        self.output.line_hook = None

    async def _probe_failed(self, handle: ProcessHandle, reason: str) -> None:
        async with self._lock:
            if self._handle is handle:
                self._log.warning("{}: stopping it", reason)
                await self._apply(ProbeFailed(reason))

    async def _stop(self, handle: ProcessHandle, signal: str, grace: float) -> int | None:
        """Stop a tree; ``kill_now`` can cut its grace short meanwhile. Return once its
        last lines are in the sinks too, and its pipes are closed."""
        self._stopping.add(handle)
        try:
            code = await handle.stop(signal, grace)
        finally:
            self._stopping.discard(handle)
        with anyio.move_on_after(DRAIN_GRACE):
            await self.output.wait_instance(handle)
        return code

    async def _check_memory(self, handle: ProcessHandle, limit: int) -> None:
        """Where the kernel does not enforce ``maxMemory``: measure the tree every second
        while this instance runs, and kill it past the limit."""
        while self._handle is handle:
            await self._clock.sleep(MEMORY_CHECK_SECONDS)
            if self._handle is not handle:
                return
            reading = self.measure(fresh=True)
            if reading is not None and reading.memory_bytes > limit:
                async with self._lock:
                    if self._handle is handle:
                        reason = memory_error(limit)
                        self._log.warning(
                            "{} (the tree uses {})", reason, human_size(reading.memory_bytes)
                        )
                        await self._apply(OverMemory(reason))
                return

    async def _watch_exit(self, handle: ProcessHandle) -> None:
        code = await handle.wait()
        # the kernel's OOM kill at memory.max: asked before the cleanup removes the cgroup
        limit = self.spec.max_memory
        over = limit is not None and handle.limits_memory and handle.killed_for_memory()
        reason = memory_error(limit) if over and limit is not None else ""
        if self._handle is handle:
            self._stop_probes()
        if self._handle is handle:  # it ended by itself, not by a stop of ours: what it
            # left behind (a daemon it started) goes with it, before any restart, so two
            # trees of one process never run at once
            await self._stop(handle, self.spec.stop_signal, self.spec.stop_timeout)
        async with self._lock:
            if self._handle is handle:
                self._handle = None
            await self._apply(Exited(handle.pid, code, reason))

    async def _retry_after(self, delay: float) -> None:
        with anyio.CancelScope() as scope:
            self._retry_scope = scope
            await self._clock.sleep(delay)
            async with self._lock:
                if self._retry_scope is scope:
                    self._retry_scope = None
                    await self._apply(RetryDue())

    async def _watch_changes(self, watcher: FileWatcher, scope: anyio.CancelScope) -> None:
        request = WatchRequest(
            paths=self.spec.watch_paths,
            ignore=self.spec.watch_ignore,
            ignore_dirs=self._ignore_dirs,
            debounce=self.spec.watch_debounce,
        )
        with scope:
            try:
                await watcher.watch(request, self._on_file_change)
            except WatchError as exc:
                self._log.error("{}; reloading on changes is off", exc)
                async with self._lock:
                    await self._apply(WatchFailed(str(exc)))

    def _on_file_change(self, changed: set[str]) -> None:
        self._log.info("{} changed: reloading", _describe_changes(changed))
        if self._reload_loop.reload(self._clock.monotonic(), frozenset(changed)):
            self._log.warning(
                "{} changed again right after each of the last {} reloads: if the process "
                "writes it itself, add it to watchIgnore, or it reloads for ever",
                _describe_changes(changed),
                self._reload_loop.repeats,
            )
        self._reload_wanted = True
        if not self._reloading:
            self._reloading = True
            self._tg.start_soon(self._reload_until_settled)

    async def _reload_until_settled(self) -> None:
        """Reload; a change that came during a reload gives exactly one more."""
        try:
            while self._reload_wanted:
                self._reload_wanted = False
                async with self._lock:
                    await self._apply(FileChanged())
        finally:
            self._reloading = False

    # --- helpers --------------------------------------------------------------------

    def _preview_argv(self) -> tuple[str, ...]:
        try:
            return resolve_here(self.spec)[0]
        except SpawnError:
            script = self.spec.script or ""
            return (script, *self.spec.args)

    def _announce(self, old: State, new: State, event: Event, effects: tuple[Effect, ...]) -> None:
        if new.status is old.status and not (new.ready and not old.ready):
            return
        if new.status is Status.RUNNING and new.ready and not old.ready:
            self._log.info("ready")
            return
        if new.status is Status.RUNNING and new.run is not None:
            self._log.info("running (pid {})", new.run.pid)
        elif new.status is Status.BACKOFF:
            cause = new.last_error if isinstance(event, SpawnFailed) else _ended(event)
            delay = next((e.delay for e in effects if isinstance(e, ScheduleRetry)), 0.0)
            self._log.warning("{}; restart #{} in {:g}s", cause, new.failures, delay)
        elif new.status is Status.CRASHED:
            self._log.error("crashed: {}", new.last_error)
        elif new.status is Status.EXITED:
            self._log.info("{}; not restarted (restart = {})", _ended(event), self.spec.restart)
        elif new.status is Status.STOPPED and old.status is Status.STOPPING:
            self._log.info("stopped")


#: The statuses in which a reload restarts a changed process (SPEC §10).
_ACTIVE = (Status.STARTING, Status.RUNNING, Status.BACKOFF, Status.WAITING)


def _watch_of(spec: ProcessSpec) -> tuple[object, ...]:
    return (spec.dev_mode, spec.watch_paths, spec.watch_ignore, spec.watch_debounce)


def _visible(state: State) -> tuple[object, ...]:
    """What a status event is sent for (SPEC §11): the status, pid, readiness, last error."""
    return (state.status, state.run.pid if state.run else None, state.ready, state.last_error)


def resolve_here(spec: ProcessSpec) -> tuple[tuple[str, ...], str | None]:
    """``resolve_argv`` on this machine: its file system and PATH."""
    return resolve_argv(
        spec,
        exists=os.path.exists,
        which=shutil.which,
        windows=sys.platform == "win32",
        broken_link=_broken_link,
    )


def _broken_link(path: str) -> str | None:
    try:
        target = os.readlink(path)
    except OSError:
        return None  # not a link, or not there
    return None if os.path.exists(path) else target


def _describe_changes(paths: set[str]) -> str:
    first = min(paths)
    return first if len(paths) == 1 else f"{first} and {len(paths) - 1} more"


def _ended(event: Event) -> str:
    return describe_exit(event.code) if isinstance(event, Exited) else "ended"
