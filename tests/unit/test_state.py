"""The state machine: every (status, event) pair, then the backoff rules of SPEC §2."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from processman.domain.backoff import backoff_delay
from processman.domain.model import Probe, ProbeKind, ProcessSpec, RestartPolicy, Status
from processman.domain.state import (
    Await,
    CancelRetry,
    DepsMet,
    Event,
    Exited,
    FileChanged,
    Notified,
    OverMemory,
    ProbeFailed,
    Ready,
    RetryDue,
    Run,
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
    snapshot,
    transition,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = Status


def spec(**overrides: object) -> ProcessSpec:
    values: dict[str, object] = {"id": "p", "cwd": "/", "command": ("x",), "backoff": 1.0}
    values.update(overrides)
    return ProcessSpec(**values)  # type: ignore[arg-type]


def state_in(status: Status) -> State:
    run = Run(pid=7, started_at=0.0, start_time=T0) if status in (S.RUNNING, S.STOPPING) else None
    return State(status=status, run=run, failures=2, restart_count=5)


EVENTS: dict[str, Event] = {
    "start": Start(),
    "stop": Stop(),
    "spawned": Spawned(pid=8, start_time=T0),
    "spawn_failed": SpawnFailed("cannot start x: not found on PATH"),
    "exited": Exited(pid=7, code=1),
    "stop_done": StopDone(code=-15),
    "retry_due": RetryDue(),
    "file_changed": FileChanged(),
    "watch_failed": WatchFailed("watch path /x does not exist"),
    "await": Await("waiting for db (stopped)"),
    "deps_met": DepsMet(),
    "ready": Ready(),
    "probe_failed": ProbeFailed("health check failed 3 times: connection refused"),
    "notified": Notified("accepting connections"),
    "over_memory": OverMemory("memory above 512 MB: killed"),
}

SAME = None  # the state is unchanged and nothing is done
# (status, event) -> (next status, effect types); every pair is listed.
TABLE: dict[tuple[Status, str], tuple[Status, list[type]] | None] = {
    (S.STOPPED, "start"): (S.STARTING, [Spawn]),
    (S.STOPPED, "stop"): SAME,
    (S.STOPPED, "spawned"): SAME,
    (S.STOPPED, "spawn_failed"): SAME,
    (S.STOPPED, "exited"): SAME,
    (S.STOPPED, "stop_done"): SAME,
    (S.STOPPED, "retry_due"): SAME,
    (S.STARTING, "start"): SAME,
    (S.STARTING, "stop"): SAME,
    (S.STARTING, "spawned"): (S.RUNNING, []),
    (S.STARTING, "spawn_failed"): (S.BACKOFF, [ScheduleRetry]),
    (S.STARTING, "exited"): SAME,
    (S.STARTING, "stop_done"): SAME,
    (S.STARTING, "retry_due"): SAME,
    (S.RUNNING, "start"): SAME,
    (S.RUNNING, "stop"): (S.STOPPING, [StopTree]),
    (S.RUNNING, "spawned"): SAME,
    (S.RUNNING, "spawn_failed"): SAME,
    (S.RUNNING, "exited"): (S.BACKOFF, [ScheduleRetry]),
    (S.RUNNING, "stop_done"): SAME,
    (S.RUNNING, "retry_due"): SAME,
    (S.BACKOFF, "start"): (S.STARTING, [CancelRetry, Spawn]),
    (S.BACKOFF, "stop"): (S.STOPPED, [CancelRetry]),
    (S.BACKOFF, "spawned"): SAME,
    (S.BACKOFF, "spawn_failed"): SAME,
    (S.BACKOFF, "exited"): SAME,
    (S.BACKOFF, "stop_done"): SAME,
    (S.BACKOFF, "retry_due"): (S.STARTING, [Spawn]),
    (S.STOPPING, "start"): SAME,
    (S.STOPPING, "stop"): SAME,
    (S.STOPPING, "spawned"): SAME,
    (S.STOPPING, "spawn_failed"): SAME,
    (S.STOPPING, "exited"): SAME,
    (S.STOPPING, "stop_done"): (S.STOPPED, []),
    (S.STOPPING, "retry_due"): SAME,
    (S.EXITED, "start"): (S.STARTING, [Spawn]),
    (S.EXITED, "stop"): (S.STOPPED, []),
    (S.EXITED, "spawned"): SAME,
    (S.EXITED, "spawn_failed"): SAME,
    (S.EXITED, "exited"): SAME,
    (S.EXITED, "stop_done"): SAME,
    (S.EXITED, "retry_due"): SAME,
    (S.CRASHED, "start"): (S.STARTING, [Spawn]),
    (S.CRASHED, "stop"): (S.STOPPED, []),
    (S.CRASHED, "spawned"): SAME,
    (S.CRASHED, "spawn_failed"): SAME,
    (S.CRASHED, "exited"): SAME,
    (S.CRASHED, "stop_done"): SAME,
    (S.CRASHED, "retry_due"): SAME,
    (S.STOPPED, "file_changed"): SAME,
    (S.STOPPED, "watch_failed"): (S.STOPPED, []),
    (S.STARTING, "file_changed"): SAME,
    (S.STARTING, "watch_failed"): (S.STARTING, []),
    (S.RUNNING, "file_changed"): (S.STOPPING, [StopTree]),
    (S.RUNNING, "watch_failed"): (S.RUNNING, []),
    (S.BACKOFF, "file_changed"): (S.STARTING, [CancelRetry, Spawn]),
    (S.BACKOFF, "watch_failed"): (S.BACKOFF, []),
    (S.STOPPING, "file_changed"): SAME,
    (S.STOPPING, "watch_failed"): (S.STOPPING, []),
    (S.EXITED, "file_changed"): (S.STARTING, [Spawn]),
    (S.EXITED, "watch_failed"): (S.EXITED, []),
    (S.CRASHED, "file_changed"): (S.STARTING, [Spawn]),
    (S.CRASHED, "watch_failed"): (S.CRASHED, []),
    # SPEC §8: waiting for dependencies, readiness and health
    (S.WAITING, "start"): SAME,
    (S.WAITING, "stop"): (S.STOPPED, []),
    (S.WAITING, "spawned"): SAME,
    (S.WAITING, "spawn_failed"): SAME,
    (S.WAITING, "exited"): SAME,
    (S.WAITING, "stop_done"): SAME,
    (S.WAITING, "retry_due"): SAME,
    (S.WAITING, "file_changed"): SAME,
    (S.WAITING, "watch_failed"): (S.WAITING, []),
    (S.WAITING, "await"): (S.WAITING, []),  # a new reason
    (S.WAITING, "deps_met"): (S.STARTING, [Spawn]),
    (S.WAITING, "ready"): SAME,
    (S.WAITING, "probe_failed"): SAME,
    (S.STOPPED, "await"): (S.WAITING, []),
    (S.EXITED, "await"): (S.WAITING, []),
    (S.CRASHED, "await"): (S.WAITING, []),
    (S.BACKOFF, "await"): (S.WAITING, [CancelRetry]),
    (S.STARTING, "await"): SAME,
    (S.RUNNING, "await"): SAME,
    (S.STOPPING, "await"): SAME,
    **{(s, "deps_met"): SAME for s in Status if s is not S.WAITING},
    **{(s, "ready"): SAME for s in Status if s is not S.RUNNING},
    (S.RUNNING, "ready"): (S.RUNNING, []),
    **{(s, "probe_failed"): SAME for s in Status if s is not S.RUNNING and s is not S.WAITING},
    (S.RUNNING, "probe_failed"): (S.STOPPING, [StopTree]),
    **{(s, "notified"): SAME for s in Status if s is not S.RUNNING},
    (S.RUNNING, "notified"): (S.RUNNING, []),  # notifyStatus set
    # SPEC §11: past maxMemory
    **{(s, "over_memory"): SAME for s in Status if s is not S.RUNNING},
    (S.RUNNING, "over_memory"): (S.STOPPING, [StopTree]),
}


def test_table_covers_every_pair() -> None:
    assert set(TABLE) == {(status, name) for status in Status for name in EVENTS}


@pytest.mark.parametrize(("status", "event_name"), sorted(TABLE, key=str))
def test_transition(status: Status, event_name: str) -> None:
    before = state_in(status)
    after, effects = transition(before, EVENTS[event_name], spec(), now=1.0)
    expected = TABLE[(status, event_name)]
    if expected is SAME:
        assert after == before
        assert effects == ()
    else:
        next_status, effect_types = expected
        assert after.status is next_status
        assert [type(e) for e in effects] == effect_types


def test_waiting_says_for_what_and_leaves_for_starting() -> None:
    crashed = State(status=S.CRASHED, failures=4, last_error="exited with code 1")
    waiting, _ = transition(crashed, Await("waiting for db (stopped)"), spec(), 0)
    assert (waiting.status, waiting.failures, waiting.last_error) == (
        S.WAITING,
        0,
        "waiting for db (stopped)",
    )
    again, _ = transition(waiting, Await("waiting for db (starting)"), spec(), 0)
    assert again.last_error == "waiting for db (starting)"
    same = transition(again, Await("waiting for db (starting)"), spec(), 0)
    assert same == (again, ())  # no change, no status event
    starting, effects = transition(again, DepsMet(), spec(), 0)
    assert (starting.status, starting.last_error, effects) == (S.STARTING, "", (Spawn(),))
    stopped, _ = transition(again, Stop(), spec(), 0)
    assert (stopped.status, stopped.last_error) == (S.STOPPED, "")


def test_a_failed_probe_stops_the_run_and_counts_it_as_failed() -> None:
    probe_spec = spec(restart=RestartPolicy.ON_FAILURE, max_retries=5)
    running = msgspec.structs.replace(state_in(S.RUNNING), failures=0, ready=True)
    reason = "health check failed 3 times: connection refused"
    stopping, effects = transition(running, ProbeFailed(reason), probe_spec, 1.0)
    assert stopping.status is S.STOPPING and effects == (StopTree("SIGTERM", 10.0),)
    # killed by our SIGTERM, which alone would be a stop on request: a failed run here
    after, effects = transition(stopping, StopDone(code=-15), probe_spec, 2.0)
    assert (after.status, after.failures, after.last_error) == (S.BACKOFF, 1, reason)
    assert after.exit_code == -15 and not after.ready and after.failing == ""
    assert effects == (ScheduleRetry(1.0),)
    never = spec(restart=RestartPolicy.NEVER)
    after, _ = transition(
        transition(running, ProbeFailed(reason), never, 1.0)[0], StopDone(-15), never, 2.0
    )
    assert (after.status, after.last_error) == (S.EXITED, reason)


def test_ready_is_the_current_instances() -> None:
    with_probe = spec(ready=Probe(kind=ProbeKind.TCP, target="127.0.0.1:1"))
    running, _ = transition(State(status=S.STARTING), EVENTS["spawned"], with_probe, 0)
    assert not snapshot(running, with_probe, ("x",), 0).ready
    ready, _ = transition(running, Ready(), with_probe, 0)
    assert snapshot(ready, with_probe, ("x",), 0).ready
    assert snapshot(running, spec(), ("x",), 0).ready  # no ready probe: running is ready
    exited, _ = transition(ready, Exited(pid=8, code=1), with_probe, 1)
    assert not exited.ready and not snapshot(exited, with_probe, ("x",), 1).ready
    respawned, _ = transition(
        msgspec.structs.replace(exited, status=S.STARTING), Spawned(9, T0), with_probe, 2
    )
    assert not respawned.ready  # a new instance must pass again


def test_a_reload_stops_then_starts_counts_and_resets_k() -> None:
    running = msgspec.structs.replace(state_in(S.RUNNING), failures=3)
    stopping, effects = transition(running, FileChanged(), spec(), 1.0)
    assert stopping.reloading and effects == (StopTree("SIGTERM", 10.0),)
    starting, effects = transition(stopping, StopDone(code=-15), spec(), 1.0)
    assert (starting.status, starting.failures, starting.restart_count) == (S.STARTING, 0, 6)
    assert not starting.reloading and starting.exit_code == -15 and effects == (Spawn(),)


def test_a_change_starts_crashed_and_exited_but_not_stopped() -> None:
    for status in (S.CRASHED, S.EXITED):
        after, _ = transition(
            State(status=status, failures=4, restart_count=4), FileChanged(), spec(), 0
        )
        assert (after.status, after.failures, after.restart_count) == (S.STARTING, 0, 5)
    assert transition(State(), FileChanged(), spec(), 0) == (State(), ())


def test_watch_failure_only_sets_last_error() -> None:
    after, _ = transition(state_in(S.RUNNING), WatchFailed("no such path"), spec(), 0)
    assert after == msgspec.structs.replace(state_in(S.RUNNING), last_error="no such path")


def test_running_has_a_run_and_stopped_has_none() -> None:
    running, _ = transition(State(status=S.STARTING), EVENTS["spawned"], spec(), now=3.0)
    assert running.run == Run(pid=8, started_at=3.0, start_time=T0)
    stopped, _ = transition(state_in(S.STOPPING), StopDone(code=-15), spec(), now=4.0)
    assert stopped.run is None and stopped.exit_code == -15


def test_stop_uses_the_spec_signal_and_timeout() -> None:
    _, effects = transition(
        state_in(S.RUNNING), Stop(), spec(stop_signal="SIGINT", stop_timeout=2.5), 1
    )
    assert effects == (StopTree("SIGINT", 2.5),)


def test_exit_of_another_instance_is_ignored() -> None:
    before = state_in(S.RUNNING)
    assert transition(before, Exited(pid=99, code=1), spec(), 1.0) == (before, ())


def test_explicit_start_resets_k_but_start_in_backoff_keeps_it() -> None:
    crashed = State(status=S.CRASHED, failures=4, restart_count=4)
    after, _ = transition(crashed, Start(), spec(), 0)
    assert (after.failures, after.restart_count) == (0, 4)
    backoff = State(status=S.BACKOFF, failures=3)
    after, _ = transition(backoff, Start(), spec(), 0)
    assert after.failures == 3


def test_retry_counts_a_restart() -> None:
    after, _ = transition(State(status=S.BACKOFF, restart_count=2), RetryDue(), spec(), 0)
    assert after.restart_count == 3


# --- backoff --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (100, 30.0), (5000, 30.0)],
)
def test_backoff_formula(k: int, expected: float) -> None:
    assert backoff_delay(k, 1.0, 30.0) == expected


def test_backoff_counts_from_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 30.0)


def run_exits(
    state: State, code: int, ran_for: float, process: ProcessSpec, delays: list[float] | None = None
) -> State:
    """Spawn an instance at t=0, let it exit after ``ran_for`` seconds; note the retry delay."""
    if state.status is not S.STARTING:
        state, _ = transition(state, Start(), process, 0.0)
    state, _ = transition(state, Spawned(pid=1, start_time=T0), process, 0.0)
    state, effects = transition(state, Exited(pid=1, code=code), process, ran_for)
    for effect in effects:
        assert isinstance(effect, ScheduleRetry)
        if delays is not None:
            delays.append(effect.delay)
    return state


def test_always_failing_script_with_max_retries_3_runs_4_times_then_crashes() -> None:
    process = spec(max_retries=3, backoff=1.0, max_backoff=30.0)
    state = State()
    runs = 0
    delays: list[float] = []
    state, _ = transition(state, Start(), process, 0.0)
    while True:
        runs += 1
        state = run_exits(state, 1, 0.5, process, delays)
        if state.status is not S.BACKOFF:
            break
        state, _ = transition(state, RetryDue(), process, 0.0)
    assert runs == 4
    assert state.status is S.CRASHED
    assert state.restart_count == 3
    assert state.exit_code == 1
    assert delays == [1.0, 2.0, 4.0]
    assert (
        "gave up after 3 restarts" in state.last_error and "exited with code 1" in state.last_error
    )


def test_a_healthy_run_resets_k() -> None:
    process = spec(healthy_after=10.0, backoff=1.0)
    state = State(status=S.STARTING, failures=4)
    delays: list[float] = []
    state = run_exits(state, 1, 10.0, process, delays)  # ran exactly healthyAfter: healthy
    assert state.failures == 1 and delays == [1.0]
    state, _ = transition(state, RetryDue(), process, 0)
    state = run_exits(state, 1, 9.99, process, delays)  # short: k grows
    assert state.failures == 2 and delays == [1.0, 2.0]


def test_max_retries_zero_crashes_on_first_end() -> None:
    state = run_exits(State(status=S.STARTING), 1, 0.1, spec(max_retries=0))
    assert state.status is S.CRASHED and state.restart_count == 0


@pytest.mark.parametrize(
    ("policy", "code", "status"),
    [
        (RestartPolicy.ALWAYS, 0, S.BACKOFF),
        (RestartPolicy.ALWAYS, 1, S.BACKOFF),
        (RestartPolicy.ON_FAILURE, 0, S.EXITED),
        (RestartPolicy.ON_FAILURE, 3, S.BACKOFF),
        (RestartPolicy.ON_FAILURE, -9, S.BACKOFF),
        (RestartPolicy.NEVER, 0, S.EXITED),
        (RestartPolicy.NEVER, 1, S.EXITED),
    ],
)
def test_policies(policy: RestartPolicy, code: int, status: Status) -> None:
    state = run_exits(State(status=S.STARTING), code, 0.1, spec(restart=policy))
    assert state.status is status
    assert state.exit_code == code


@pytest.mark.parametrize(
    ("policy", "status"),
    [
        (RestartPolicy.ALWAYS, S.BACKOFF),
        (RestartPolicy.ON_FAILURE, S.BACKOFF),
        (RestartPolicy.NEVER, S.CRASHED),
    ],
)
def test_spawn_errors_follow_the_policy(policy: RestartPolicy, status: Status) -> None:
    state, _ = transition(
        State(status=S.STARTING), SpawnFailed("cannot start x: nope"), spec(restart=policy), 0
    )
    assert state.status is status
    assert state.exit_code is None
    assert state.last_error == "cannot start x: nope"


def test_zero_backoff_restarts_at_once() -> None:
    _, effects = transition(state_in(S.RUNNING), Exited(pid=7, code=1), spec(backoff=0.0), 1.0)
    assert effects == (ScheduleRetry(0.0),)


def test_signal_death_is_described() -> None:
    state, _ = transition(state_in(S.RUNNING), Exited(pid=7, code=-9), spec(), 1.0)
    assert state.last_error == "killed by signal 9"


def test_snapshot_derives_the_public_fields() -> None:
    status = snapshot(state_in(S.RUNNING), spec(), ("x", "y"), now=12.5)
    assert (status.pid, status.start_time, status.uptime) == (7, T0, 12.5)
    assert status.status == "running" and status.command == ("x", "y")
    stopped = snapshot(State(exit_code=-15), spec(), ("x",), now=99)
    assert (stopped.pid, stopped.start_time, stopped.uptime, stopped.exit_code) == (
        None,
        None,
        0.0,
        -15,
    )


def test_over_memory_kills_at_once_and_counts_a_failed_run() -> None:
    reason = "memory above 512 MB: killed"
    running = state_in(S.RUNNING)
    stopping, effects = transition(running, OverMemory(reason), spec(), 1.0)
    assert effects == (StopTree("SIGKILL", 0.0),)
    ended, effects = transition(stopping, StopDone(-9), spec(), 2.0)
    assert (ended.status, ended.last_error) == (S.BACKOFF, reason)
    assert ended.failures == running.failures + 1
    assert [type(e) for e in effects] == [ScheduleRetry]


def test_an_exit_with_a_reason_reports_it() -> None:
    # the kernel's OOM kill at memory.max: the reason, not "killed by SIGKILL"
    running = state_in(S.RUNNING)
    assert running.run is not None
    reason = "memory above 1 GiB: killed"
    ended, _ = transition(running, Exited(running.run.pid, -9, reason), spec(), 2.0)
    assert (ended.status, ended.last_error, ended.exit_code) == (S.BACKOFF, reason, -9)
