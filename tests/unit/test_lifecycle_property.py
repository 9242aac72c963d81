"""The lifecycle under random sequences of commands, exits, retries and file changes.

A Hypothesis state machine drives ``transition`` the way ``app/runner.py`` does: every
event is applied under the runner's lock, and its effects are carried out before the
lock is released (a Spawn is answered by Spawned or SpawnFailed, a StopTree by
StopDone), so between two commands a process is never ``starting`` or ``stopping``.
After every step the state must agree with what the shell holds (a live instance, a
pending retry) and with SPEC §2: k, the backoff formula, ``maxRetries``, restart counts.
"""

from __future__ import annotations

from datetime import UTC, datetime

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from processman.domain.model import ProcessSpec, RestartPolicy, Status
from processman.domain.state import (
    CancelRetry,
    Event,
    Exited,
    FileChanged,
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
    transition,
)

AT_REST = {Status.STOPPED, Status.RUNNING, Status.BACKOFF, Status.EXITED, Status.CRASHED}
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = State()
        self.now = 0.0
        self.pid: int | None = None  # the live instance
        self.last_pid = 100
        self.retry: float | None = None  # the delay of the pending RetryDue
        self.spawns: list[bool] = []  # outcomes for the next Spawn effects, drawn per rule

    @initialize(
        restart=st.sampled_from(list(RestartPolicy)),
        max_retries=st.integers(-1, 3),
        backoff=st.sampled_from([0.0, 0.5, 1.0]),
        cap=st.sampled_from([0.0, 2.0, 30.0]),
        healthy_after=st.sampled_from([0.0, 5.0]),
    )
    def configure(
        self,
        restart: RestartPolicy,
        max_retries: int,
        backoff: float,
        cap: float,
        healthy_after: float,
    ) -> None:
        self.spec = ProcessSpec(
            id="p",
            cwd="/",
            command=("prog",),
            restart=restart,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max(cap, backoff),
            healthy_after=healthy_after,
            stop_signal="SIGINT",
            stop_timeout=2.5,
        )

    # --- the shell: apply an event, carry out its effects ------------------------------

    def apply(self, event: Event, stop_code: int | None = None) -> State:
        before = self.state
        self.state, effects = transition(self.state, event, self.spec, self.now)
        assert self.state.restart_count >= before.restart_count
        for effect in effects:
            if isinstance(effect, Spawn):
                assert self.pid is None, "a second instance while one is alive"
                assert self.state.status is Status.STARTING
                if self.spawns.pop(0) if self.spawns else True:
                    self.last_pid += 1
                    self.pid = self.last_pid
                    self.apply(Spawned(self.pid, WHEN))
                else:
                    self.apply(SpawnFailed("cannot start prog: no such file"))
            elif isinstance(effect, StopTree):
                assert self.pid is not None and self.state.status is Status.STOPPING
                assert (effect.signal, effect.grace) == ("SIGINT", 2.5)
                self.pid = None
                self.apply(StopDone(stop_code))
            elif isinstance(effect, ScheduleRetry):
                assert self.retry is None, "two retries pending"
                k = self.state.failures
                expected = min(self.spec.backoff * 2 ** (k - 1), self.spec.max_backoff)  # SPEC §2
                assert effect.delay == expected
                self.retry = effect.delay
            elif isinstance(effect, CancelRetry):
                assert self.retry is not None, "cancelled a retry that was not pending"
                self.retry = None
        return before

    # --- what can happen between two commands --------------------------------------------

    @rule(spawns=st.lists(st.booleans(), max_size=3))
    def start(self, spawns: list[bool]) -> None:
        self.spawns = spawns
        before = self.apply(Start())
        if before.status in (Status.STOPPED, Status.EXITED, Status.CRASHED):
            # an explicit start resets k (the spawn may then fail and count one)
            assert self.state.failures <= 1
        elif before.status is Status.BACKOFF:
            assert self.state.failures >= before.failures  # k kept
        else:
            assert self.state == before  # running already

    @rule(code=st.sampled_from([None, 0, -15, 143]))
    def stop(self, code: int | None) -> None:
        before = self.apply(Stop(), stop_code=code)
        if before.status is Status.RUNNING:
            assert self.state.status is Status.STOPPED and self.pid is None
            assert self.state.exit_code == (code if code is not None else before.exit_code)
        elif before.status is Status.STOPPED:
            assert self.state == before
        else:
            assert self.state.status is Status.STOPPED

    @rule(spawns=st.lists(st.booleans(), max_size=3), code=st.sampled_from([None, -15]))
    def restart(self, spawns: list[bool], code: int | None) -> None:
        self.spawns = spawns
        self.apply(Stop(), stop_code=code)
        self.apply(Start())

    @rule(seconds=st.sampled_from([0.1, 1.0, 6.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: self.pid is not None)
    @rule(code=st.sampled_from([0, 1, -9]), spawns=st.lists(st.booleans(), max_size=3))
    def instance_exits(self, code: int, spawns: list[bool]) -> None:
        assert self.state.run is not None
        ran_for = self.now - self.state.run.started_at
        self.spawns, self.pid = spawns, None
        before = self.apply(Exited(self.last_pid, code))
        failed = code != 0
        restarts = self.spec.restart is RestartPolicy.ALWAYS or (
            self.spec.restart is RestartPolicy.ON_FAILURE and failed
        )
        assert self.state.exit_code == code
        if not restarts:
            assert self.state.status is Status.EXITED
            assert self.state.failures == before.failures
            return
        k = (0 if ran_for >= self.spec.healthy_after else before.failures) + 1
        assert self.state.failures == k
        if 0 <= self.spec.max_retries < k:
            assert self.state.status is Status.CRASHED
            assert self.state.last_error.startswith(f"gave up after {self.spec.max_retries}")
        else:
            assert self.state.status is Status.BACKOFF

    @precondition(lambda self: self.retry is not None)
    @rule(spawns=st.lists(st.booleans(), max_size=3))
    def retry_due(self, spawns: list[bool]) -> None:
        self.spawns, self.retry = spawns, None
        before = self.apply(RetryDue())
        assert self.state.restart_count == before.restart_count + 1

    @rule(spawns=st.lists(st.booleans(), max_size=3))
    def file_changed(self, spawns: list[bool]) -> None:
        self.spawns = spawns
        before = self.apply(FileChanged())
        if before.status is Status.STOPPED:
            assert self.state == before  # stopped on request: a change never starts it
        else:
            # a reload (running) or the fix just saved (exited, crashed, backoff): k reset
            assert self.state.restart_count == before.restart_count + 1
            assert self.state.failures <= 1

    @rule()
    def stale_exit(self) -> None:
        before = self.apply(Exited(self.last_pid - 1, 1))  # an instance already stopped
        assert self.state == before

    @rule()
    def watch_fails(self) -> None:
        before = self.apply(WatchFailed("watch: /app: no such directory"))
        assert self.state.status is before.status
        assert self.state.last_error == "watch: /app: no such directory"

    # --- after every step -----------------------------------------------------------------

    @invariant()
    def at_rest_and_consistent(self) -> None:
        state = self.state
        assert state.status in AT_REST, state.status
        assert (state.run is not None) == (state.status is Status.RUNNING)
        assert (self.pid is not None) == (state.status is Status.RUNNING)
        if state.run is not None:
            assert state.run.pid == self.pid
        assert (self.retry is not None) == (state.status is Status.BACKOFF)
        assert state.failures >= 0 and not state.reloading
        if state.status is Status.BACKOFF:
            assert state.failures >= 1
            assert self.spec.max_retries < 0 or state.failures <= self.spec.max_retries


Lifecycle.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_lifecycle = Lifecycle.TestCase
