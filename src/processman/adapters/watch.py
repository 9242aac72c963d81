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
import stat
import sys
import threading
import time
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
    """Decides which changed paths are ignored, for a set of watch roots, and lists the
    directories under them that are watched."""

    def __init__(
        self, roots: Iterable[str], patterns: Iterable[str] = (), ignore_dirs: Iterable[str] = ()
    ) -> None:
        self.roots = sorted((os.path.abspath(r) for r in roots), key=len, reverse=True)
        self.extra = _spec(patterns)
        self.ignore_dirs = tuple(os.path.abspath(d) for d in ignore_dirs)
        self.gitignores: dict[str, pathspec.GitIgnoreSpec] = {}
        #: every directory under the roots that is not ignored, with its (device, inode)
        self.directories: dict[str, tuple[int, int]] = {}
        #: the ignored directories the scan did not enter (node_modules, dist/)
        self.left_out: set[str] = set()
        #: (device, inode) of the regular files this process's stdout and stderr go to
        self.own_output: set[tuple[int, int]] = set()
        self.rescan()

    def rescan(self) -> None:
        """Read every .gitignore under the roots, and list the directories to watch.

        Top-down, so that a directory's .gitignore is known before its subdirectories are
        considered, and ignored trees (node_modules, build/) are never walked. A symlinked
        directory is followed, as watchfiles and nodemon do, unless its target is already
        in a watched tree or holds one (``loop -> ..``).
        """
        self.gitignores = {}
        self.directories = {}
        self.left_out = set()
        self.own_output = _own_output()
        followed = [os.path.realpath(r) for r in self.roots if os.path.isdir(r)]
        for root in self.roots:
            if not os.path.isdir(root) or root in self.directories:
                continue
            for directory, subdirs, files in os.walk(root, followlinks=True):
                try:
                    info = os.stat(directory)
                except OSError:
                    continue  # gone since its parent was listed
                self.directories[directory] = (info.st_dev, info.st_ino)
                if ".gitignore" in files:
                    gitignore = os.path.join(directory, ".gitignore")
                    self.gitignores[directory] = _read_gitignore(gitignore)
                kept = []
                for name in subdirs:
                    path = os.path.join(directory, name)
                    if self._leaves_out(path, name):
                        self.left_out.add(path)
                        continue
                    if os.path.islink(path):
                        target = os.path.realpath(path)
                        if any(_within(target, f) or _within(f, target) for f in followed):
                            continue
                        followed.append(target)
                    kept.append(name)
                subdirs[:] = kept

    def ignored(self, path: str, *, is_dir: bool | None = None) -> bool:
        """True when a change to ``path`` must not reload.

        A pattern that ends in ``/`` matches only a directory (as in git): ``is_dir`` None
        asks the file system, and a path that is gone counts as a directory if the last
        scan left it out as an ignored one (``rm -rf dist`` must not reload either).
        The file this process's own stdout or stderr goes to is ignored too
        (``processman run > out.txt`` in the watched tree): each reload's log line would
        reload again, for ever.
        """
        path = os.path.abspath(path)
        if self._in_ignored_dir(path):
            return True
        root = self._root(path)
        if root is None or path == root:
            return False
        if is_dir is None:
            try:
                info = os.stat(path)
            except OSError:
                is_dir = path in self.left_out
            else:
                if (info.st_dev, info.st_ino) in self.own_output:
                    return True
                is_dir = stat.S_ISDIR(info.st_mode)
        relative = _below(path, root)
        return self._by_rules(root, path, relative, relative.split(os.sep), is_dir)

    def _leaves_out(self, path: str, name: str) -> bool:
        """Whether the scan leaves out the directory ``path``, whose parent it watches (so
        only its own name is matched against the defaults)."""
        if self._in_ignored_dir(path):
            return True
        root = self._root(path)
        return root is not None and self._by_rules(root, path, _below(path, root), (name,), True)

    def _in_ignored_dir(self, path: str) -> bool:
        return any(_within(path, d) for d in self.ignore_dirs)

    def _root(self, path: str) -> str | None:
        return next((r for r in self.roots if _within(path, r)), None)

    def _by_rules(
        self, root: str, path: str, relative: str, parts: Iterable[str], is_dir: bool
    ) -> bool:
        """The defaults (on ``parts``), ``watchIgnore`` and the .gitignore files."""
        slash = "/" if is_dir else ""
        if ignored_by_default(parts) or self.extra.match_file(relative + slash):
            return True
        if not self.gitignores:
            return False
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
                verdict = spec.check_file(_below(path, ancestor) + slash).include
                if verdict is not None:
                    decision = verdict
        return decision


