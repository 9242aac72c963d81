"""Development mode's file watcher: watchfiles (Rust notify: inotify, FSEvents, ...).

The ignore rules of SPEC §4 are applied here, inside watchfiles' filter: the defaults
(``domain.ignore``), ``watchIgnore`` patterns, the ``logs.dir``, and every ``.gitignore``
of the watched trees (nested ones too, deeper files overriding shallower ones, read again
when one changes). ``watchIgnore`` patterns use the .gitignore syntax, relative to the
watch path.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import anyio
import pathspec
import watchfiles

from processman.domain.errors import WatchError
from processman.domain.ignore import DEFAULT_IGNORES, ignored_by_default

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from processman.domain.ports import WatchRequest

#: watchfiles waits for changes in a worker thread that anyio cannot interrupt: a
#: cancelled watch ends when that wait does. Its default (5 s) would hold up every
#: shutdown; 200 ms costs five thread hand-offs a second per watch when idle.
THREAD_WAIT_MS = 200


class IgnoreMatcher:
    """Decides which changed paths are ignored, for a set of watch roots."""

    def __init__(
        self, roots: Iterable[str], patterns: Iterable[str] = (), ignore_dirs: Iterable[str] = ()
    ) -> None:
        self.roots = sorted((os.path.abspath(r) for r in roots), key=len, reverse=True)
        self.extra = pathspec.GitIgnoreSpec.from_lines(list(patterns))
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


def _read_gitignore(path: str) -> pathspec.GitIgnoreSpec:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return pathspec.GitIgnoreSpec.from_lines(file.read().splitlines())
    except OSError:
        return pathspec.GitIgnoreSpec.from_lines([])


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
    those batches. A short step keeps the latency near ``debounce``; it is at most 10 ms,
    so an idle watch wakes 100 times a second at most.
    """
    debounce_ms = debounce * 1000
    step_ms = int(max(1, min(10, debounce_ms // 4)))
    return step_ms, max(0.0, debounce - step_ms / 1000)


class WatchfilesWatcher:
    """``FileWatcher`` on watchfiles' ``awatch``."""

    async def watch(self, request: WatchRequest, on_change: Callable[[set[str]], None]) -> None:
        """Report batches of changed, non-ignored paths until cancelled."""
        matcher = await anyio.to_thread.run_sync(_prepare, request)
        step_ms, quiet = poll_and_quiet(request.debounce)
        send, receive = anyio.create_memory_object_stream[set[str]](math.inf)

        def keep(change: watchfiles.Change, path: str) -> bool:
            return os.path.basename(path) == ".gitignore" or not matcher.ignored(path)

        async def pump() -> None:
            async with send:
                async for batch in watchfiles.awatch(
                    *request.paths,
                    watch_filter=keep,
                    # a batch every step while changes flow: our quiet timer then sees
                    # them, instead of mistaking watchfiles' grouping for silence
                    step=step_ms,
                    debounce=step_ms,
                    rust_timeout=THREAD_WAIT_MS,
                    recursive=True,
                ):
                    paths = {path for _, path in batch}
                    if any(os.path.basename(p) == ".gitignore" for p in paths):
                        await anyio.to_thread.run_sync(matcher.reload_gitignores)
                        paths = {p for p in paths if not matcher.ignored(p)}
                    if paths:
                        send.send_nowait(paths)

        async with receive, anyio.create_task_group() as tg:
            tg.start_soon(pump)
            pending: set[str] = set()
            while True:
                if not pending:
                    pending = await receive.receive()
                    continue
                with anyio.move_on_after(quiet) as quiet_scope:
                    pending |= await receive.receive()
                if quiet_scope.cancelled_caught:
                    changed, pending = pending, set()
                    on_change(changed)


__all__ = ["DEFAULT_IGNORES", "IgnoreMatcher", "WatchfilesWatcher"]
