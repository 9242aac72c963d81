"""Development mode's file watcher: watchfiles' Rust backend (notify: inotify, FSEvents, ...).

The ignore rules of SPEC §4 are applied here, inside watchfiles' filter: the defaults
(``domain.ignore``), ``watchIgnore`` patterns, the ``logs.dir``, and every ``.gitignore``
of the watched trees (nested ones too, deeper files overriding shallower ones, read again
when one changes). ``watchIgnore`` patterns use the .gitignore syntax, relative to the
watch path.
"""

from __future__ import annotations

import math
import os
import threading
from typing import TYPE_CHECKING

import anyio

from processman.domain.errors import WatchError
from processman.domain.ignore import ignored_by_default

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import pathspec
    from anyio.lowlevel import EventLoopToken
    from anyio.streams.memory import MemoryObjectSendStream

    from processman.domain.ports import WatchRequest


class IgnoreMatcher:
    """Decides which changed paths are ignored, for a set of watch roots."""

    def __init__(
        self, roots: Iterable[str], patterns: Iterable[str] = (), ignore_dirs: Iterable[str] = ()
    ) -> None:
        self.roots = sorted((os.path.abspath(r) for r in roots), key=len, reverse=True)
        self.extra = _spec(patterns)
        self.ignore_dirs = tuple(os.path.abspath(d) for d in ignore_dirs)
        self.gitignores: dict[str, pathspec.GitIgnoreSpec] = {}
        self.reload_gitignores()

    def reload_gitignores(self) -> None:
        """Find and read every .gitignore under the roots (skipping ignored directories)."""
        # top-down, so a directory's .gitignore is known before its subdirectories are
        # considered, and ignored trees (node_modules, build/) are never walked
        self.gitignores = {}
        for root in self.roots:
            if not os.path.isdir(root):
                continue
            for directory, subdirs, files in os.walk(root):
                if ".gitignore" in files:
                    gitignore = os.path.join(directory, ".gitignore")
                    self.gitignores[directory] = _read_gitignore(gitignore)
                subdirs[:] = [d for d in subdirs if not self.ignored(os.path.join(directory, d))]

    def ignored(self, path: str) -> bool:
        """True when a change to ``path`` must not reload."""
        path = os.path.abspath(path)
        if any(path == d or path.startswith(d + os.sep) for d in self.ignore_dirs):
            return True
        root = next((r for r in self.roots if path == r or path.startswith(r + os.sep)), None)
        if root is None:
            return False
        relative = os.path.relpath(path, root)
        if relative == ".":
            return False
        if ignored_by_default(relative.split(os.sep)) or self.extra.match_file(relative):
            return True
        decision = False
        directory = os.path.dirname(path)
        ancestors = []
        while True:
            ancestors.append(directory)
            if directory == root or len(directory) <= len(root):
                break
            directory = os.path.dirname(directory)
        for ancestor in reversed(ancestors):  # shallow to deep: the deepest opinion wins
            spec = self.gitignores.get(ancestor)
            if spec is not None:
                verdict = spec.check_file(os.path.relpath(path, ancestor)).include
                if verdict is not None:
                    decision = verdict
        return decision


def _spec(lines: Iterable[str]) -> pathspec.GitIgnoreSpec:
    import pathspec  # imported on the first watch: processes without one never pay for it

    return pathspec.GitIgnoreSpec.from_lines(list(lines))


def _read_gitignore(path: str) -> pathspec.GitIgnoreSpec:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return _spec(file.read().splitlines())
    except OSError:
        return _spec([])


def _prepare(request: WatchRequest) -> IgnoreMatcher:
    for path in request.paths:
        if not os.path.exists(path):
            raise WatchError(path, "no such file or directory")
    return IgnoreMatcher(request.paths, request.ignore, request.ignore_dirs)


