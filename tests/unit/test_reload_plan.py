"""The reload diff (SPEC §10), as a pure function of two configs."""

from __future__ import annotations

from processman.domain.model import ApiSettings, Condition, Config, LogSettings, ProcessSpec
from processman.domain.reload import plan_reload


def spec(process_id: str, **values: object) -> ProcessSpec:
    return ProcessSpec(id=process_id, cwd="/", command=(process_id,), **values)  # type: ignore[arg-type]


def test_added_removed_changed_and_unchanged_in_config_order() -> None:
    old = Config(processes=(spec("a"), spec("gone"), spec("b"), spec("c")))
    new = Config(processes=(spec("new"), spec("c"), spec("b", env={"X": "1"}), spec("a")))
    plan = plan_reload(old, new)
    assert plan.added == ["new"]
    assert plan.removed == ["gone"]
    assert plan.changed == ["b"]
    assert plan.unchanged == ["c", "a"]
    assert plan.warnings == [] and plan.scaled == [] and plan.respecified == []


def test_replicas_alone_scale_and_depends_on_alone_waits_for_the_next_start() -> None:
    old = Config(processes=(spec("db"), spec("web", replicas=2), spec("app")))
    new = Config(
        processes=(
            spec("db"),
            spec("web", replicas=5),
            spec("app", depends_on={"db": Condition.READY}),
        )
    )
    plan = plan_reload(old, new)
    assert plan.changed == ["web", "app"]
    assert plan.scaled == ["web"] and plan.respecified == ["app"]


def test_replicas_and_more_is_a_change_and_so_is_becoming_a_group() -> None:
    old = Config(processes=(spec("web", replicas=2), spec("one")))
    new = Config(processes=(spec("web", replicas=3, env={"A": "b"}), spec("one", replicas=2)))
    plan = plan_reload(old, new)
    assert plan.changed == ["web", "one"] and plan.scaled == [] and plan.respecified == []


def test_an_api_change_is_a_warning_and_logs_are_no_process_change() -> None:
    old = Config(processes=(spec("a"),), api=ApiSettings(listen="127.0.0.1:1"))
    new = Config(
        processes=(spec("a"),),
        api=ApiSettings(listen="127.0.0.1:2"),
        logs=LogSettings(buffer_lines=10),
    )
    plan = plan_reload(old, new)
    assert plan.unchanged == ["a"]
    assert plan.warnings == ["api changed: it takes effect at the next start of processman run"]
