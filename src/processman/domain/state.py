"""The lifecycle of one process as a pure function: ``transition(state, event, spec, now)``.

It returns the next state and the effects (spawn, stop the tree, schedule or cancel
a retry) that ``app/runner.py`` carries out and answers with further events. Nothing
here touches a process or a clock: ``now`` is a monotonic reading passed in.

Events that cannot happen in a state (the runner serialises commands, so e.g. no
``Stop`` arrives while ``starting``) and stale events (the exit of an instance that
was already stopped) leave the state unchanged and produce no effect.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

import msgspec

from processman.domain.backoff import backoff_delay
from processman.domain.model import ProcessSpec, ProcessStatus, RestartPolicy, Status

if TYPE_CHECKING:
    from processman.domain.usage import Reading


class Run(msgspec.Struct, frozen=True):
    """One live instance: exists only while ``running`` or ``stopping``."""

    pid: int
    started_at: float  # monotonic seconds
    start_time: datetime  # aware UTC, for display


class State(msgspec.Struct, frozen=True, kw_only=True):
    """What the supervisor knows of one process.

    ``failures`` is SPEC's k: consecutive failed runs since the last healthy one.
    """

    status: Status = Status.STOPPED
    failures: int = 0
    restart_count: int = 0
    exit_code: int | None = None
    last_error: str = ""
    run: Run | None = None
    reloading: bool = False  # stopping for a file change: start again once stopped
    ready: bool = False  # the current instance passed its ready probe
    failing: str = ""  # stopping because a probe failed: the run counts as failed, for this
    notify_status: str = ""  # the current instance's last sd_notify STATUS=


# --- events -------------------------------------------------------------------------


class Start(msgspec.Struct, frozen=True):
    """A start request (Python API, CLI, HTTP)."""


class Stop(msgspec.Struct, frozen=True):
    """A stop request."""


class Spawned(msgspec.Struct, frozen=True):
    """The spawner started an instance."""

    pid: int
    start_time: datetime


class SpawnFailed(msgspec.Struct, frozen=True):
    """The spawner could not start an instance (missing program, bad cwd, ...)."""

    reason: str


class Exited(msgspec.Struct, frozen=True):
    """The running instance ended by itself: ``code`` is -N for a death by signal N."""

    pid: int
    code: int
    #: why it failed, when more is known than its code (the kernel killed it at maxMemory)
    reason: str = ""


class StopDone(msgspec.Struct, frozen=True):
    """A requested stop finished: the whole tree is gone."""

    code: int | None


class RetryDue(msgspec.Struct, frozen=True):
    """The backoff delay has elapsed."""


class FileChanged(msgspec.Struct, frozen=True):
    """A watched file changed (development mode, after the debounce)."""


class WatchFailed(msgspec.Struct, frozen=True):
    """Watching the process's files failed; the process itself goes on."""

    reason: str


class Await(msgspec.Struct, frozen=True):
    """A start request while some dependency does not meet its condition (``reason``
    says which); sent again with a new reason when what it waits for changes."""

    reason: str


class DepsMet(msgspec.Struct, frozen=True):
    """Every dependency of a waiting process meets its condition now."""


class Ready(msgspec.Struct, frozen=True):
    """The running instance passed its ready probe."""


class Notified(msgspec.Struct, frozen=True):
    """The running instance sent ``STATUS=text`` over sd_notify."""

    text: str


class OverMemory(msgspec.Struct, frozen=True):
    """The running instance's tree uses more than its ``maxMemory``: it is killed, and the
    run counts as a failed one with ``reason`` as its error."""

    reason: str


class ProbeFailed(msgspec.Struct, frozen=True):
    """The running instance was not ready in time, or failed its health check: it is
    stopped, and the run counts as a failed one with ``reason`` as its error."""

    reason: str


Event: TypeAlias = (
    Start
    | Stop
    | Spawned
    | SpawnFailed
    | Exited
    | StopDone
    | RetryDue
    | FileChanged
    | WatchFailed
    | Await
    | DepsMet
    | Ready
    | ProbeFailed
    | OverMemory
    | Notified
)

# --- effects ------------------------------------------------------------------------


class Spawn(msgspec.Struct, frozen=True):
    """Start a new instance; answer with Spawned or SpawnFailed."""


class StopTree(msgspec.Struct, frozen=True):
    """Signal the tree, wait ``grace`` seconds, kill it; answer with StopDone once it is gone."""

    signal: str
    grace: float


class ScheduleRetry(msgspec.Struct, frozen=True):
    """Send RetryDue after ``delay`` seconds."""

    delay: float


class CancelRetry(msgspec.Struct, frozen=True):
    """Forget the pending RetryDue."""


Effect: TypeAlias = Spawn | StopTree | ScheduleRetry | CancelRetry
Outcome: TypeAlias = tuple[State, tuple[Effect, ...]]


def describe_exit(code: int) -> str:
    """``exited with code 1`` or ``killed by signal 9``."""
    return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"


