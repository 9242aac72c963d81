"""One suite over the FakeWatcher and the real watchfiles adapter, so the fake stays honest."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from processman.adapters.watch import PER_DIRECTORY, WatchfilesWatcher
from processman.domain.errors import WatchError
from processman.domain.ports import FileWatcher, WatchRequest
from tests.fakes import FakeWatcher
from tests.integration.helpers import quiet_gaps

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    # the watch thread and the OS are the same under either loop: the contract runs on
    # asyncio, and test_a_change_is_reported on trio too (the thread's hand-over)
    return "asyncio"


Touch = Callable[[Path, str], Awaitable[None]]


@pytest.fixture(params=["fake", "watchfiles"])
def watcher_and_touch(request: pytest.FixtureRequest) -> tuple[FileWatcher, Touch]:
    if request.param == "fake":
        fake = FakeWatcher()

        async def touch_fake(path: Path, text: str) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            await fake.touch(str(path))  # what the kernel would tell the real one

        return fake, touch_fake

    async def touch_real(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    return WatchfilesWatcher(), touch_real


@asynccontextmanager
async def watching(
    watcher: FileWatcher, request: WatchRequest, touch: Touch
) -> AsyncIterator[anyio.abc.ObjectReceiveStream[set[str]]]:
    """Watch; yield once the watcher reports changes (a probe file is touched until it does)."""
    send, receive = anyio.create_memory_object_stream[set[str]](100)
    async with send, receive, anyio.create_task_group() as tg:
        tg.start_soon(watcher.watch, request, send.send_nowait)
        probe = Path(request.paths[0]) / "probe.txt"
        with anyio.fail_after(10):
            while True:
                await touch(probe, "probe")
                with anyio.move_on_after(0.2):
                    await receive.receive()
                    break
        while True:  # drop the probes' batches until half a second passes without one
            with anyio.move_on_after(0.5) as quiet:
                await receive.receive()
            if quiet.cancelled_caught:
                break
        yield receive
        tg.cancel_scope.cancel()


async def next_batch(
    receive: anyio.abc.ObjectReceiveStream[set[str]], seconds: float = 5
) -> set[str]:
    with anyio.fail_after(seconds):
        return await receive.receive()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_change_is_reported(
    tmp_path: Path, watcher_and_touch: tuple[FileWatcher, Touch]
) -> None:
    watcher, touch = watcher_and_touch
    (tmp_path / "sub").mkdir()
    async with watching(watcher, WatchRequest(paths=(str(tmp_path),)), touch) as batches:
        await touch(tmp_path / "sub" / "deep.py", "x = 1")  # recursive
        assert str(tmp_path / "sub" / "deep.py") in await next_batch(batches)


async def test_a_burst_is_one_batch(
    tmp_path: Path, watcher_and_touch: tuple[FileWatcher, Touch]
) -> None:
    watcher, touch = watcher_and_touch
    async with watching(
        watcher, WatchRequest(paths=(str(tmp_path),), debounce=0.1), touch
    ) as batches:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(touch, tmp_path / f"f{i % 5}.py", str(i))
        first = await next_batch(batches)
        assert len(first) == 5
        with anyio.move_on_after(0.5):
            extra = await batches.receive()
            raise AssertionError(f"a second batch for one burst: {extra}")


IGNORED = [
    ("default", (), "__pycache__/m.cpython-311.pyc"),
    ("default", (), "node_modules/x/index.js"),
    ("default", (), ".git/index"),
    ("default", (), "server.log"),
    ("default", (), ".venv/lib/site.py"),
    ("default", (), "notes.txt.swp"),
    ("default", (), "notes.txt~"),
    ("default", (), ".#notes.txt"),
    ("default", (), ".processman.sock"),
    ("watchIgnore", ("*.tmp",), "data/cache.tmp"),
    ("watchIgnore", ("build/",), "build/out.js"),
    ("gitignore", (), "dist/bundle.js"),
    ("nested gitignore", (), "pkg/generated/g.py"),
    ("logs.dir", (), "logs/worker.txt"),
]


async def test_ignored_paths_never_report(
    tmp_path: Path, watcher_and_touch: tuple[FileWatcher, Touch]
) -> None:
    watcher, touch = watcher_and_touch
    (tmp_path / ".gitignore").write_text("dist/\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / ".gitignore").write_text("generated/\n")
    for _, _, name in IGNORED:  # directories made now would be reported: they are not ignored
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    request = WatchRequest(
        paths=(str(tmp_path),),
        ignore=tuple(p for _, patterns, _ in IGNORED for p in patterns),
        ignore_dirs=(str(tmp_path / "logs"),),
        debounce=0.05,
    )
    async with watching(watcher, request, touch) as batches:
        for _, _, name in IGNORED:
            await touch(tmp_path / name, "ignored")
        await anyio.sleep(
            0.2
        )  # more than the quiet period: the two kinds of writes are two batches
        await touch(tmp_path / "sentinel.py", "watched")
        batch = await next_batch(batches)
        leaked = {name: kind for kind, _, name in IGNORED if str(tmp_path / name) in batch}
        assert not leaked, f"ignored paths were reported: {leaked}"
        assert batch == {str(tmp_path / "sentinel.py")}


async def test_a_negated_pattern_in_a_deeper_gitignore_wins(
    tmp_path: Path, watcher_and_touch: tuple[FileWatcher, Touch]
) -> None:
    watcher, touch = watcher_and_touch
    (tmp_path / ".gitignore").write_text("*.gen\n")
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / ".gitignore").write_text("!important.gen\n")
    async with watching(watcher, WatchRequest(paths=(str(tmp_path),)), touch) as batches:
        await touch(tmp_path / "keep" / "important.gen", "x")
        assert await next_batch(batches) == {str(tmp_path / "keep" / "important.gen")}


async def test_a_missing_path_is_an_error(
    tmp_path: Path, watcher_and_touch: tuple[FileWatcher, Touch]
) -> None:
    watcher, _ = watcher_and_touch
    if isinstance(watcher, FakeWatcher):
        watcher.fail = _fail_if_missing
    missing = str(tmp_path / "not-yet")
    with pytest.raises(WatchError, match="not-yet: no such file or directory"):
        await watcher.watch(WatchRequest(paths=(missing,)), print)


def _fail_if_missing(request: WatchRequest) -> None:
    for path in request.paths:
        if not Path(path).exists():
            raise WatchError(path, "no such file or directory")


# --- the real adapter only -----------------------------------------------------------


def _watched_inodes() -> set[int]:
    """The inodes this process's inotify instances watch (from /proc/self/fdinfo)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            text = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        inodes |= {int(m, 16) for m in re.findall(r"^inotify wd:\w+ ino:(\w+)", text, re.M)}
    return inodes


