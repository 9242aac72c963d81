"""Where ``processman run`` spends its time while it launches N children: a py-spy profile.

The profile behind docs/benchmarks.md ("Why launch misses"). processman is installed
from this checkout into a temporary venv (as compare.py does) together with py-spy from
PyPI; ``py-spy record`` attaches to ``processman run`` (started stopped, so that no
import is missed) on compare.py's launch scenario (N children that each write a marker
when they start), samples it from outside at 1 kHz without pausing it, and stops when
every child has started. The samples are then summed
by phase: the interpreter's imports, the spawns (split into the ``vfork`` + exec, the
cgroup moves and the rest), and everything else; and the frames that hold the most
samples are listed. Needs ptrace (root, or CAP_SYS_PTRACE). Runs ``--runs`` times and
prints each phase's median (min–max) over the runs, then the heaviest frames.

    .venv/bin/python benchmarks/profile_launch.py [--children 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from compare import CHILD, install_processman, processman, wait_exit

RATE = 1000
PHASES = (
    "imports",
    "spawn: Popen (vfork, exec and its Python)",
    "spawn: cgroup moves",
    "spawn: the rest",
    "the rest (config, loop, runner, state)",
)


def phase(stack: list[str]) -> str:
    """The phase of one sampled stack (outermost frame first)."""

    def has(frame: str) -> bool:
        return any(frame in f for f in stack)

    if has("_find_and_load"):  # a spawn's lazy imports count as imports
        return PHASES[0]
    if not has("LinuxSpawner.spawn"):
        return PHASES[4]
    if has("Popen._execute_child"):
        return PHASES[1]
    return PHASES[2] if has("_join_procs") else PHASES[3]


#: ``processman run`` behind a stop: py-spy attaches while it is stopped, so that the
#: profile has the imports from the first one (``py-spy record -- command`` starts
#: sampling only once it has found the interpreter, tens of milliseconds in)
STOPPED = (
    "import os, runpy, signal, sys; os.kill(os.getpid(), signal.SIGSTOP); "
    "sys.argv = ['processman', *sys.argv[1:]]; "
    "runpy.run_module('processman', run_name='__main__', alter_sys=True)"
)


def record(venv: Path, work: Path, n: int) -> tuple[Path, float]:
    """Profile one launch; the raw py-spy output and the launch time."""
    (work / "child.py").write_text(CHILD)
    (work / "markers").mkdir()
    argv = [str(venv / "bin" / "python"), "-c", STOPPED, *processman(venv)(work, n)[1:]]
    output = work / "profile.txt"
    manager = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    spy = None
    try:
        while psutil.Process(manager.pid).status() != psutil.STATUS_STOPPED:
            time.sleep(0.001)
        spy = subprocess.Popen(
            [
                str(venv / "bin" / "py-spy"),
                "record",
                "--nonblocking",
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--output",
                str(output),
                "--pid",
                str(manager.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attached (a stopped process gives no samples)
        started = time.monotonic()
        manager.send_signal(signal.SIGCONT)
        while len(os.listdir(work / "markers")) < n:
            if manager.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError(f"processman ended early ({manager.returncode})")
            time.sleep(0.002)
        launch = time.monotonic() - started
        spy.send_signal(signal.SIGINT)  # py-spy stops sampling and writes the profile
        wait_exit(spy, 60)
        manager.send_signal(signal.SIGTERM)
        wait_exit(manager, 60)
    finally:
        for proc in (manager, spy):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for name in os.listdir(work / "markers"):
            try:
                os.kill(int(name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return output, launch


def summarise(output: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Samples per phase and per innermost frame."""
    phases: collections.Counter[str] = collections.Counter()
    frames: collections.Counter[str] = collections.Counter()
    total = 0
    for line in output.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        stack = stack_text.split(";")
        count = int(count_text)
        total += count
        phases[phase(stack)] += count
        frames[stack[-1]] += count
    return phases, frames, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pm-profile-"))
    try:
        venv = install_processman(root)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "py-spy"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        per_phase: dict[str, list[float]] = collections.defaultdict(list)
        all_frames: collections.Counter[str] = collections.Counter()
        launches, totals = [], []
        for _ in range(args.runs):
            work = Path(tempfile.mkdtemp(dir=root))
            output, launch = record(venv, work, args.children)
            phases, frames, total = summarise(output)
            launches.append(launch)
            totals.append(total / RATE * 1000)
            for name in PHASES:
                per_phase[name].append(phases[name] / RATE * 1000)
            all_frames.update(frames)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.children} children, {args.runs} runs under py-spy: launch {summary(launches)} s; "
        f"samples (ms on the CPU, in a syscall or waiting for a CPU): {summary(totals)}"
    )
    for name, values in per_phase.items():
        print(f"- {name}: {summary(values)} ms")
    print("heaviest innermost frames, all runs together (ms per run):")
    for frame, count in all_frames.most_common(12):
        print(f"  {count / RATE * 1000 / args.runs:5.0f}  {frame}")


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


if __name__ == "__main__":
    if not sys.platform.startswith("linux"):
        raise SystemExit("py-spy from outside: Linux only here")
    main()
