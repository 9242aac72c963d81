"""The reload diff (SPEC §10): what a new config changes, process by process.

A pure function of the old and the new config (as ``load_config`` resolves them, a
group's template for a process with replicas); the manager carries the plan out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from processman.domain.model import Config, ProcessSpec


class ReloadPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What a reload does, by process id (group ids for replicas), in the new config's
    order (removed ones in the old config's). ``changed`` are restarted with their new
    spec if active; ``scaled`` (a subset of ``changed``) differ in ``replicas`` only;
    ``respecified`` (also in ``changed``) differ in ``dependsOn`` only, which applies at
    their next start, so they are not restarted."""

    added: list[str] = msgspec.field(default_factory=list)
    removed: list[str] = msgspec.field(default_factory=list)
    changed: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    scaled: list[str] = msgspec.field(default_factory=list)
    respecified: list[str] = msgspec.field(default_factory=list)


def _without(spec: ProcessSpec, **values: object) -> ProcessSpec:
    return msgspec.structs.replace(spec, **values)


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two configs (SPEC §10)."""
    before = {spec.id: spec for spec in old.processes}
    after = {spec.id: spec for spec in new.processes}
    plan = ReloadPlan(removed=[i for i in before if i not in after])
    for process_id, spec in after.items():
        previous = before.get(process_id)
        if previous is None:
            plan.added.append(process_id)
        elif previous == spec:
            plan.unchanged.append(process_id)
        else:
            plan.changed.append(process_id)
            if (
                previous.replicas is not None
                and spec.replicas is not None
                and _without(previous, replicas=spec.replicas) == spec
            ):
                plan.scaled.append(process_id)
            elif _without(previous, depends_on=spec.depends_on) == spec:
                plan.respecified.append(process_id)
    if old.api != new.api:
        plan.warnings.append("api changed: it takes effect at the next start of processman run")
    return plan
