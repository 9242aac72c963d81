"""The cross-process rules of SPEC §8, over plain data: cycles, conditions, stop order."""

from __future__ import annotations

import itertools

import pytest

from processman.domain.model import Condition, Status
from processman.domain.ordering import (
    DepState,
    condition_holds,
    dependencies,
    dependents,
    find_cycle,
    needs_start,
    stop_layers,
    unmet,
    waiting_reason,
)

C, S = Condition, Status


def test_cycles_are_shown_as_a_path() -> None:
    assert find_cycle({"a": {"b": C.READY}, "b": {"c": C.READY}, "c": {"a": C.READY}}) == [
        "a",
        "b",
        "c",
        "a",
    ]
    assert find_cycle({"api": {"db": C.READY}, "db": {"api": C.READY}}) == ["api", "db", "api"]
    assert find_cycle({"a": {"a": C.READY}}) == ["a", "a"]
    # a diamond is no cycle
    assert (
        find_cycle(
            {"app": {"db": 1, "cache": 1}, "db": {"base": 1}, "cache": {"base": 1}, "base": {}}
        )
        is None
    )
    assert find_cycle({"x": {"y": C.READY}, "y": {"z": C.READY}, "z": {"y": C.READY}}) == [
        "y",
        "z",
        "y",
    ]


# every condition against every status, ready or not, and exit codes 0 and 1
HOLDS = {
    C.STARTED: lambda st: st.status is S.RUNNING,
    C.READY: lambda st: st.status is S.RUNNING and st.ready,
    C.COMPLETED: lambda st: st.status is S.EXITED,
    C.SUCCEEDED: lambda st: st.status is S.EXITED and st.exit_code == 0,
}


@pytest.mark.parametrize(
    ("condition", "status", "ready", "code"),
    list(itertools.product(Condition, Status, (False, True), (None, 0, 1))),
)
def test_conditions(condition: Condition, status: Status, ready: bool, code: int | None) -> None:
    state = DepState(status, ready and status is S.RUNNING, code)
    assert condition_holds(condition, state) == HOLDS[condition](state)


def test_what_a_waiting_process_waits_for() -> None:
    states = {
        "db": DepState(S.BACKOFF, False, 1, "exited with code 1"),
        "cache": DepState(S.RUNNING, True, None),
        "api": DepState(S.RUNNING, False, None),
        "migrate": DepState(S.EXITED, False, 3, "exited with code 3"),
    }
    wanted = {"db": C.READY, "cache": C.READY, "api": C.READY, "migrate": C.SUCCEEDED}
    missing = unmet(wanted, states)
    assert missing == [("db", C.READY), ("api", C.READY), ("migrate", C.SUCCEEDED)]
    assert waiting_reason(missing[:1], states) == "waiting for db (backoff: exited with code 1)"
    assert waiting_reason(missing, states) == (
        "waiting for db (backoff: exited with code 1), api (running, not ready), "
        "migrate to be succeeded (exited with code 3: exited with code 3)"
    )
    assert unmet({"gone": C.READY}, states) == [("gone", C.READY)]
    assert waiting_reason([("gone", C.READY)], states) == "waiting for gone (gone)"


def test_start_starts_what_does_not_meet_its_condition_and_leaves_a_succeeded_one() -> None:
    assert needs_start(C.READY, DepState(S.STOPPED, False, None))
    assert needs_start(C.READY, DepState(S.CRASHED, False, 1))
    assert needs_start(C.SUCCEEDED, DepState(S.EXITED, False, 1))  # a failed migration again
    assert not needs_start(C.SUCCEEDED, DepState(S.EXITED, False, 0))  # not run twice
    assert not needs_start(C.COMPLETED, DepState(S.EXITED, False, 1))
    assert needs_start(C.READY, DepState(S.EXITED, False, 0))  # a server that ended
    for status in (S.WAITING, S.STARTING, S.RUNNING, S.BACKOFF, S.STOPPING):
        assert not needs_start(C.READY, DepState(status, False, None))  # on its way already


GRAPH = {
    "db": {},
    "cache": {},
    "migrate": {"db": C.SUCCEEDED},
    "api": {"db": C.READY, "migrate": C.SUCCEEDED, "cache": C.STARTED},
    "worker": {"api": C.READY},
    "lone": {},
}


def test_dependencies_come_first() -> None:
    assert dependencies(["worker"], GRAPH) == ["db", "migrate", "cache", "api", "worker"]
    assert dependencies(["lone", "migrate"], GRAPH) == ["lone", "db", "migrate"]


def test_dependents_in_stop_order() -> None:
    assert dependents("db", GRAPH) == ["worker", "api", "migrate"]
    assert dependents("cache", GRAPH) == ["worker", "api"]
    assert dependents("worker", GRAPH) == []


def test_stop_layers_put_dependents_first_and_unrelated_ones_together() -> None:
    layers = stop_layers(GRAPH)
    assert layers == [["worker", "lone"], ["api"], ["cache", "migrate"], ["db"]]
    position = {node: i for i, layer in enumerate(layers) for node in layer}
    for node, deps in GRAPH.items():
        for dep in deps:
            assert position[node] < position[dep], (node, dep, layers)
    assert position["lone"] == 0 and position["worker"] == 0  # no one needs them: at once
    assert sorted(n for layer in layers for n in layer) == sorted(GRAPH)
