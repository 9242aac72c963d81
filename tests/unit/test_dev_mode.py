"""Reloads on file changes, with a FakeWatcher, FakeSpawner and FakeClock."""

from __future__ import annotations

import anyio
import pytest
from loguru import logger

from processman import ProcessManager, Status
from processman.domain.errors import WatchError
from processman.domain.model import Config, LogSettings, ProcessSpec
from processman.domain.ports import WatchRequest
from processman.domain.reload_loop import REPEATS, ReloadLoop
from tests.fakes import FakeClock, FakeProcess, FakeSpawner, FakeWatcher, RecordingSink

pytestmark = pytest.mark.anyio


def dev_config(**overrides: object) -> Config:
    values: dict[str, object] = {
        "id": "dev",
        "cwd": "/src",
        "command": ("prog",),
        "dev_mode": True,
        "watch_paths": ("/src",),
        "watch_ignore": ("*.tmp",),
        "watch_debounce": 0.01,
    }
    values.update(overrides)
    return Config(processes=(ProcessSpec(**values),), logs=LogSettings(dir="/src/logs"))  # type: ignore[arg-type]


def manager(
    config: Config, spawner: FakeSpawner, watcher: FakeWatcher, clock: FakeClock | None = None
) -> ProcessManager:
    return ProcessManager(
        config,
        spawner=spawner,
        watcher=watcher,
        clock=clock or FakeClock(),
        log_sinks=[RecordingSink()],
        environ={},
    )


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_the_watch_request_carries_the_spec() -> None:
    spawner, watcher = FakeSpawner(), FakeWatcher()
    async with manager(dev_config(), spawner, watcher):
        await settle()
        assert watcher.requests == [
            WatchRequest(
                paths=("/src",), ignore=("*.tmp",), ignore_dirs=("/src/logs",), debounce=0.01
            )
        ]


async def test_a_change_reloads_a_running_process() -> None:
    spawner, watcher = FakeSpawner(), FakeWatcher()
    async with manager(dev_config(), spawner, watcher) as m:
        await settle()
        first = spawner.last
        watcher.emit("/src/app.py")
        await settle()
        status = m.status("dev")
        assert status.status is Status.RUNNING and status.pid == spawner.last.pid != first.pid
        assert first.stop_calls == [("SIGTERM", 10.0)] and first.code == -15
        assert status.restart_count == 1 and spawner.max_alive == 1


async def test_a_change_during_a_reload_gives_exactly_one_more() -> None:
    spawner, watcher = FakeSpawner(), FakeWatcher()
    release = anyio.Event()
    stops = 0

    async def slow_stop(self: FakeProcess, signal: str, grace: float) -> int | None:
        nonlocal stops
        stops += 1
        if stops == 1:
            await release.wait()
        self.exit(-15)
        return self.code

    async with manager(dev_config(), spawner, watcher) as m:
        await settle()
        spawner.processes[0].stop = slow_stop.__get__(spawner.processes[0])  # type: ignore[method-assign]
        watcher.emit("/src/a.py")
        await settle()
        assert m.status("dev").status is Status.STOPPING  # the first reload is under way
        for name in ("b.py", "c.py", "d.py"):  # three more changes while it is
            watcher.emit(f"/src/{name}")
            await settle()
        release.set()
        await settle()
        assert len(spawner.requests) == 3  # the first start, the reload, exactly one more
        assert m.status("dev").restart_count == 2 and m.status("dev").status is Status.RUNNING
        watcher.emit("/src/e.py")  # and the watch goes on afterwards
        await settle()
        assert len(spawner.requests) == 4


async def test_a_change_starts_crashed_and_exited_but_never_stopped() -> None:
    spawner, watcher, clock = FakeSpawner(), FakeWatcher(), FakeClock()
    async with manager(dev_config(max_retries=0), spawner, watcher, clock) as m:
        await settle()
        spawner.last.exit(1)
        await settle()
        assert m.status("dev").status is Status.CRASHED
        watcher.emit("/src/fix.py")
        await settle()
        assert m.status("dev").status is Status.RUNNING and m.status("dev").restart_count == 1
        await m.stop("dev")
        watcher.emit("/src/again.py")
        await settle()
        assert m.status("dev").status is Status.STOPPED and len(spawner.requests) == 2


async def test_a_change_in_backoff_starts_at_once() -> None:
    spawner, watcher, clock = FakeSpawner(), FakeWatcher(), FakeClock()
    async with manager(dev_config(backoff=5.0, max_backoff=5.0), spawner, watcher, clock) as m:
        await settle()
        spawner.last.exit(1)
        await settle()
        assert m.status("dev").status is Status.BACKOFF
        watcher.emit("/src/fix.py")
        await settle()
        assert m.status("dev").status is Status.RUNNING
        assert clock.next_deadline is None  # the pending retry was cancelled


async def test_a_watch_error_is_a_last_error_not_a_crash() -> None:
    def fail(request: WatchRequest) -> None:
        raise WatchError("/src/missing", "no such file or directory")

    spawner = FakeSpawner()
    cfg = Config(
        processes=(
            *dev_config().processes,
            ProcessSpec(id="other", cwd="/", command=("x",)),
        )
    )
    async with manager(cfg, spawner, FakeWatcher(fail)) as m:
        await settle()
        status = m.status("dev")
        assert status.status is Status.RUNNING
        assert status.last_error == "cannot watch /src/missing: no such file or directory"
        assert m.status("other").status is Status.RUNNING


async def test_processes_without_dev_mode_are_not_watched() -> None:
    watcher = FakeWatcher()
    async with manager(dev_config(dev_mode=False), FakeSpawner(), watcher):
        await settle()
    assert watcher.requests == []


def test_reload_loop_needs_the_same_files_soon_after_each_reload() -> None:
    loop = ReloadLoop(repeats=3, within=2.0)
    cache = frozenset({"/src/cache.json"})
    assert [loop.reload(t, cache) for t in (0.0, 0.5, 1.0, 1.5, 2.0)] == [
        False,
        False,
        True,  # the third in a row: said once
        False,
        False,
    ]
    other = ReloadLoop(repeats=3, within=2.0)
    assert not other.reload(0.0, cache)
    assert not other.reload(0.5, cache)
    assert not other.reload(3.0, cache)  # too late: a developer's save, the count restarts
    assert not other.reload(3.5, frozenset({"/src/app.py"}))  # other files: restarts too
    assert not other.reload(4.0, frozenset({"/src/app.py"}))
    assert other.reload(4.5, frozenset({"/src/app.py"}))


async def test_a_process_that_reloads_itself_is_pointed_out_once() -> None:
    spawner, watcher, clock = FakeSpawner(), FakeWatcher(), FakeClock()
    said: list[tuple[str, str]] = []
    logger.enable("processman")
    handler = logger.add(lambda m: said.append((m.record["level"].name, m.record["message"])))
    try:
        async with manager(dev_config(), spawner, watcher, clock) as m:
            await settle()
            for _ in range(2 * REPEATS):  # it writes its cache at each start
                watcher.emit("/src/cache.json")
                await settle()
                await clock.advance(0.3)
            assert m.status("dev").restart_count == 2 * REPEATS  # it still reloads
    finally:
        logger.remove(handler)
        logger.disable("processman")
    warnings = [message for level, message in said if level == "WARNING"]
    assert warnings == [
        f"/src/cache.json changed again right after each of the last {REPEATS} reloads: if "
        "the process writes it itself, add it to watchIgnore, or it reloads for ever"
    ]
