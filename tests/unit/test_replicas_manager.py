"""Replicas, group commands, scaling and sockets (SPEC §9) over a FakeSpawner."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from dependency_injector import providers

from processman import ProcessManager, Status, UnknownProcessError
from processman.app.container import Container
from processman.domain.errors import SpawnError
from processman.domain.model import Condition, Config, ProcessSpec
from processman.domain.replicas import deferred
from tests.fakes import FakeClock, FakeProcess, FakeSpawner, FakeWatcher, RecordingSink

if TYPE_CHECKING:
    from processman.domain.ports import SpawnRequest

pytestmark = pytest.mark.anyio


class FakeListeners:
    """``Listeners`` that hands out made-up fds and records what is open."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.opened: list[str] = []
        self.open_fds: dict[int, str] = {}
        self._next = 100

    def open(self, address: str) -> int:
        if address == self.refuse:
            raise SpawnError(address, "cannot listen: address already in use")
        self._next += 1
        self.opened.append(address)
        self.open_fds[self._next] = address
        return self._next

    def close(self, fd: int) -> None:
        self.open_fds.pop(fd, None)

    def close_all(self) -> None:
        self.open_fds.clear()


def web(**values: object) -> ProcessSpec:
    fields: dict[str, object] = {
        "id": "web",
        "cwd": "/",
        "command": ("serve", "--port", deferred("PORT")),
        "replicas": 3,
        "port": 8000,
    }
    fields.update(values)
    return ProcessSpec(**fields)  # type: ignore[arg-type]


def manager(
    *specs: ProcessSpec,
    spawner: FakeSpawner,
    listeners: FakeListeners | None = None,
    watcher: FakeWatcher | None = None,
) -> ProcessManager:
    container = Container()
    container.listeners.override(providers.Object(listeners or FakeListeners()))
    return ProcessManager(
        Config(processes=specs),
        spawner=spawner,
        clock=FakeClock(),
        log_sinks=[RecordingSink()],
        environ={},
        container=container,
        watcher=watcher,
    )


def alive_ids(spawner: FakeSpawner) -> set[str]:
    return {p.request.process_id for p in spawner.alive}


async def test_each_replica_is_an_instance_of_its_own() -> None:
    spawner = FakeSpawner()
    async with manager(web(), spawner=spawner) as m:
        statuses = m.list()
        assert [(s.id, s.group, s.replica) for s in statuses] == [
            ("web-0", "web", 0),
            ("web-1", "web", 1),
            ("web-2", "web", 2),
        ]
        assert len({s.pid for s in statuses}) == 3
        assert m.group("web") == statuses and m.is_group("web")
        by_id = {r.process_id: r for r in spawner.requests}
        assert by_id["web-2"].argv == ("serve", "--port", "8002")
        env = by_id["web-2"].env
        assert (env["PROCESSMAN_ID"], env["PROCESSMAN_GROUP"], env["PROCESSMAN_REPLICA"]) == (
            "web-2",
            "web",
            "2",
        )
        assert env["PORT"] == "8002"
        with pytest.raises(UnknownProcessError):
            m.status("web")  # a status is an instance's: the group's is m.group
        assert [spec.id for spec in m.config.processes] == ["web"]


async def test_start_and_stop_of_a_group_act_on_every_replica_at_once() -> None:
    stopping: list[str] = []
    all_stopping = anyio.Event()

    async def slow(process: FakeProcess) -> None:
        stopping.append(process.request.process_id)
        if len(stopping) == 3:
            all_stopping.set()
        with anyio.fail_after(5):
            await all_stopping.wait()  # each waits for the others: only parallel stops end

    spawner = FakeSpawner(on_stop=slow)
    async with manager(web(), spawner=spawner) as m:
        stopped = await m.stop("web")
        assert isinstance(stopped, list) and {s.status for s in stopped} == {Status.STOPPED}
        assert not spawner.alive
        started = await m.start("web")
        assert isinstance(started, list) and [s.status for s in started] == [Status.RUNNING] * 3
        stopping.clear()
        all_stopping = anyio.Event()