def transition(state: State, event: Event, spec: ProcessSpec, now: float) -> Outcome:
    """Apply ``event`` to ``state``; return the new state and the effects to perform."""
    status = state.status
    unchanged: Outcome = (state, ())

    if isinstance(event, Start):
        if status in (Status.STOPPED, Status.EXITED, Status.CRASHED):
            # STOPPED/EXITED/CRASHED -> STARTING: an explicit start resets k
            return _replace(state, status=Status.STARTING, failures=0), (Spawn(),)
        if status is Status.BACKOFF:
            # BACKOFF -> STARTING: start now, keep k
            return _replace(state, status=Status.STARTING), (CancelRetry(), Spawn())
        return unchanged  # starting/running: already on; stopping: never sent

    if isinstance(event, Await):
        if status in (Status.STOPPED, Status.EXITED, Status.CRASHED):
            # STOPPED/EXITED/CRASHED -> WAITING: a start, its dependencies not met (k reset)
            return _replace(state, status=Status.WAITING, failures=0, last_error=event.reason), ()
        if status is Status.BACKOFF:
            # BACKOFF -> WAITING: a start now, but a dependency is not there
            return _replace(state, status=Status.WAITING, last_error=event.reason), (CancelRetry(),)
        if status is Status.WAITING and event.reason != state.last_error:
            # WAITING -> WAITING: what it waits for changed
            return _replace(state, last_error=event.reason), ()
        return unchanged

    if isinstance(event, DepsMet):
        if status is Status.WAITING:
            # WAITING -> STARTING: every dependency meets its condition
            return _replace(state, status=Status.STARTING, last_error=""), (Spawn(),)
        return unchanged

    if isinstance(event, Ready):
        if status is Status.RUNNING and not state.ready:
            # RUNNING (not ready) -> RUNNING (ready)
            return _replace(state, ready=True), ()
        return unchanged

    if isinstance(event, Notified):
        if status is Status.RUNNING and event.text != state.notify_status:
            # RUNNING -> RUNNING: a new status text
            return _replace(state, notify_status=event.text), ()
        return unchanged

    if isinstance(event, ProbeFailed):
        if status is Status.RUNNING:
            # RUNNING -> STOPPING: not ready in time, or unhealthy; a failed run
            return _replace(state, status=Status.STOPPING, failing=event.reason), (
                StopTree(spec.stop_signal, spec.stop_timeout),
            )
        return unchanged

    if isinstance(event, OverMemory):
        if status is Status.RUNNING:
            # RUNNING -> STOPPING: killed at once, as the kernel would; a failed run
            return _replace(state, status=Status.STOPPING, failing=event.reason), (
                StopTree("SIGKILL", 0.0),
            )
        return unchanged

    if isinstance(event, Stop):
        if status is Status.WAITING:
            # WAITING -> STOPPED
            return _replace(state, status=Status.STOPPED, last_error=""), ()
        if status is Status.RUNNING:
            # RUNNING -> STOPPING
            return _replace(state, status=Status.STOPPING), (
                StopTree(spec.stop_signal, spec.stop_timeout),
            )
        if status is Status.BACKOFF:
            # BACKOFF -> STOPPED: cancel the pending restart
            return _replace(state, status=Status.STOPPED), (CancelRetry(),)
        if status in (Status.EXITED, Status.CRASHED):
            # EXITED/CRASHED -> STOPPED: now "stopped on request" (no file-change start)
            return _replace(state, status=Status.STOPPED), ()
        return unchanged

    if isinstance(event, Spawned):
        if status is Status.STARTING:
            # STARTING -> RUNNING
            run = Run(pid=event.pid, started_at=now, start_time=event.start_time)
            return _replace(
                state, status=Status.RUNNING, run=run, ready=False, notify_status=""
            ), ()
        return unchanged

    if isinstance(event, SpawnFailed):
        if status is Status.STARTING:
            # STARTING -> BACKOFF or CRASHED: a spawn error counts as a failed run
            return _ended(state, spec, None, 0.0, event.reason)
        return unchanged

    if isinstance(event, Exited):
        if status is Status.RUNNING and state.run is not None and state.run.pid == event.pid:
            # RUNNING -> BACKOFF, EXITED or CRASHED
            ran_for = now - state.run.started_at
            return _ended(state, spec, event.code, ran_for, None, event.reason or None)
        return unchanged  # the exit of an instance being (or already) stopped

    if isinstance(event, StopDone):
        if status is Status.STOPPING and state.failing:
            # STOPPING -> BACKOFF, EXITED or CRASHED: a probe stopped it, a failed run
            ran_for = now - state.run.started_at if state.run else 0.0
            failed = _replace(state, failing="", ready=False, reloading=False)
            return _ended(failed, spec, event.code, ran_for, None, state.failing)
        if status is Status.STOPPING:
            code = event.code if event.code is not None else state.exit_code
            stopped = _replace(state, run=None, exit_code=code, reloading=False, ready=False)
            if state.reloading:
                # STOPPING -> STARTING: the second half of a reload (k reset, counted)
                return _replace(
                    stopped,
                    status=Status.STARTING,
                    failures=0,
                    restart_count=state.restart_count + 1,
                ), (Spawn(),)
            # STOPPING -> STOPPED
            return _replace(stopped, status=Status.STOPPED), ()
        return unchanged

    if isinstance(event, RetryDue):
        if status is Status.BACKOFF:
            # BACKOFF -> STARTING: an automatic respawn
            return _replace(state, status=Status.STARTING, restart_count=state.restart_count + 1), (
                Spawn(),
            )
        return unchanged

    if isinstance(event, FileChanged):
        if status is Status.RUNNING:
            # RUNNING -> STOPPING: a reload; StopDone starts it again
            return _replace(state, status=Status.STOPPING, reloading=True), (
                StopTree(spec.stop_signal, spec.stop_timeout),
            )
        if status in (Status.EXITED, Status.CRASHED, Status.BACKOFF):
            # EXITED/CRASHED/BACKOFF -> STARTING: the fix a developer just saved
            cancel: tuple[Effect, ...] = (CancelRetry(),) if status is Status.BACKOFF else ()
            return _replace(
                state, status=Status.STARTING, failures=0, restart_count=state.restart_count + 1
            ), (*cancel, Spawn())
        return unchanged  # stopped on request: a change never starts it

    if isinstance(event, WatchFailed):
        # any status: only lastError changes; the process runs on without reloads
        return _replace(state, last_error=event.reason), ()

    raise TypeError(f"unknown event {event!r}")  # pragma: no cover


