"""Replicas as pure functions of a group's spec (SPEC §9)."""

from __future__ import annotations

from processman.domain.model import Probe, ProbeKind, ProcessSpec
from processman.domain.replicas import deferred, instance, instances, member_ids

PORT, ID, REPLICA = deferred("PORT"), deferred("PROCESSMAN_ID"), deferred("PROCESSMAN_REPLICA")


def web(**values: object) -> ProcessSpec:
    fields: dict[str, object] = {
        "id": "web",
        "cwd": "/srv",
        "command": ("uvicorn", "app:app", "--port", PORT),
        "env": {"NAME": f"{ID}/{REPLICA}", "PLAIN": "x"},
        "replicas": 3,
        "port": 8000,
        "ready": Probe(kind=ProbeKind.HTTP, target=f"http://127.0.0.1:{PORT}/health"),
        "health": Probe(kind=ProbeKind.EXEC, command=("check", ID)),
        "watch_paths": (f"/srv/{REPLICA}",),
    }
    fields.update(values)
    return ProcessSpec(**fields)  # type: ignore[arg-type]


def test_each_replica_has_its_id_index_and_port_filled_in() -> None:
    second = instance(web(), 1)
    assert (second.id, second.group, second.replica) == ("web-1", "web", 1)
    assert second.command == ("uvicorn", "app:app", "--port", "8001")
    assert second.env == {"NAME": "web-1/1", "PLAIN": "x"}
    assert second.ready is not None and second.ready.target == "http://127.0.0.1:8001/health"
    assert second.health is not None and second.health.command == ("check", "web-1")
    assert second.watch_paths == ("/srv/1",)


def test_a_group_has_its_replicas_and_a_single_process_is_itself() -> None:
    assert [s.id for s in instances(web())] == ["web-0", "web-1", "web-2"]
    assert [s.id for s in instances(web(), 5)][-1] == "web-4"
    assert instances(web(replicas=0)) == [] and member_ids(web(replicas=0)) == []
    single = ProcessSpec(id="db", cwd="/", command=("postgres",))
    assert instances(single) == [single] and member_ids(single) == ["db"]
    assert single.group is None and single.replica is None


def test_a_replica_made_later_is_the_same_as_one_made_at_load() -> None:
    assert instances(web(), 10)[2] == instances(web())[2]
