"""How fast can a manager of processman's size start 50 Python children? (issue 6's launch)

An experiment behind docs/benchmarks.md, not a feature: from a process that has imported
``processman.app.cli`` (so it is as large as the manager), start 50 children that each
write a marker, until every marker exists, in these ways:

- ``fork+preexec_fn``: ``subprocess.Popen`` with a ``preexec_fn`` as the Linux spawner
  has in an embedding application (``PR_SET_PDEATHSIG``): CPython must fork the whole
  manager;
- ``vfork``: ``subprocess.Popen`` without one (what the bare launcher does): no cgroup
  join and no PDEATHSIG are possible this way;
- ``helper``: a small long-lived ``python -I -S`` helper that forks on request and sets
  PDEATHSIG in the child (a "fork server");
- ``sh+env trampoline``: vfork ``/bin/sh``, which joins the cgroup (here: writes to
  /dev/null) and execs ``env -i NAME=VALUE... argv`` (dash alone drops variables such as
  ``A.B``);
- ``from the leaf`` (where this process may move between cgroups): move into a fresh
  cgroup, vfork, move back: what ``processman run`` does.

    .venv/bin/python benchmarks/spawn_methods.py [--runs 5]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare import CHILD

import processman.app.cli  # noqa: F401 - the manager's size is part of the experiment
from processman.adapters.spawn_linux import _join, cgroup2_base

N = 50
HELPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
argv = sys.argv[1:]
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
        os.setsid()
        os.execv(argv[0], argv)
    sys.stdout.write(f"{pid}\\n")
    sys.stdout.flush()
while True:  # stdin closed: reap what was started (this machine's PID 1 reaps nothing)
    try:
        os.wait()
    except ChildProcessError:
        break
"""
_LIBC = ctypes.CDLL(None, use_errno=True)


def _pdeathsig() -> None:
    _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)
    os.getppid()


def _until_all_started(markers: Path, started: float) -> float:
    while len(os.listdir(markers)) < N:
        if time.perf_counter() - started > 60:
            raise RuntimeError(f"{len(os.listdir(markers))}/{N} children started")
        time.sleep(0.001)
    return time.perf_counter() - started


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def direct(argv: list[str], markers: Path, **options: object) -> float:
    started = time.perf_counter()
    children = [subprocess.Popen(argv, start_new_session=True, **options) for _ in range(N)]
    try:
        return _until_all_started(markers, started)
    finally:
        _kill([c.pid for c in children])
        for child in children:
            child.wait()


def from_leaf(argv: list[str], markers: Path, home: str) -> float:
    """What ``LinuxSpawner(spawn_from_leaf=True)`` does: move into a fresh cgroup, vfork,
    move back."""
    tree = os.path.join(home, f"pm-spawn-{os.getpid()}")
    os.mkdir(tree)
    leaves = []
    children = []
    try:
        started = time.perf_counter()
        for i in range(N):
            leaves.append(os.path.join(tree, str(i)))
            os.mkdir(leaves[-1])
            _join(leaves[-1])
            try:
                children.append(subprocess.Popen(argv, start_new_session=True))
            finally:
                _join(home)
        return _until_all_started(markers, started)
    finally:
        _kill([c.pid for c in children])
        for child in children:
            child.wait()
        for leaf in [*leaves, tree]:
            os.rmdir(leaf)


def helper(argv: list[str], markers: Path) -> float:
    server = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", HELPER, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    pids: list[int] = []
    try:
        time.sleep(0.2)  # the helper is started once, with the manager: not part of a launch
        started = time.perf_counter()
        for _ in range(N):
            server.stdin.write("spawn\n")
            server.stdin.flush()
            pids.append(int(server.stdout.readline()))
        return _until_all_started(markers, started)
    finally:
        _kill(pids)
        server.stdin.close()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.pop("PYTHONUNBUFFERED", None)
    root = Path(tempfile.mkdtemp(prefix="pm-spawn-"))
    try:
        (root / "child.py").write_text(CHILD)
        markers = root / "markers"
        argv = [sys.executable, str(root / "child.py"), str(markers)]
        env = [f"{k}={v}" for k, v in os.environ.items()]
        trampoline = [
            "/bin/sh",
            "-c",
            'echo 0 > "$0" && exec "$@"',
            "/dev/null",
            "/usr/bin/env",
            "-i",
            "--",
            *env,
            *argv,
        ]
        methods = {
            "fork+preexec_fn": lambda: direct(argv, markers, preexec_fn=_pdeathsig),
            "vfork": lambda: direct(argv, markers),
            "helper": lambda: helper(argv, markers),
            "sh+env trampoline": lambda: direct(trampoline, markers, env={}),
        }
        base = cgroup2_base()
        if base and os.access(os.path.join(base, "cgroup.procs"), os.W_OK):
            methods["from the leaf"] = lambda: from_leaf(argv, markers, base)
        results: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.runs):
            for name, method in methods.items():
                shutil.rmtree(markers, ignore_errors=True)
                markers.mkdir()
                results[name].append(method())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{N} Python children from a manager-sized process, median (min–max) of {args.runs}:")
    for name, values in results.items():
        print(
            f"- {name}: {statistics.median(values) * 1000:.0f} ms "
            f"({min(values) * 1000:.0f}–{max(values) * 1000:.0f})"
        )


if __name__ == "__main__":
    main()
