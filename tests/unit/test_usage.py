"""SPEC §11 in the domain and over fakes: CPU percent from readings, the one-second cache,
sizes as people write them, and ``maxMemory`` checked every second (FakeClock)."""

from __future__ import annotations

import anyio
import pytest

from processman import ProcessManager, Status
from processman.domain.model import Config, ProcessSpec
from processman.domain.usage import (
    Reading,
    describe_size,
    due,
    human_size,
    memory_error,
    next_reading,
)
from tests.fakes import FakeClock, FakeSpawner, RecordingSink

MB = 1000**2
MIB = 1024**2


def test_cpu_percent_is_over_the_time_since_the_previous_reading() -> None:
    first = next_reading(None, now=12.0, started_at=10.0, cpu_seconds=1.0, memory=5)
    assert first == Reading(12.0, 1.0, 5, 50.0)  # since the start: 1 s of CPU in 2 s
    second = next_reading(first, now=13.0, started_at=10.0, cpu_seconds=2.0, memory=6)
    assert second.cpu_percent == 100.0  # one core for the last second
    both = next_reading(second, now=13.5, started_at=10.0, cpu_seconds=3.0, memory=6)
    assert both.cpu_percent == 200.0  # two cores
    # a counter that went back (a process of the tree ended) is no negative use
    assert next_reading(both, 14.5, 10.0, 1.0, 6).cpu_percent == 0.0
    assert next_reading(None, 10.0, 10.0, 0.0, 6).cpu_percent == 0.0  # no time yet


def test_a_reading_is_kept_for_one_second() -> None:
    reading = Reading(at=5.0, cpu_seconds=0, memory_bytes=0, cpu_percent=0)
    assert due(None, 0.0)
    assert not due(reading, 5.99)
    assert due(reading, 6.0)


@pytest.mark.parametrize(
    ("size", "text"),
    [(512 * MB, "512 MB"), (MIB * 1024, "1 GiB"), (300 * 1024, "300 KiB"), (1500, "1500 B")],
)
def test_sizes_are_said_as_they_are_written(size: int, text: str) -> None:
    assert describe_size(size) == text


def test_human_sizes() -> None:
    assert [human_size(n) for n in (812, 21 * MIB + MIB // 2, 3 * 1024 * MIB)] == [
        "812 B",
        "21.5 MiB",
        "3.0 GiB",
    ]
    assert memory_error(512 * MB) == "memory above 512 MB: killed"


def proc(process_id: str, **values: object) -> ProcessSpec:
    return ProcessSpec(id=process_id, cwd="/", command=(process_id,), backoff=5.0, **values)  # type: ignore[arg-type]


def manager(*specs: ProcessSpec, spawner: FakeSpawner, clock: FakeClock) -> ProcessManager:
    return ProcessManager(
        Config(processes=specs), spawner=spawner, clock=clock, log_sinks=[RecordingSink()]
    )


@pytest.mark.anyio
async def test_max_memory_is_checked_every_second_and_kills_the_tree() -> None:
    clock, spawner = FakeClock(), FakeSpawner()
    specs = (proc("hog", max_memory=512 * MB), proc("calm"))
    async with manager(*specs, spawner=spawner, clock=clock) as m:
        by_id = {p.request.process_id: p for p in spawner.processes}
        hog, calm = by_id["hog"], by_id["calm"]
        assert hog.request.max_memory == 512 * MB  # the spawner may have the kernel do it
        assert calm.request.max_memory is None
        hog.measured = (0.5, 400 * MB)
        calm.measured = (0.1, 900 * MB)  # no limit: never killed
        await anyio.wait_all_tasks_blocked()
        await clock.advance(1.0)
        assert m.status("hog").status is Status.RUNNING and not hog.stop_calls
        assert m.status("hog").memory_bytes == 400 * MB
        hog.measured = (0.6, 513 * MB)
        await clock.advance(1.0)
        status = m.status("hog")
        assert (status.status, status.last_error) == (Status.BACKOFF, "memory above 512 MB: killed")
        assert hog.stop_calls == [("SIGKILL", 0.0)]
        assert m.status("calm").status is Status.RUNNING and not calm.stop_calls


@pytest.mark.anyio
async def test_the_kernels_kill_at_its_limit_is_reported_as_the_memory_error() -> None:
    clock, spawner = FakeClock(), FakeSpawner()
    async with manager(proc("hog", max_memory=MIB * 1024), spawner=spawner, clock=clock) as m:
        [hog] = spawner.processes
        hog.limits_memory = True  # as a cgroup with memory.max would
        hog.oom_killed = True
        hog.exit(-9)
        await anyio.wait_all_tasks_blocked()
        status = m.status("hog")
        assert (status.status, status.last_error) == (Status.BACKOFF, "memory above 1 GiB: killed")


@pytest.mark.anyio
async def test_no_reading_is_taken_unless_asked() -> None:
    clock, spawner = FakeClock(), FakeSpawner()
    async with manager(proc("a"), spawner=spawner, clock=clock) as m:
        [a] = spawner.processes
        calls = 0
        measure = a.usage

        def counted():  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return measure()

        a.usage = counted  # type: ignore[method-assign]
        for _ in range(5):
            await clock.advance(1.0)
        assert calls == 0  # an idle manager measures nothing
        m.status("a")
        m.status("a")
        assert calls == 1  # the second within the second: cached
        await clock.advance(1.0)
        m.list()
        assert calls == 2