async def test_a_group_restarts_rolling_one_replica_at_a_time() -> None:
    log: list[tuple[str, str, int]] = []  # (what, id, how many replicas were up)

    async def on_stop(process: FakeProcess) -> None:
        log.append(("stop", process.request.process_id, len(spawner.alive)))

    def on_spawn(request: SpawnRequest) -> None:
        log.append(("spawn", request.process_id, len(spawner.alive)))

    spawner = FakeSpawner(behaviour=on_spawn, on_stop=on_stop)
    async with manager(web(), spawner=spawner) as m:
        first = {s.id: s.pid for s in m.list()}
        log.clear()
        restarted = await m.restart("web")
        assert isinstance(restarted, list)
        assert [(what, pid) for what, pid, _ in log] == [
            ("stop", "web-0"),
            ("spawn", "web-0"),
            ("stop", "web-1"),
            ("spawn", "web-1"),
            ("stop", "web-2"),
            ("spawn", "web-2"),
        ]
        # when each is stopped, the other two run (N - 1 serving)
        assert [up for what, _, up in log if what == "stop"] == [3, 3, 3]
        assert all(s.pid != first[s.id] and s.status is Status.RUNNING for s in restarted)


async def test_a_new_instance_that_fails_ends_the_roll_and_the_rest_serve_on() -> None:
    failing = {"on": False}

    def behaviour(request: SpawnRequest) -> None:
        if failing["on"] and request.process_id == "web-1":
            raise SpawnError("serve", "not found on PATH")

    spawner = FakeSpawner(behaviour=behaviour)
    async with manager(web(backoff=5.0, max_backoff=5.0), spawner=spawner) as m:
        before = {s.id: s.pid for s in m.list()}
        failing["on"] = True
        after = {s.id: s for s in await m.restart("web")}  # type: ignore[union-attr]
        assert after["web-0"].pid != before["web-0"]
        assert after["web-1"].status is Status.BACKOFF
        assert after["web-2"].pid == before["web-2"]  # never stopped


async def test_scale_adds_and_removes_the_highest_numbered() -> None:
    spawner = FakeSpawner()
    async with manager(web(), spawner=spawner) as m:
        async with m.events() as stream:
            grown = await m.scale("web", 5)
            assert [s.id for s in grown] == ["web-0", "web-1", "web-2", "web-3", "web-4"]
            assert all(s.status is Status.RUNNING for s in grown)
            assert {r.process_id: r.argv[-1] for r in spawner.requests}["web-4"] == "8004"
            old = {p for p in spawner.alive if p.request.process_id in ("web-1", "web-4")}
            shrunk = await m.scale("web", 1)
            assert [s.id for s in shrunk] == ["web-0"] and alive_ids(spawner) == {"web-0"}
            assert all(p.code is not None for p in old)  # their trees are gone
            with pytest.raises(UnknownProcessError):
                m.status("web-3")
            assert m.config.processes[0].replicas == 1
            removed = set()
            with anyio.fail_after(5):
                async for event in stream:
                    if event.kind == "removed":
                        removed.add(event.process_id)
                    if len(removed) == 4:
                        break
            assert removed == {"web-1", "web-2", "web-3", "web-4"}
        assert await m.scale("web", 0) == [] and not spawner.alive
        assert [s.id for s in await m.scale("web", 2)] == ["web-0", "web-1"]


async def test_scale_refuses_what_is_not_a_group_or_not_a_count() -> None:
    spawner = FakeSpawner()
    single = ProcessSpec(id="db", cwd="/", command=("db",))
    async with manager(web(), single, spawner=spawner) as m:
        with pytest.raises(ValueError, match="set replicas in the config to scale 'db'"):
            await m.scale("db", 2)
        for bad in (-1, 1.5, True):
            with pytest.raises(ValueError, match="replicas must be an integer of 0 or more"):
                await m.scale("web", bad)  # type: ignore[arg-type]
        with pytest.raises(UnknownProcessError):
            await m.scale("nope", 1)
        assert not m.is_group("db") and m.group("db") == [m.status("db")]