def _ended(
    state: State,
    spec: ProcessSpec,
    code: int | None,
    ran_for: float,
    spawn_error: str | None,
    probe_error: str | None = None,
) -> Outcome:
    """The run ended (or never began): decide between backoff, exited and crashed."""
    failed = spawn_error is not None or probe_error is not None or (code is not None and code != 0)
    error = (
        spawn_error or probe_error or (describe_exit(code) if failed and code is not None else "")
    )
    last_error = error or state.last_error
    ended = _replace(
        state,
        run=None,
        ready=False,
        exit_code=code if code is not None else state.exit_code,
        last_error=last_error,
    )
    restarts = spec.restart is RestartPolicy.ALWAYS or (
        spec.restart is RestartPolicy.ON_FAILURE and failed
    )
    if not restarts:
        # a spawn error under "never" gives crashed, any other end exited
        final = Status.CRASHED if spawn_error is not None else Status.EXITED
        return _replace(ended, status=final), ()
    failures = (0 if ran_for >= spec.healthy_after else state.failures) + 1
    if 0 <= spec.max_retries < failures:
        plural = "" if spec.max_retries == 1 else "s"
        gave_up = f"gave up after {spec.max_retries} restart{plural}"
        message = f"{gave_up}: {last_error}" if last_error else gave_up
        return _replace(ended, status=Status.CRASHED, failures=failures, last_error=message), ()
    delay = backoff_delay(failures, spec.backoff, spec.max_backoff)
    return _replace(ended, status=Status.BACKOFF, failures=failures), (ScheduleRetry(delay),)


def _replace(state: State, **changes: object) -> State:
    return msgspec.structs.replace(state, **changes)


def snapshot(
    state: State,
    spec: ProcessSpec,
    argv: tuple[str, ...],
    now: float,
    reading: Reading | None = None,
) -> ProcessStatus:
    """The public status of a process, derived from its state (and the current run's
    last ``reading`` of CPU and memory)."""
    run = state.run
    measured = reading if state.status is Status.RUNNING else None
    return ProcessStatus(
        id=spec.id,
        status=state.status,
        pid=run.pid if run else None,
        start_time=run.start_time if run else None,
        uptime=max(0.0, now - run.started_at) if run and state.status is Status.RUNNING else 0.0,
        restart_count=state.restart_count,
        exit_code=state.exit_code,
        last_error=state.last_error,
        command=argv,
        dev_mode=spec.dev_mode,
        ready=state.status is Status.RUNNING and (spec.ready is None or state.ready),
        notify_status=state.notify_status,
        group=spec.group_id,
        replica=spec.replica,
        cpu_percent=measured.cpu_percent if measured else None,
        memory_bytes=measured.memory_bytes if measured else None,
    )


__all__ = [
    "Await",
    "CancelRetry",
    "DepsMet",
    "Notified",
    "OverMemory",
    "ProbeFailed",
    "Ready",
    "Effect",
    "Event",
    "Exited",
    "FileChanged",
    "Outcome",
    "Run",
    "RetryDue",
    "ScheduleRetry",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "Start",
    "State",
    "Stop",
    "StopDone",
    "StopTree",
    "describe_exit",
    "snapshot",
    "transition",
    "WatchFailed",
]