def poll_and_quiet(debounce: float) -> tuple[int, float]:
    """Split the quiet period between watchfiles' polling step (ms) and our own wait (s).

    watchfiles groups changes until one ``step`` passes without a new one (or its
    ``debounce`` is reached); it is given a short step and the same debounce, so that it
    hands over what it saw every few milliseconds, and the quiet period is kept here, on
    those batches. Each step wakes the watch thread (and takes the GIL) even when idle, and
    a change is handed over one to two steps after it. A short quiet period is asked for
    speed: its step is a fifth of it (2 ms at 10 ms). From the default 50 ms on, the step
    is 20 ms: 50 wake-ups a second when idle, not 100, for ~5 ms more per reload.
    """
    debounce_ms = debounce * 1000
    step_ms = int(max(1, debounce_ms // 5)) if debounce_ms < 50 else 20
    return step_ms, max(0.0, debounce - step_ms / 1000)


class WatchfilesWatcher:
    """``FileWatcher`` on watchfiles' Rust backend (``RustNotify``), one thread per watch.

    ``watchfiles.awatch`` is not used: it waits in anyio's worker threads, which cannot be
    interrupted, so a cancelled watch would linger until its timeout, and a short timeout
    costs a thread hand-off several times a second per watch. Here a dedicated thread
    blocks in ``RustNotify.watch`` until it sees changes or its stop event, filters them,
    and hands only the batches that matter to the event loop.
    """

    async def watch(self, request: WatchRequest, on_change: Callable[[set[str]], None]) -> None:
        """Report batches of changed, non-ignored paths until cancelled."""
        import anyio.from_thread  # here, not at import: a run without watches never needs them
        import anyio.lowlevel

        matcher = await anyio.to_thread.run_sync(_prepare, request)
        step_ms, quiet = poll_and_quiet(request.debounce)
        send, receive = anyio.create_memory_object_stream[set[str] | Exception](math.inf)
        stop = threading.Event()
        thread = threading.Thread(
            target=_watch_in_thread,
            args=(request.paths, step_ms, matcher, stop, send, anyio.lowlevel.current_token()),
            name=f"processman-watch {request.paths[0]}",
            daemon=True,
        )
        thread.start()
        try:
            async with receive:
                pending: set[str] = set()
                while True:
                    if pending:
                        with anyio.move_on_after(quiet) as quiet_scope:
                            item = await receive.receive()
                        if quiet_scope.cancelled_caught:
                            changed, pending = pending, set()
                            on_change(changed)
                            continue
                    else:
                        item = await receive.receive()
                    if isinstance(item, Exception):
                        raise WatchError(request.paths[0], str(item)) from item
                    pending |= item
        finally:
            stop.set()  # the thread sees it within one step and closes its watches
            send.close()  # a batch it still hands over finds the stream closed


def _watch_in_thread(
    paths: tuple[str, ...],
    step_ms: int,
    matcher: IgnoreMatcher,
    stop: threading.Event,
    send: MemoryObjectSendStream[set[str] | Exception],
    token: EventLoopToken,
) -> None:
    def deliver(item: set[str] | Exception) -> None:
        try:
            anyio.from_thread.run_sync(send.send_nowait, item, token=token)
        except (RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            stop.set()  # the event loop or the receiver is gone

    from watchfiles._rust_notify import RustNotify  # on the first watch, as pathspec

    # The kernel watches inodes: a root that is removed (`rm -rf dist && tsc`) or replaced
    # (an editor that saves a watched file by renaming a new one over it) is no longer
    # watched. So a batch that names a root itself, or after which a root is another inode
    # or gone, ends the watch, and the roots that exist are watched anew (a new directory
    # may even get the old inode number back); a missing one is looked for every
    # REWATCH_POLL seconds meanwhile, and a root made anew reloads once more.
    roots = set(paths)
    watched: dict[str, tuple[int, int]] = {}
    anew: set[str] = set()
    try:
        while not stop.is_set():
            present = _identities(paths)
            if not present:
                stop.wait(REWATCH_POLL)
                continue
            if watched:
                anew |= {path for path, inode in present.items() if watched.get(path) != inode}
            watched = present
            with RustNotify(list(present), False, False, 300, True, False) as notify:
                anew &= present.keys()
                if anew:  # what was written there before this watch began
                    matcher.reload_gitignores()
                    deliver(anew)
                    anew = set()
                timeout_ms = 0 if len(present) == len(paths) else int(REWATCH_POLL * 1000)
                while not stop.is_set():
                    raw = notify.watch(step_ms, step_ms, timeout_ms, stop)
                    if raw == "timeout":  # a root is missing: is it back?
                        if _identities(paths).keys() != present.keys():
                            break
                        continue
                    if not isinstance(raw, set) or stop.is_set():
                        continue
                    changed = {path for _, path in raw}
                    if any(os.path.basename(p) == ".gitignore" for p in changed):
                        matcher.reload_gitignores()
                    kept = {p for p in changed if not matcher.ignored(p)}
                    if kept:
                        deliver(kept)
                    if roots & changed or _identities(paths) != present:
                        anew |= roots & changed
                        break
    except Exception as exc:  # e.g. a path removed before the watch began
        deliver(exc)


#: While a watched root is missing, how often to look for it again.
REWATCH_POLL = 0.1


def _identities(paths: Iterable[str]) -> dict[str, tuple[int, int]]:
    """The (device, inode) of each root that exists."""
    found = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        found[path] = (info.st_dev, info.st_ino)
    return found


__all__ = ["IgnoreMatcher", "WatchfilesWatcher"]