async def test_a_dependent_of_a_group_waits_for_every_replica() -> None:
    blocked = {"web-2"}

    def behaviour(request: SpawnRequest) -> None:
        if request.process_id in blocked:
            raise SpawnError("serve", "not yet")

    spawner = FakeSpawner(behaviour=behaviour)
    app = ProcessSpec(id="app", cwd="/", command=("app",), depends_on={"web": Condition.STARTED})
    async with manager(web(backoff=5.0, max_backoff=5.0), app, spawner=spawner) as m:
        await anyio.wait_all_tasks_blocked()  # the waiting one is checked again
        status = m.status("app")
        assert status.status is Status.WAITING
        assert status.last_error.startswith("waiting for web-2 to be started (backoff")
        blocked.clear()
        await m.start("web-2")
        await m.wait_for_status("app", Status.RUNNING)


async def test_a_dependent_of_a_group_scaled_to_none_starts_at_once() -> None:
    spawner = FakeSpawner()
    app = ProcessSpec(id="app", cwd="/", command=("app",), depends_on={"web": Condition.READY})
    async with manager(web(replicas=0), app, spawner=spawner) as m:
        assert m.status("app").status is Status.RUNNING and m.group("web") == []


async def test_sockets_are_opened_once_and_passed_to_every_replica() -> None:
    spawner, listeners = FakeSpawner(), FakeListeners()
    spec = web(sockets=("127.0.0.1:9000", "unix:/run/web.sock"))
    async with manager(spec, spawner=spawner, listeners=listeners) as m:
        await m.restart("web")
        await m.scale("web", 4)
        assert listeners.opened == ["127.0.0.1:9000", "unix:/run/web.sock"]
        requests = spawner.requests
        assert len({r.pass_fds for r in requests}) == 1 and len(requests[0].pass_fds) == 2
        for request in requests:
            assert request.env["LISTEN_FDS"] == "2"
            assert request.env["LISTEN_FDNAMES"] == "127.0.0.1_9000:unix_/run/web.sock"
            assert request.pid_env == ("LISTEN_PID",)
    assert listeners.open_fds == {}  # closed once every child is gone


async def test_an_address_that_cannot_be_bound_is_the_start_error() -> None:
    spawner, listeners = FakeSpawner(), FakeListeners(refuse="unix:/run/web.sock")
    spec = web(sockets=("127.0.0.1:9000", "unix:/run/web.sock"), replicas=None, port=None)
    async with manager(spec, spawner=spawner, listeners=listeners) as m:
        status = m.status("web")
        assert status.status is Status.BACKOFF
        assert status.last_error == (
            "cannot start unix:/run/web.sock: cannot listen: address already in use"
        )
        assert listeners.open_fds == {} and not spawner.requests  # the first one closed too


async def test_a_groups_logs_are_merged_and_name_each_replica() -> None:
    spawner = FakeSpawner()
    async with manager(web(replicas=2), spawner=spawner) as m:
        with m.subscribe("web") as subscription:
            for process in list(spawner.alive):
                process.stdout.write(f"hello from {process.request.process_id}\n".encode())
            got: list[tuple[str | None, str]] = []
            with anyio.fail_after(5):
                while len(got) < 2:
                    entries, _ = await subscription.receive()
                    got += [(e.process, e.line) for e in entries]
        assert sorted(got) == [("web-0", "hello from web-0"), ("web-1", "hello from web-1")]
        merged = m.logs("web")
        assert sorted((e.process, e.line) for e in merged) == sorted(got)
        assert [e.process for e in m.logs("web-0")] == [None]  # one replica's: unnamed