def _below(path: str, directory: str) -> str:
    """``path`` relative to ``directory``, which holds it (a cheaper ``os.path.relpath``)."""
    return path[len(directory) :].lstrip(os.sep)


def _own_output() -> set[tuple[int, int]]:
    found = set()
    for fd in (1, 2):
        try:
            info = os.fstat(fd)
        except OSError:
            continue  # closed
        if stat.S_ISREG(info.st_mode):
            found.add((info.st_dev, info.st_ino))
    return found


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


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


def watch_steps(debounce: float) -> tuple[int, int]:
    """watchfiles' polling steps (ms) for a quiet period: while idle, and while a batch
    waits out its quiet period.

    Each step wakes the watch thread (and takes the GIL), and a change is seen one to two
    steps after it. While idle the step is a fifth of the quiet period (2 ms at 10 ms), and
    20 ms from the default 50 ms on: 50 wake-ups a second, not 100. While changes wait, the
    step is a tenth of the quiet period (1 ms at least), so that the reload comes close to
    the end of the quiet period; a burst costs those wake-ups only while it lasts.
    """
    debounce_ms = debounce * 1000
    idle = int(max(1, debounce_ms // 5)) if debounce_ms < 50 else 20
    return idle, int(min(idle, max(1, debounce_ms // 10)))


class QuietPeriod:
    """Changed paths held until no change has been seen for ``debounce`` seconds (SPEC §4).

    The period runs from the time of the last change (as close as the watch can tell it),
    not from when the watch handed it over: a hand-over can lag the changes by more than
    the quiet time left, and a burst then gave a reload every few steps. Times are
    monotonic seconds.
    """

    def __init__(self, debounce: float) -> None:
        self.debounce = debounce
        self.pending: set[str] = set()
        self.deadline: float | None = None

    def add(self, paths: set[str], last_change: float) -> None:
        """Hold ``paths``, changed at ``last_change`` at the latest."""
        if not paths:
            return
        self.pending |= paths
        end = last_change + self.debounce
        self.deadline = end if self.deadline is None else max(self.deadline, end)

    def remaining(self, now: float) -> float | None:
        """Seconds until the held paths are due; None when none is held."""
        return None if self.deadline is None else max(0.0, self.deadline - now)

    def take_due(self, now: float, changed_since: Callable[[set[str]], float | None]) -> set[str]:
        """The held paths once their quiet period has passed (then nothing is held).

        ``changed_since`` tells when the held paths last changed, as far as can be told
        without the watch (None: not known). The watch's report of a change can come late
        (its thread starved on a loaded machine): a path written again meanwhile moves the
        deadline instead of being handed over in the middle of its burst.
        """
        if self.deadline is None or now < self.deadline:
            return set()
        latest = changed_since(self.pending)
        if latest is not None and latest + self.debounce > now:
            self.deadline = latest + self.debounce
            return set()
        due, self.pending, self.deadline = self.pending, set(), None
        return due


def last_change(paths: set[str], returned: float, step: float, capped: bool) -> float:
    """The latest time (monotonic) at which a change of a batch that ``RustNotify.watch``
    returned can have been made.

    watchfiles returns a batch once a step passes in which its set of (change, path) did
    not grow (or once its cap is reached: ``capped`` says it may have been). So a new
    member of the set came a step before the return at the latest, and after the check
    before that, unless it waited in the set from earlier. A path changed again is no
    new member: the paths' inode change times (``st_ctime``, which no program can set
    back, unlike the modification time) tell when they last changed, kept between those
    two bounds (a file system's clock may differ) and read late by up to a tick of the
    kernel's coarse clock, which stamps them. A removed path has none: its removal is a
    new member, so the step bounds it.
    """
    if capped or len(paths) > MAX_STATS:
        return returned
    changed = last_stamped(paths, gone=returned - step)
    return min(returned, max(returned - 2 * step, changed))


def last_stamped(paths: set[str], gone: float = -math.inf) -> float:
    """The latest inode change time of ``paths`` (monotonic, a kernel clock tick late at
    most); a path that is gone counts as changed at ``gone``."""
    latest = -math.inf
    offset = time.time() - time.monotonic()
    for path in paths:
        try:
            changed = os.stat(path).st_ctime - offset + FS_CLOCK_TICK
        except OSError:
            changed = gone
        latest = max(latest, changed)
    return latest


def _stamped_since(paths: set[str]) -> float | None:
    """``QuietPeriod.take_due``'s view of ``paths`` off the watch: their inode change
    times, for batches small enough to stat."""
    if not paths or len(paths) > MAX_STATS:
        return None
    latest = last_stamped(paths)
    return None if latest == -math.inf else latest


#: Batches with more paths than this are taken to end at their return (no stat of each).
MAX_STATS = 1000


def _fs_clock_tick() -> float:
    """How far behind the kernel's coarse clock, which stamps inodes, may lag (Linux)."""
    try:
        return time.clock_getres(5)  # CLOCK_REALTIME_COARSE, which time does not name
    except (OSError, AttributeError):
        return 0.004


FS_CLOCK_TICK = _fs_clock_tick() if sys.platform.startswith("linux") else 0.0


class WatchfilesWatcher:
    """``FileWatcher`` on watchfiles' Rust backend (``RustNotify``), one thread per watch.

    ``watchfiles.awatch`` is not used: it waits in anyio's worker threads, which cannot be
    interrupted, so a cancelled watch would linger until its timeout, and a short timeout
    costs a thread hand-off several times a second per watch. Here a dedicated thread
    blocks in ``RustNotify.watch`` until it sees changes or its stop event, filters them,
    keeps the quiet period (``QuietPeriod``) and hands the event loop only the batches
    that are due.
    """

    async def watch(self, request: WatchRequest, on_change: Callable[[set[str]], None]) -> None:
        """Report batches of changed, non-ignored paths until cancelled."""
        import anyio.from_thread  # here, not at import: a run without watches never needs them
        import anyio.lowlevel

        matcher = await anyio.to_thread.run_sync(_prepare, request)
        send, receive = anyio.create_memory_object_stream[set[str] | Exception](math.inf)
        stop = threading.Event()
        thread = threading.Thread(
            target=_watch_in_thread,
            args=(
                request.paths,
                QuietPeriod(request.debounce),
                matcher,
                stop,
                send,
                anyio.lowlevel.current_token(),
            ),
            name=f"processman-watch {request.paths[0]}",
            daemon=True,
        )
        thread.start()
        try:
            async with receive:
                async for item in receive:
                    if isinstance(item, Exception):
                        raise WatchError(request.paths[0], str(item)) from item
                    on_change(item)
        finally:
            stop.set()  # the thread sees it within one step and closes its watches
            send.close()  # a batch it still hands over finds the stream closed


def _watch_in_thread(
    paths: tuple[str, ...],
    quiet: QuietPeriod,
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

    def hand_over_due() -> float | None:
        """Deliver what is due; return the seconds until the rest is."""
        now = time.monotonic()
        due = quiet.take_due(now, _stamped_since)
        if due:
            deliver(due)
        return quiet.remaining(now)

    from watchfiles._rust_notify import RustNotify  # on the first watch, as pathspec

    idle_step, busy_step = watch_steps(quiet.debounce)
    # watchfiles returns a batch after a step without a new change, or once its cap has
    # passed since the first: while idle the cap is long, so that a batch that began in
    # an idle call was not capped (how long it waited is not known); while changes wait,
    # one quiet period
    busy_cap_ms = max(busy_step, int(quiet.debounce * 1000))
    # The kernel watches inodes: a root that is removed (`rm -rf dist && tsc`) or replaced
    # (an editor that saves a watched file by renaming a new one over it) is no longer
    # watched. So a batch that names a root itself, or after which a root is another inode
    # or gone, ends the watch, and the roots that exist are watched anew (a new directory
    # may even get the old inode number back); a missing one is looked for every
    # REWATCH_POLL seconds meanwhile, and a root made anew reloads once more.
    # What is held meanwhile is handed over once the new watch is in place: whoever reacts
    # to it (writes in a new directory) is seen.
    roots = set(paths)
    watched: dict[str, tuple[int, int]] = {}
    anew: set[str] = set()
    scanned = True  # by _prepare
    began = False  # a change before the first watch is in place is not one to report
    try:
        while not stop.is_set():
            present = _identities(paths)
            if not present:
                remaining = hand_over_due()
                stop.wait(REWATCH_POLL if remaining is None else min(REWATCH_POLL, remaining))
                continue
            if watched:
                anew |= {path for path, inode in present.items() if watched.get(path) != inode}
            if not scanned:
                matcher.rescan()
            watched = present
            if PER_DIRECTORY:
                files = [path for path in present if path not in matcher.directories]
                targets = files + list(matcher.directories)
            else:
                targets = list(present)
            try:
                notify = RustNotify(targets, False, False, 300, not PER_DIRECTORY, False)
            except FileNotFoundError:  # removed since the scan: scan again
                moved = _moved_directories(matcher)
                if not moved and _identities(paths) == present:
                    raise  # not a removal: scanning again would not help
                if began:
                    quiet.add(moved, time.monotonic())
                scanned = True
                continue
            if PER_DIRECTORY:
                # a directory made after the scan, before its parent's watch was placed,
                # was seen by neither: scan again now that the watches are in place
                moved = _moved_directories(matcher)
                if moved:
                    notify.close()
                    if began:
                        quiet.add(moved, time.monotonic())
                    scanned = True
                    continue
            began = True
            with notify:
                anew &= present.keys()  # roots made anew: written before this watch began
                quiet.add(anew, time.monotonic())
                anew = set()
                missing = len(present) != len(paths)
                while not stop.is_set():
                    remaining = hand_over_due()
                    step = idle_step if remaining is None else busy_step
                    cap_ms = IDLE_CAP_MS if remaining is None else busy_cap_ms
                    # an idle call ends every half cap: a batch that took a whole cap
                    # then began with a change that went on that long
                    timeout_ms = (
                        IDLE_CAP_MS // 2
                        if remaining is None
                        else max(1, math.ceil(remaining * 1000))
                    )
                    if missing:
                        timeout_ms = min(timeout_ms, REWATCH_MS)
                    scanned = False  # unless this batch rescans, the next watch does
                    called = time.monotonic()
                    raw = notify.watch(cap_ms, step, timeout_ms, stop)
                    returned = time.monotonic()
                    if raw == "timeout":  # the quiet period is over, or a root is missing
                        if missing and _identities(paths).keys() != present.keys():
                            break
                        continue
                    if not isinstance(raw, set) or stop.is_set():
                        continue
                    changed = {path for _, path in raw}
                    # a .gitignore changes what is ignored (and so which directories)
                    scanned = any(os.path.basename(p) == ".gitignore" for p in changed)
                    if scanned:
                        matcher.rescan()
                    kept = {p for p in changed if not matcher.ignored(p)}
                    capped = returned - called >= cap_ms / 1000
                    quiet.add(kept, last_change(kept, returned, step / 1000, capped))
                    anew |= roots & changed
                    rewatch = bool(roots & changed) or _identities(paths) != present
                    if PER_DIRECTORY and not rewatch:
                        # each directory has a watch of its own: a new one, or one made
                        # again, needs a new watch
                        rewatch = scanned or _directories_changed(raw, kept, matcher)
                    if rewatch:
                        break
    except Exception as exc:  # e.g. a path removed before the watch began
        deliver(exc)


#: The cap of a batch that begins while nothing waits (ms).
IDLE_CAP_MS = 10_000

#: While a watched root is missing, how often to look for it again.
REWATCH_POLL = 0.1
REWATCH_MS = int(REWATCH_POLL * 1000)

#: On Linux every directory gets an inotify watch of its own, listed by
#: ``IgnoreMatcher.rescan``, instead of one recursive watch of each root: a recursive watch
#: also watches the ignored trees, and a big node_modules (30,000 directories) used up a
#: user's inotify watches (8,192 on many systems), which ended development mode. FSEvents
#: and ReadDirectoryChangesW watch a whole tree at no cost per directory (and watching
#: each directory would restart an FSEvents stream per directory), so they stay recursive.
PER_DIRECTORY = sys.platform.startswith("linux")

#: watchfiles' ``Change.deleted``
DELETED = 3


def _directories_changed(raw: set[tuple[int, str]], kept: set[str], matcher: IgnoreMatcher) -> bool:
    """Whether a watched directory was removed (its watch went with it), or one of ``kept``
    is a directory that is not watched, or watched as another inode. A directory made
    again may get the old inode number back, so the removal itself counts."""
    if any(change == DELETED and path in matcher.directories for change, path in raw):
        return True
    for path in kept:
        try:
            info = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and matcher.directories.get(path) != (
            info.st_dev,
            info.st_ino,
        ):
            return True
    return False


def _moved_directories(matcher: IgnoreMatcher) -> set[str]:
    """Scan again; return the directories made, removed or made again since the last scan."""
    before = matcher.directories
    matcher.rescan()
    after = matcher.directories
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


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
