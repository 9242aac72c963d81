"""ProcessManager over a FakeSpawner and FakeClock: exact backoff timing, no real sleeps."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import pytest

from processman import NotRunningError, ProcessManager, Status, UnknownProcessError
from processman.domain.errors import SpawnError
from processman.domain.model import Config, ProcessSpec
from tests.fakes import FakeClock, FakeProcess, FakeSpawner, RecordingSink

if TYPE_CHECKING:
    from processman.domain.ports import SpawnRequest

pytestmark = pytest.mark.anyio


def config(**overrides: object) -> Config:
    values: dict[str, object] = {
        "id": "p",
        "cwd": "/",
        "command": ("prog",),
        "backoff": 1.0,
        "max_backoff": 4.0,
    }
    values.update(overrides)
    return Config(processes=(ProcessSpec(**values),))  # type: ignore[arg-type]


def manager(
    cfg: Config, spawner: FakeSpawner, clock: FakeClock, sink: RecordingSink | None = None
) -> ProcessManager:
    return ProcessManager(
        cfg, spawner=spawner, clock=clock, log_sinks=[sink or RecordingSink()], environ={}
    )


async def test_backoff_delays_are_exact_with_a_fake_clock() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    async with manager(config(max_retries=4), spawner, clock) as m:
        assert m.status("p").status == "running"
        for expected_delay in (1.0, 2.0, 4.0, 4.0):  # capped at maxBackoff
            spawner.last.exit(1)
            await anyio.wait_all_tasks_blocked()
            assert m.status("p").status is Status.BACKOFF
            assert clock.next_deadline == pytest.approx(clock.now + expected_delay)
            await clock.advance(expected_delay - 0.001)
            assert m.status("p").status is Status.BACKOFF
            await clock.advance(0.001)
            assert m.status("p").status is Status.RUNNING
        spawner.last.exit(1)
        await anyio.wait_all_tasks_blocked()
        status = m.status("p")
        assert status.status is Status.CRASHED
        assert status.restart_count == 4 and status.exit_code == 1
        assert len(spawner.requests) == 5


async def test_a_healthy_run_resets_the_delay() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    async with manager(config(healthy_after=10.0), spawner, clock) as m:
        spawner.last.exit(1)
        await anyio.wait_all_tasks_blocked()
        await clock.advance(1.0)
        spawner.last.exit(1)
        await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline == pytest.approx(clock.now + 2.0)
        await clock.advance(2.0)
        await clock.advance(10.0)  # a healthy run
        spawner.last.exit(0)
        await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline == pytest.approx(clock.now + 1.0)
        assert m.status("p").restart_count == 2


async def test_spawn_failures_follow_the_backoff_and_others_run_on() -> None:
    def behaviour(request: SpawnRequest) -> None:
        if request.process_id == "broken":
            raise SpawnError("missing-prog", "not found on PATH")

    spawner, clock = FakeSpawner(behaviour), FakeClock()
    cfg = Config(
        processes=(
            ProcessSpec(id="broken", cwd="/", command=("missing-prog",), max_retries=1),
            ProcessSpec(id="fine", cwd="/", command=("prog",)),
        )
    )
    async with manager(cfg, spawner, clock) as m:
        broken = m.status("broken")
        assert broken.status is Status.BACKOFF
        assert broken.last_error == "cannot start missing-prog: not found on PATH"
        assert broken.exit_code is None
        await clock.advance(1.0)
        assert m.status("broken").status is Status.CRASHED
        assert m.status("fine").status is Status.RUNNING


async def test_stop_in_backoff_cancels_the_restart_and_start_in_backoff_starts_now() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    async with manager(config(), spawner, clock) as m:
        spawner.last.exit(1)
        await anyio.wait_all_tasks_blocked()
        assert (await m.stop("p")).status is Status.STOPPED
        await clock.advance(60)
        assert m.status("p").status is Status.STOPPED and len(spawner.requests) == 1
        await m.start("p")
        spawner.last.exit(1)
        await anyio.wait_all_tasks_blocked()
        assert (await m.start("p")).status is Status.RUNNING
        await anyio.wait_all_tasks_blocked()  # let the cancelled timer unwind
        assert clock.next_deadline is None
        assert m.status("p").restart_count == 0  # explicit starts are not counted


async def test_restart_resets_k_and_stops_with_the_spec_signal() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    async with manager(config(stop_signal="SIGINT", stop_timeout=3.0), spawner, clock) as m:
        first = spawner.last
        status = await m.restart("p")
        assert status.status is Status.RUNNING and status.pid == spawner.last.pid != first.pid
        assert first.stop_calls == [("SIGINT", 3.0)]
        assert status.exit_code == -2  # died of the SIGINT, as a real child would


async def test_fifty_concurrent_commands_never_run_two_instances() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    rng = random.Random(7)
    async with manager(config(), spawner, clock) as m:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(rng.choice([m.start, m.stop, m.restart]), "p")
        assert spawner.max_alive == 1
        status = m.status("p")
        assert status.status in (Status.RUNNING, Status.STOPPED)
        assert (status.status is Status.RUNNING) == (len(spawner.alive) == 1)
        if status.status is Status.RUNNING:
            assert status.pid == next(iter(spawner.alive)).pid
    assert not spawner.alive


async def test_output_reaches_the_sinks_in_lines() -> None:
    spawner, clock, sink = FakeSpawner(), FakeClock(), RecordingSink()
    async with manager(config(), spawner, clock, sink) as m:
        spawner.last.stdout.write(b"one\ntw")
        spawner.last.stdout.write(b"o\n")
        spawner.last.stderr.write(b"oops\n")
        await anyio.wait_all_tasks_blocked()
        by_stream = {
            stream: [line for b in sink.batches if b.stream == stream for line in b.lines]
            for stream in ("stdout", "stderr")
        }
        assert by_stream == {"stdout": ["one", "two"], "stderr": ["oops"]}
        assert sorted(e.line for e in m.logs("p", 3)) == ["one", "oops", "two"]
        assert len(m.logs("p", 2)) == 2
    assert sink.closed


async def test_shutdown_stops_everything_and_unknown_ids_raise() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    cfg = Config(
        processes=tuple(ProcessSpec(id=f"p{i}", cwd="/", command=("x",)) for i in range(5))
    )
    async with manager(cfg, spawner, clock) as m:
        assert len(spawner.alive) == 5
        with pytest.raises(UnknownProcessError) as info:
            m.status("nope")
        assert isinstance(info.value, KeyError)
        with pytest.raises(KeyError):
            await m.start("nope")
    assert not spawner.alive
    assert [s.status for s in m.list()] == ["stopped"] * 5


async def test_autostart_false_stays_stopped() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    async with manager(config(autostart=False), spawner, clock) as m:
        assert m.status("p").status == "stopped" and not spawner.requests


async def test_commands_need_a_running_manager_and_never_start_after_it() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    m = manager(config(), spawner, clock)
    for query in (lambda: m.status("p"), m.list):
        with pytest.raises(NotRunningError, match="use it inside `async with`"):
            query()
    with pytest.raises(NotRunningError, match="use it inside `async with`"):
        await m.start("p")
    assert isinstance(NotRunningError("x"), RuntimeError)
    async with m:
        pass
    # what it ended with stays readable; nothing starts again (it spawned into a task
    # group that was gone, and that child outlived the manager)
    assert m.status("p").status == "stopped" and [s.status for s in m.list()] == ["stopped"]
    assert (await m.stop("p")).status == "stopped"
    for command in (m.start, m.restart):
        with pytest.raises(NotRunningError, match="has shut down"):
            await command("p")
    assert len(spawner.requests) == 1 and not spawner.alive


async def test_a_start_that_arrives_while_the_manager_shuts_down_is_refused() -> None:
    stopping, release = anyio.Event(), anyio.Event()

    async def slow_to_go(process: FakeProcess) -> None:
        stopping.set()
        await release.wait()

    spawner, clock = FakeSpawner(on_stop=slow_to_go), FakeClock()
    m = manager(config(), spawner, clock)
    refused: list[NotRunningError] = []

    async def start_during_shutdown() -> None:
        await stopping.wait()
        try:
            await m.start("p")  # waits behind the shutdown's stop
        except NotRunningError as exc:
            refused.append(exc)

    async def release_the_stop() -> None:
        await stopping.wait()
        await anyio.wait_all_tasks_blocked()  # the start is queued now
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(start_during_shutdown)
        tg.start_soon(release_the_stop)
        async with m:
            pass
    assert refused and len(spawner.requests) == 1 and not spawner.alive


async def test_a_subscription_ends_after_the_last_lines_when_the_manager_shuts_down() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    m = manager(config(), spawner, clock)
    got: list[str] = []
    ended = anyio.Event()

    async def read(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with m.subscribe("p") as subscription:
            task_status.started()
            try:
                while True:
                    entries, _ = await subscription.receive()
                    got.extend(e.line for e in entries)
            except anyio.EndOfStream:
                ended.set()

    with anyio.fail_after(5):  # (the reader used to wait forever)
        async with anyio.create_task_group() as tg, m:
            await tg.start(read)
            spawner.last.stdout.write(b"one\n")
            await anyio.wait_all_tasks_blocked()
            spawner.last.stdout.write(b"two\n")  # read while the manager shuts down
    assert got == ["one", "two"] and ended.is_set()
    with pytest.raises(NotRunningError, match="no more lines will come"):
        m.subscribe("p")
    with pytest.raises(UnknownProcessError):
        m.subscribe("nope")


async def test_kill_stopping_also_cuts_short_the_stop_of_what_an_exited_process_left() -> None:
    released = anyio.Event()

    async def stubborn(process: FakeProcess) -> None:  # goes on SIGKILL (or after 5 s)
        if process.stop_calls[-1][0] == "SIGKILL":
            released.set()
        with anyio.move_on_after(5):  # (the shutdown's wait for it is shielded)
            await released.wait()

    spawner, clock = FakeSpawner(on_stop=stubborn), FakeClock()
    async with manager(config(stop_timeout=60.0, restart="never"), spawner, clock) as m:
        spawner.last.exit(0)  # what it left behind is stopped, with its grace ...
        await anyio.wait_all_tasks_blocked()
        assert spawner.last.stop_calls == [("SIGTERM", 60.0)]
        await m.kill_stopping()  # ... until a second Ctrl-C
        await anyio.wait_all_tasks_blocked()
        assert spawner.last.stop_calls == [("SIGTERM", 60.0), ("SIGKILL", 0.0)]
        assert m.status("p").status == "exited"


# --- the manager changes while it runs, and tells what changed -----------------------


async def next_events(stream: object, count: int) -> list[tuple[str, str, str | None]]:
    got = []
    with anyio.fail_after(5):
        async for event in stream:  # type: ignore[attr-defined]
            got.append((event.kind, event.process_id, event.status and event.status.status))
            if len(got) == count:
                return got
    return got


async def test_events_are_a_snapshot_then_every_change() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    two = Config(processes=(*config().processes, *config(id="q", autostart=False).processes))
    async with manager(two, spawner, clock) as m:
        async with m.events() as stream:
            assert await next_events(stream, 2) == [
                ("status", "p", "running"),
                ("status", "q", "stopped"),
            ]
            await m.stop("p")
            assert await next_events(stream, 2) == [
                ("status", "p", "stopping"),
                ("status", "p", "stopped"),
            ]
            await m.start("q")  # starting, then running with its pid: each a change
            assert await next_events(stream, 2) == [
                ("status", "q", "starting"),
                ("status", "q", "running"),
            ]
            spawner.last.exit(1)
            await anyio.wait_all_tasks_blocked()
            ((kind, pid, status),) = await next_events(stream, 1)
            assert (kind, pid, status) == ("status", "q", "backoff")
    # after the shutdown a new reader gets the statuses as they are, then the end
    stream = m.events()
    assert await next_events(stream, 10) == [("status", "p", "stopped"), ("status", "q", "stopped")]


async def test_a_reader_still_open_at_shutdown_gets_the_last_events_then_the_end() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    got: list[tuple[str, str, str | None]] = []
    async with anyio.create_task_group() as tg:
        async with manager(config(), spawner, clock) as m:
            stream = m.events()

            async def read() -> None:
                got.extend(await next_events(stream, 100))

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
    assert got == [
        ("status", "p", "running"),
        ("status", "p", "stopping"),
        ("status", "p", "stopped"),
    ]


async def test_a_reader_that_falls_behind_gets_a_gap_then_a_fresh_snapshot() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    async with manager(config(), spawner, clock) as m:
        m._statuses._capacity = 3  # small, to fall behind quickly
        stream = m.events()  # its snapshot: one event, queued
        for _ in range(3):
            await m.restart("p")  # stopping, stopped, starting, running: 4 each
        events = await next_events(stream, 2)
        assert events == [("gap", "", None), ("status", "p", "running")]
        await m.stop("p")
        assert await next_events(stream, 2) == [
            ("status", "p", "stopping"),
            ("status", "p", "stopped"),
        ]
        await stream.aclose()


async def test_a_process_added_and_removed_while_running() -> None:
    spawner, clock = FakeSpawner(), FakeClock()
    async with manager(config(), spawner, clock) as m:
        async with m.events() as stream:
            await next_events(stream, 1)
            added = await m.add_process(ProcessSpec(id="new", cwd="/", command=("other",)))
            assert added.status == "running" and [s.id for s in m.list()] == ["p", "new"]
            assert [s.id for s in m.config.processes] == ["p", "new"]
            assert await next_events(stream, 3) == [
                ("status", "new", "stopped"),
                ("status", "new", "starting"),
                ("status", "new", "running"),
            ]
            with pytest.raises(ValueError, match="'new' already"):
                await m.add_process(ProcessSpec(id="new", cwd="/", command=("x",)))
            process = spawner.last
            await m.remove_process("new")
            assert process.code is not None and process not in spawner.alive  # its tree gone
            with pytest.raises(UnknownProcessError):
                m.status("new")
            assert [s.id for s in m.config.processes] == ["p"]
            assert (await next_events(stream, 3))[-1] == ("removed", "new", None)
            quiet = await m.add_process(
                ProcessSpec(id="idle", cwd="/", command=("x",), autostart=False)
            )
            assert quiet.status == "stopped"
    with pytest.raises(NotRunningError):
        await m.add_process(ProcessSpec(id="late", cwd="/", command=("x",)))
    assert spawner.closed == 1