async def test_a_file_change_in_development_mode_restarts_every_replica_at_once() -> None:
    stopping: set[str] = set()
    together = anyio.Event()

    async def on_stop(process: FakeProcess) -> None:
        stopping.add(process.request.process_id)
        if len(stopping) == 3:
            together.set()
        with anyio.fail_after(5):
            await together.wait()  # ends only if all three are stopped at once

    spawner, watcher = FakeSpawner(on_stop=on_stop), FakeWatcher()
    spec = web(dev_mode=True, watch_paths=("/src",), watch_debounce=0.01)
    async with manager(spec, spawner=spawner, watcher=watcher) as m:
        await anyio.wait_all_tasks_blocked()
        before = {s.id: s.pid for s in m.list()}
        async with m.events() as stream:
            watcher.emit("/src/app.py")
            with anyio.fail_after(5):
                async for _ in stream:
                    if all(s.restart_count == 1 and s.status is Status.RUNNING for s in m.list()):
                        break
        assert all(s.pid != before[s.id] for s in m.list())
        assert stopping == {"web-0", "web-1", "web-2"}


# --- reload (SPEC §10) ---------------------------------------------------------------


def single(process_id: str, **values: object) -> ProcessSpec:
    return ProcessSpec(id=process_id, cwd="/", command=(process_id,), **values)  # type: ignore[arg-type]


async def test_a_reload_touches_only_what_changed() -> None:
    spawner = FakeSpawner()
    old = (single("keep"), single("change"), single("idle", autostart=False), single("gone"))
    async with manager(*old, spawner=spawner) as m:
        await m.stop("gone")
        kept = m.status("keep")
        changed_pid = m.status("change").pid
        gone_process = next(p for p in spawner.processes if p.request.process_id == "gone")
        new = Config(
            processes=(
                single("added"),
                single("keep"),
                single("change", env={"V": "2"}),
                single("idle", autostart=False, env={"V": "2"}),
            )
        )
        plan = await m.reload(new)
        assert (plan.added, plan.removed, plan.changed, plan.unchanged) == (
            ["added"],
            ["gone"],
            ["change", "idle"],
            ["keep"],
        )
        assert m.status("keep").pid == kept.pid and m.status("keep").start_time == kept.start_time
        assert m.status("change").pid != changed_pid
        assert spawner.last.request.process_id in ("added", "change")
        assert {r.env.get("V") for r in spawner.requests if r.process_id == "change"} == {
            None,
            "2",
        }
        assert m.status("idle").status is Status.STOPPED  # changed, not active: kept stopped
        assert m.status("added").status is Status.RUNNING
        with pytest.raises(UnknownProcessError):
            m.status("gone")
        assert gone_process.code is not None
        assert [s.id for s in m.list()] == ["added", "keep", "change", "idle"]
        assert [s.id for s in m.config.processes] == ["added", "keep", "change", "idle"]
        await m.start("idle")
        assert spawner.last.request.env["V"] == "2"  # the new spec at its next start


async def test_a_reload_scales_a_replicas_change_and_rolls_a_changed_group() -> None:
    spawner = FakeSpawner()
    async with manager(web(replicas=2), spawner=spawner) as m:
        before = {s.id: s.pid for s in m.list()}
        plan = await m.reload(Config(processes=(web(replicas=3),)))
        assert plan.changed == ["web"] and plan.scaled == ["web"]
        assert [s.id for s in m.list()] == ["web-0", "web-1", "web-2"]
        assert {s.id: s.pid for s in m.list()[:2]} == before  # scaled, not restarted
        plan = await m.reload(Config(processes=(web(replicas=1, env={"V": "2"}),)))
        assert plan.changed == ["web"] and plan.scaled == []
        assert [s.id for s in m.list()] == ["web-0"]
        assert spawner.last.request.env["V"] == "2" and m.status("web-0").pid != before["web-0"]


async def test_a_depends_on_change_alone_restarts_nothing() -> None:
    spawner = FakeSpawner()
    async with manager(single("db"), single("app"), spawner=spawner) as m:
        pid = m.status("app").pid
        new = Config(processes=(single("db"), single("app", depends_on={"db": Condition.READY})))
        plan = await m.reload(new)
        assert plan.respecified == ["app"] and m.status("app").pid == pid
        await m.stop("db")  # the new dependency is in force: its dependent stops first
        assert m.status("app").status is Status.STOPPED