async def _touch(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.skipif(not PER_DIRECTORY, reason="inotify: recursive watches elsewhere cost nothing")
async def test_ignored_trees_cost_no_kernel_watch(tmp_path: Path) -> None:
    # A recursive watch of the root also watched node_modules, and a big one used up the
    # user's inotify watches (8,192 on many systems): development mode ended.
    for i in range(50):
        (tmp_path / "node_modules" / f"pkg{i}" / "lib").mkdir(parents=True)
    (tmp_path / "dist" / "assets").mkdir(parents=True)
    (tmp_path / ".gitignore").write_text("dist/\n")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    ignored = [p for p in tmp_path.rglob("*") if p.is_dir() and "src" not in p.parts]
    request = WatchRequest(paths=(str(tmp_path),), debounce=0.05)
    async with watching(WatchfilesWatcher(), request, _touch) as batches:
        watched = _watched_inodes()
        assert {tmp_path.stat().st_ino, (tmp_path / "src" / "deep").stat().st_ino} <= watched
        assert not {p.stat().st_ino for p in ignored} & watched
        await _touch(tmp_path / "src" / "deep" / "m.py", "x")
        assert await next_batch(batches) == {str(tmp_path / "src" / "deep" / "m.py")}


async def test_a_new_directory_and_one_made_again_are_watched(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    request = WatchRequest(paths=(str(tmp_path),), debounce=0.05)
    async with watching(WatchfilesWatcher(), request, _touch) as batches:
        (tmp_path / "new" / "deeper").mkdir(parents=True)
        assert str(tmp_path / "new") in await next_batch(batches)
        await _touch(tmp_path / "new" / "deeper" / "m.py", "x")
        assert await next_batch(batches) == {str(tmp_path / "new" / "deeper" / "m.py")}
        shutil.rmtree(tmp_path / "pkg")
        (tmp_path / "pkg").mkdir()  # the same path, another inode
        assert str(tmp_path / "pkg") in await next_batch(batches)
        await _touch(tmp_path / "pkg" / "m.py", "x")
        assert await next_batch(batches) == {str(tmp_path / "pkg" / "m.py")}


def _between_scan_and_watch(
    monkeypatch: pytest.MonkeyPatch, act: Callable[[], None], at_watch: int
) -> None:
    """Run ``act`` just before the ``at_watch``-th watch (1 is the first) is placed: after
    the scan that chose its directories, as a user's `mkdir` or `rm -rf` may land."""
    import watchfiles._rust_notify

    real = watchfiles._rust_notify.RustNotify
    placed = 0

    def placing(*args: object) -> object:
        nonlocal placed
        placed += 1
        if placed == at_watch:
            act()
        return real(*args)

    monkeypatch.setattr(watchfiles._rust_notify, "RustNotify", placing)


@pytest.mark.skipif(not PER_DIRECTORY, reason="inotify: a recursive watch follows new ones")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_directory_made_between_the_scan_and_the_watch_is_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI: `rm -rf pkg && mkdir pkg` rewatched after the removal; pkg was made again after
    # the scan but before its parent's new watch, so no one saw it and it was never watched
    request = WatchRequest(paths=(str(tmp_path),), debounce=0.05)
    late = tmp_path / "late"
    _between_scan_and_watch(monkeypatch, late.mkdir, at_watch=2)
    async with watching(WatchfilesWatcher(), request, _touch) as batches:
        (tmp_path / "made").mkdir()  # the second watch
        assert str(late) in await next_batch(batches)  # it is a change, seen late
        await _touch(late / "m.py", "x")
        assert await next_batch(batches) == {str(late / "m.py")}


@pytest.mark.skipif(not PER_DIRECTORY, reason="inotify: a recursive watch follows new ones")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_directory_removed_between_the_scan_and_the_watch_does_not_end_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the watch of a directory that is gone raised FileNotFoundError, and development mode
    # stopped reloading
    (tmp_path / "build").mkdir()
    request = WatchRequest(paths=(str(tmp_path),), debounce=0.05)
    _between_scan_and_watch(monkeypatch, lambda: (tmp_path / "build").rmdir(), at_watch=2)
    async with watching(WatchfilesWatcher(), request, _touch) as batches:
        (tmp_path / "made").mkdir()  # the second watch
        assert str(tmp_path / "build") in await next_batch(batches)
        await _touch(tmp_path / "made" / "m.py", "x")
        assert await next_batch(batches) == {str(tmp_path / "made" / "m.py")}


async def test_symlinked_directories_are_followed_but_never_out_through_a_loop(
    tmp_path: Path,
) -> None:
    root, shared = tmp_path / "app", tmp_path / "shared"
    (shared / "lib").mkdir(parents=True)
    root.mkdir()
    (root / "shared").symlink_to(shared)  # followed, as watchfiles and nodemon do
    (root / "up").symlink_to(tmp_path)  # a loop back above the root: not followed
    (root / "again").symlink_to(root)  # the root itself: watched already
    request = WatchRequest(paths=(str(root),), debounce=0.05)
    async with watching(WatchfilesWatcher(), request, _touch) as batches:
        await _touch(tmp_path / "beside.txt", "not under the root")
        await _touch(shared / "lib" / "m.py", "x")
        assert await next_batch(batches) == {str(root / "shared" / "lib" / "m.py")}


async def test_making_and_removing_an_ignored_directory_is_no_change(tmp_path: Path) -> None:
    # "dist/" in .gitignore matches only a directory: a build's `rm -rf dist && mkdir dist`
    # reloaded, as "dist" alone did not look like one
    (tmp_path / ".gitignore").write_text("dist/\n")
    (tmp_path / "dist").mkdir()
    request = WatchRequest(paths=(str(tmp_path),), debounce=0.05)
    async with watching(WatchfilesWatcher(), request, _touch) as batches:
        shutil.rmtree(tmp_path / "dist")
        await anyio.sleep(0.2)
        (tmp_path / "dist" / "assets").mkdir(parents=True)
        await anyio.sleep(0.2)
        await _touch(tmp_path / "sentinel.py", "x")
        assert await next_batch(batches) == {str(tmp_path / "sentinel.py")}


async def test_the_file_this_process_writes_its_output_to_is_no_change(tmp_path: Path) -> None:
    # `processman run > out.txt` in the watched tree: each reload's own log line reloaded
    # again, for ever (57 reloads in 4 s)
    out = tmp_path / "out.txt"
    saved = os.dup(1)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.close(fd)
    try:
        request = WatchRequest(paths=(str(tmp_path),), debounce=0.05)
        async with watching(WatchfilesWatcher(), request, _touch) as batches:
            os.write(1, b"dev | /src/app.py changed: reloading\n")
            await anyio.sleep(0.2)
            await _touch(tmp_path / "sentinel.py", "x")
            assert await next_batch(batches) == {str(tmp_path / "sentinel.py")}
    finally:
        os.dup2(saved, 1)
        os.close(saved)


async def _batches_during(
    batches: anyio.abc.ObjectReceiveStream[set[str]], burst: Callable[[], Awaitable[None]]
) -> list[tuple[float, set[str]]]:
    """Run ``burst`` while collecting the batches (with their arrival times), until half
    a second (ten quiet periods) after the burst passes without one (a loaded machine may take longer than
    that over the burst itself)."""
    got: list[tuple[float, set[str]]] = []
    done = anyio.Event()

    async def collect() -> None:
        while True:
            after_burst = done.is_set()
            with anyio.move_on_after(0.5) as quiet:
                batch = await batches.receive()
            if not quiet.cancelled_caught:
                got.append((anyio.current_time(), batch))
            elif after_burst:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await burst()
        done.set()
    return got


BURSTS = [
    # (name, files, writes, pause between writes): SPEC §4's quiet period is measured from
    # the last change. With the default 50 ms, each of these gave a reload about every
    # 45 ms (11, 12 and 8 reloads): the quiet time was counted from when the watch thread
    # handed a batch over, which can lag the changes by more than the quiet time left.
    ("one file every 5 ms for 500 ms", 1, 100, 0.005),
    ("400 files 1 ms apart", 400, 400, 0.001),
    ("30 writes 11 ms apart", 1, 30, 0.011),
]


# the quiet period is kept in the watch thread, whatever the event loop: one backend
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("files", "writes", "pause"), [b[1:] for b in BURSTS], ids=[b[0] for b in BURSTS]
)
async def test_a_burst_at_the_default_quiet_period_is_one_batch_after_it(
    tmp_path: Path, files: int, writes: int, pause: float
) -> None:
    request = WatchRequest(paths=(str(tmp_path),), debounce=0.05)
    stamps: list[tuple[float, float]] = []
    async with watching(WatchfilesWatcher(), request, _touch) as batches:

        async def burst() -> None:
            for i in range(writes):
                began = anyio.current_time()
                (tmp_path / f"f{i % files}.py").write_text(str(i))
                stamps.append((began, anyio.current_time()))
                await anyio.sleep(pause)

        got = await _batches_during(batches, burst)
    shown = [(round(at - stamps[-1][1], 3), len(batch)) for at, batch in got]
    # one batch, a whole quiet period after the last write; one more only where the
    # writer itself paused that long (a loaded machine), never within a quiet period
    assert 1 <= len(got) <= 1 + quiet_gaps(stamps, 0.05), shown
    assert got[-1][0] - stamps[-1][1] >= 0.05, shown
    assert set().union(*(batch for _, batch in got)) == {
        str(tmp_path / f"f{i}.py") for i in range(files)
    }
