"""SPEC §8's dependencies over a FakeSpawner and FakeClock: who starts when, who waits
for what, and the order of stops."""

from __future__ import annotations

import anyio
import pytest

from processman import ProcessManager, Status
from processman.domain.errors import SpawnError
from processman.domain.model import Condition, Config, ProcessSpec, RestartPolicy
from tests.fakes import FakeClock, FakeProcess, FakeSpawner, RecordingSink

pytestmark = pytest.mark.anyio


def proc(process_id: str, **values: object) -> ProcessSpec:
    return ProcessSpec(id=process_id, cwd="/", command=(process_id,), **values)  # type: ignore[arg-type]


def manager(*specs: ProcessSpec, spawner: FakeSpawner) -> ProcessManager:
    return ProcessManager(
        Config(processes=specs),
        spawner=spawner,
        clock=FakeClock(),
        log_sinks=[RecordingSink()],
        environ={},
    )


def spawned(spawner: FakeSpawner) -> list[str]:
    return [request.argv[0] for request in spawner.requests]


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_a_dependent_starts_once_its_dependency_runs_and_one_without_starts_at_once() -> None:
    spawner = FakeSpawner()
    specs = (proc("app", depends_on={"db": Condition.STARTED}), proc("db"), proc("lone"))
    async with manager(*specs, spawner=spawner) as m:
        await settle()
        assert [s.status for s in m.list()] == ["running"] * 3
        assert spawned(spawner).index("db") < spawned(spawner).index("app")


async def test_a_dependency_that_is_not_autostart_is_started_with_its_dependent() -> None:
    spawner = FakeSpawner()
    async with manager(
        proc("app", depends_on={"db": Condition.READY}),
        proc("db", autostart=False),
        spawner=spawner,
    ) as m:
        await settle()
        assert m.status("db").status == "running" and m.status("app").status == "running"


async def test_waiting_says_for_what() -> None:
    def refuse_db(request: object) -> None:
        if request.argv[0] == "db":  # type: ignore[attr-defined]
            raise SpawnError("db", "not found on PATH")

    spawner = FakeSpawner(behaviour=refuse_db)
    async with manager(
        proc("app", depends_on={"db": Condition.READY}), proc("db"), spawner=spawner
    ) as m:
        await settle()
        app = m.status("app")
        assert app.status is Status.WAITING and app.pid is None
        assert app.last_error == "waiting for db (backoff: cannot start db: not found on PATH)"
        stopped = await m.stop("app")
        assert stopped.status == "stopped" and stopped.last_error == ""


async def test_succeeded_and_a_failed_migration() -> None:
    spawner = FakeSpawner()
    specs = (
        proc("db"),
        proc("migrate", restart=RestartPolicy.NEVER, depends_on={"db": Condition.READY}),
        proc("app", depends_on={"migrate": Condition.SUCCEEDED}),
    )
    async with manager(*specs, spawner=spawner) as m:
        await settle()
        migrate = next(p for p in spawner.processes if p.request.argv[0] == "migrate")
        assert m.status("app").status is Status.WAITING
        migrate.exit(1)
        await settle()
        assert m.status("migrate").status == "exited"
        assert m.status("app").last_error == (
            "waiting for migrate to be succeeded (exited with code 1: exited with code 1)"
        )
        await m.start("migrate")  # the fix
        again = spawner.processes[-1]
        assert again.request.argv[0] == "migrate"
        again.exit(0)
        await settle()
        assert m.status("app").status == "running" and m.status("app").last_error == ""
        # start app again later: the succeeded migration is not run again
        await m.stop("app")
        before = len(spawner.requests)
        await m.start("app")
        assert spawned(spawner)[before:] == ["app"]


async def test_start_pulls_in_stopped_dependencies_transitively() -> None:
    spawner = FakeSpawner()
    specs = (
        proc("db", autostart=False),
        proc("cache", autostart=False),
        proc(
            "api", autostart=False, depends_on={"db": Condition.READY, "cache": Condition.STARTED}
        ),
        proc("web", autostart=False, depends_on={"api": Condition.READY}),
    )
    async with manager(*specs, spawner=spawner) as m:
        assert spawned(spawner) == []
        await m.start("web")
        await settle()
        assert spawned(spawner) == ["db", "cache", "api", "web"]
        assert all(s.status == "running" for s in m.list())


async def test_stop_and_restart_propagate_to_dependents_and_shutdown_stops_them_first() -> None:
    order: list[str] = []

    async def record(process: FakeProcess) -> None:
        order.append(process.request.argv[0])

    spawner = FakeSpawner(on_stop=record)
    specs = (
        proc("db"),
        proc("api", depends_on={"db": Condition.READY}),
        proc("worker", depends_on={"api": Condition.STARTED}),
        proc("lone"),
    )
    async with manager(*specs, spawner=spawner) as m:
        await settle()
        await m.stop("db")
        assert order == ["worker", "api", "db"]
        assert [s.status for s in m.list()] == ["stopped", "stopped", "stopped", "running"]
        await m.start("worker")  # pulls api and db in
        await settle()
        order.clear()
        restarted = await m.restart("db")
        await settle()
        assert order == ["worker", "api", "db"]
        assert restarted.status == "running"
        assert [s.status for s in m.list()] == ["running"] * 4  # started again after db
        order.clear()
    assert order.index("worker") < order.index("api") < order.index("db")
    assert order.index("lone") < order.index("api")  # in the first layer, with worker
