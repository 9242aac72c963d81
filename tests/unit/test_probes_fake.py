"""Readiness and health (SPEC §8) over a FakeSpawner, FakeProber and FakeClock: when each
try comes, what a failed probe does, and what a dependent waits for."""

from __future__ import annotations

import anyio
import pytest

from processman import NotReadyError, ProcessManager, Status, UnknownProcessError
from processman.domain.model import Condition, Config, Probe, ProbeKind, ProcessSpec, RestartPolicy
from tests.fakes import FakeClock, FakeProber, FakeSpawner, RecordingSink

pytestmark = pytest.mark.anyio

TCP = Probe(kind=ProbeKind.TCP, target="127.0.0.1:5432")


def proc(process_id: str, **values: object) -> ProcessSpec:
    return ProcessSpec(id=process_id, cwd="/", command=(process_id,), backoff=1.0, **values)  # type: ignore[arg-type]


def manager(
    *specs: ProcessSpec, spawner: FakeSpawner, clock: FakeClock, prober: FakeProber
) -> ProcessManager:
    return ProcessManager(
        Config(processes=specs),
        spawner=spawner,
        clock=clock,
        prober=prober,
        log_sinks=[RecordingSink()],
        environ={},
    )


async def test_ready_tries_come_quickly_at_first_then_at_the_period() -> None:
    clock = FakeClock()
    answers = iter(["connection refused"] * 7 + [None])
    prober = FakeProber(clock, lambda probe: next(answers))
    async with manager(
        proc("db", ready=TCP), spawner=FakeSpawner(), clock=clock, prober=prober
    ) as m:
        assert m.status("db").status == "running" and not m.status("db").ready
        await anyio.wait_all_tasks_blocked()  # the probe task has begun
        for _ in range(40):
            await clock.advance(0.05)
        # 50 ms, then doubling (100, 200, 400, 800 ms) up to the 1 s period
        assert [round(t, 2) for t, _ in prober.tries] == [0.05, 0.15, 0.35, 0.75, 1.55]
        while len(prober.tries) < 8:
            await clock.advance(0.05)
        assert [round(t, 2) for t, _ in prober.tries][5:] == [2.55, 3.55, 4.55]
        assert m.status("db").ready
        status = m.status("db")
        assert status.status == "running" and status.last_error == ""


async def test_a_process_never_ready_is_stopped_after_ready_timeout_and_backs_off() -> None:
    clock = FakeClock()
    prober = FakeProber(clock, lambda probe: "connection refused")
    spawner = FakeSpawner()
    spec = proc("db", ready=TCP, ready_timeout=3.0)
    async with manager(spec, spawner=spawner, clock=clock, prober=prober) as m:
        await anyio.wait_all_tasks_blocked()  # the probe task has begun
        first = spawner.last
        while m.status("db").status == "running":
            await clock.advance(0.05)
        status = m.status("db")
        assert clock.now == pytest.approx(3.0, abs=0.06)
        assert status.status is Status.BACKOFF
        assert status.last_error == "not ready after 3s: connection refused"
        assert first.stop_calls == [("SIGTERM", 10.0)] and first.code is not None
        tries = len(prober.tries)
        await clock.advance(1.0)  # the backoff: a new instance, probed anew
        assert m.status("db").status == "running" and spawner.last is not first
        await clock.advance(0.05)
        assert len(prober.tries) == tries + 1


async def test_an_unhealthy_process_is_restarted_after_failures_in_a_row() -> None:
    clock = FakeClock()
    healthy = {"now": True}
    prober = FakeProber(clock, lambda probe: None if healthy["now"] else "GET http://x/h: 503")
    health = Probe(kind=ProbeKind.HTTP, target="http://x/h", period=10.0, failures=3)
    spawner = FakeSpawner()
    async with manager(
        proc("web", health=health), spawner=spawner, clock=clock, prober=prober
    ) as m:
        await anyio.wait_all_tasks_blocked()  # the probe task has begun
        first = spawner.last
        await clock.advance(10.0)
        await clock.advance(10.0)
        assert [t for t, _ in prober.tries] == [10.0, 20.0]
        healthy["now"] = False
        await clock.advance(10.0)
        await clock.advance(10.0)
        healthy["now"] = True
        await clock.advance(10.0)  # a pass resets the count
        healthy["now"] = False
        for _ in range(2):
            await clock.advance(10.0)
        assert m.status("web").status == "running"
        await clock.advance(10.0)  # the third failure in a row
        status = m.status("web")
        assert status.status is Status.BACKOFF
        assert status.last_error == "health check failed 3 times: GET http://x/h: 503"
        assert first.code is not None and first not in spawner.alive


