"""Rules across processes (SPEC §8): dependency cycles, who may start now, stop order.

Plain functions over specs and what is known of each process now (``DepState``); the
runners and the manager carry the decisions out. A process's dependencies are its
``depends_on`` map: id -> the condition that id must meet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from processman.domain.model import Condition, Status

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from processman.domain.model import ProcessSpec

#: A dependency map: id -> {dependency id -> condition}.
Graph = dict[str, dict[str, Condition]]


class DepState(NamedTuple):
    """What a condition is checked against: a process's status, readiness, last exit."""

    status: Status
    ready: bool
    exit_code: int | None
    last_error: str = ""


def graph_of(specs: Iterable[ProcessSpec]) -> Graph:
    """The dependency map of ``specs``."""
    return {spec.id: dict(spec.depends_on) for spec in specs}


def find_cycle(graph: Mapping[str, Mapping[str, object]]) -> list[str] | None:
    """A dependency cycle as a path that ends where it began (``[a, b, c, a]``), or None.

    The first cycle met when visiting the ids in the map's order, each id's dependencies
    in their order: so the same config always names the same cycle.
    """
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for dependency in graph.get(node, {}):
            if dependency in on_path:
                return [*path[path.index(dependency) :], dependency]
            if dependency not in done and dependency in graph:
                found = visit(dependency)
                if found:
                    return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for node in graph:
        if node not in done:
            found = visit(node)
            if found:
                return found
    return None


def condition_holds(condition: Condition, state: DepState) -> bool:
    """Whether a dependency in ``state`` meets ``condition``."""
    if condition is Condition.STARTED:
        return state.status is Status.RUNNING
    if condition is Condition.READY:
        return state.status is Status.RUNNING and state.ready
    if condition is Condition.COMPLETED:
        return state.status is Status.EXITED
    return state.status is Status.EXITED and state.exit_code == 0  # SUCCEEDED


def unmet(
    depends_on: Mapping[str, Condition], states: Mapping[str, DepState]
) -> list[tuple[str, Condition]]:
    """The dependencies that do not meet their condition now, in their order."""
    return [
        (dep, condition)
        for dep, condition in depends_on.items()
        if dep not in states or not condition_holds(condition, states[dep])
    ]


def waiting_reason(missing: list[tuple[str, Condition]], states: Mapping[str, DepState]) -> str:
    """``waiting for db (backoff: exited with code 1)``: what a waiting process waits for."""
    parts = []
    for dep, condition in missing:
        state = states.get(dep)
        if state is None:
            parts.append(f"{dep} (gone)")
            continue
        detail = str(state.status)
        if state.status is Status.RUNNING and condition is Condition.READY:
            detail = "running, not ready"
        elif state.status is Status.EXITED and condition is Condition.SUCCEEDED:
            detail = f"exited with code {state.exit_code}"
        if state.last_error and state.status is not Status.RUNNING:
            detail += f": {state.last_error}"
        wanted = "" if condition is Condition.READY else f" to be {condition}"
        parts.append(f"{dep}{wanted} ({detail})")
    return "waiting for " + ", ".join(parts)


def needs_start(condition: Condition, state: DepState) -> bool:
    """Whether ``start`` of a dependent starts this dependency first: it is stopped,
    crashed, or exited without meeting its condition (a succeeded migration is left)."""
    if state.status in (Status.STOPPED, Status.CRASHED):
        return True
    return state.status is Status.EXITED and not condition_holds(condition, state)


def dependencies(ids: Iterable[str], graph: Mapping[str, Mapping[str, object]]) -> list[str]:
    """``ids`` and every process they depend on, transitively; dependencies first."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        if node in seen:
            return
        seen.add(node)
        for dependency in graph.get(node, {}):
            visit(dependency)
        order.append(node)

    for node in ids:
        visit(node)
    return order


def dependents(process_id: str, graph: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Every process that depends on ``process_id``, transitively (not itself), in stop
    order: those that depend on others of them come first."""
    found: set[str] = set()
    frontier = [process_id]
    while frontier:
        current = frontier.pop()
        for node, deps in graph.items():
            if current in deps and node not in found and node != process_id:
                found.add(node)
                frontier.append(node)
    return [node for layer in stop_layers(graph) for node in layer if node in found]


def stop_layers(graph: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Every id in layers to stop one after the other: each layer holds the processes no
    remaining one depends on (dependents first); each layer stops in parallel."""
    remaining = {node: {d for d in deps if d in graph} for node, deps in graph.items()}
    layers: list[list[str]] = []
    while remaining:
        needed = {d for deps in remaining.values() for d in deps}
        layer = [node for node in remaining if node not in needed]
        if not layer:  # a cycle (refused by the config): stop the rest together
            layer = list(remaining)
        layers.append(layer)
        for node in layer:
            del remaining[node]
        for deps in remaining.values():
            deps.difference_update(layer)
    return layers


def expand_groups(
    depends_on: Mapping[str, Condition], members: Mapping[str, Sequence[str]]
) -> dict[str, Condition]:
    """``depends_on`` over instances: a group's id becomes each of its replicas' ids (a
    group scaled to none, nothing: its condition holds for all of none)."""
    expanded: dict[str, Condition] = {}
    for dep, condition in depends_on.items():
        for member in members.get(dep, (dep,)):
            expanded[member] = condition
    return expanded