async def test_a_dependent_waits_until_its_dependency_is_ready() -> None:
    clock = FakeClock()
    ready = {"db": False}
    prober = FakeProber(clock, lambda probe: None if ready["db"] else "connection refused")
    spawner = FakeSpawner()
    specs = (proc("db", ready=TCP), proc("app", depends_on={"db": Condition.READY}), proc("cache"))
    async with manager(*specs, spawner=spawner, clock=clock, prober=prober) as m:
        await anyio.wait_all_tasks_blocked()  # the probe task has begun
        assert m.status("app").status is Status.WAITING
        assert m.status("app").last_error == "waiting for db (running, not ready)"
        assert m.status("cache").status == "running"  # no dependency: at once
        await clock.advance(0.05)
        assert m.status("app").status is Status.WAITING
        ready["db"] = True
        await clock.advance(0.1)
        assert m.status("db").ready
        assert m.status("app").status == "running"  # within the same tick


async def test_a_log_line_makes_it_ready() -> None:
    clock = FakeClock()
    prober = FakeProber(clock, lambda probe: None)
    spawner = FakeSpawner()
    spec = proc("api", ready=Probe(kind=ProbeKind.LOG_LINE, target=r"listening on :\d+"))
    async with manager(spec, spawner=spawner, clock=clock, prober=prober) as m:
        spawner.last.stdout.write(b"starting\n")
        await anyio.wait_all_tasks_blocked()
        assert not m.status("api").ready
        spawner.last.stderr.write(b"INFO listening on :8000\n")
        await anyio.wait_all_tasks_blocked()
        assert m.status("api").ready
        assert prober.tries == []


async def test_wait_ready_returns_once_ready_and_refuses_what_gave_up() -> None:
    clock = FakeClock()
    answers = {"db": "connection refused"}
    prober = FakeProber(clock, lambda probe: answers["db"])
    spawner = FakeSpawner()
    specs = (proc("db", ready=TCP), proc("plain"), proc("job", restart=RestartPolicy.NEVER))
    async with manager(*specs, spawner=spawner, clock=clock, prober=prober) as m:
        await anyio.wait_all_tasks_blocked()
        (plain,) = await m.wait_ready("plain")  # no probe: running is ready
        assert plain.ready
        got: list[object] = []

        async def wait() -> None:
            got.extend(await m.wait_ready("db", "plain"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await clock.advance(0.05)
            assert got == []
            answers["db"] = None
            await clock.advance(0.1)
        assert [s.id for s in got] == ["db", "plain"]  # type: ignore[attr-defined]
        job = next(p for p in spawner.processes if p.request.argv[0] == "job")
        job.exit(2)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(NotReadyError) as info:
            await m.wait_ready("job")
        assert str(info.value) == "job is not ready: exited: exited with code 2"
        with pytest.raises(UnknownProcessError):
            await m.wait_ready("ghost")
        await m.stop("db")
        await m.start("db")
        answers["db"] = "connection refused"
        with pytest.raises(NotReadyError) as info:
            await m.wait_ready("db", timeout=0)
        assert str(info.value) == "db is not ready after 0s: running, not ready"


async def test_no_probe_runs_while_the_instance_is_not_running() -> None:
    clock = FakeClock()
    prober = FakeProber(clock, lambda probe: None)
    health = Probe(kind=ProbeKind.TCP, target="127.0.0.1:1", period=1.0)
    spawner = FakeSpawner()
    async with manager(
        proc("web", health=health), spawner=spawner, clock=clock, prober=prober
    ) as m:
        await anyio.wait_all_tasks_blocked()
        await clock.advance(1.0)
        assert len(prober.tries) == 1
        await m.stop("web")
        for _ in range(5):
            await clock.advance(1.0)
        assert len(prober.tries) == 1  # stopped: no try
        await m.start("web")
        await anyio.wait_all_tasks_blocked()
        spawner.last.exit(1)  # ended by itself: backoff, no try either
        await anyio.wait_all_tasks_blocked()
        assert m.status("web").status is Status.BACKOFF
        await clock.advance(0.5)
        assert len(prober.tries) == 1
