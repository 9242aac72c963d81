"""Development mode's idle cost: 5 processes watching trees of 10,000 files each.

Reports how long ``processman run`` takes until every watch picks up a write, and the
manager's own CPU time (user + system, children excluded) over 10 s of idle.

    .venv/bin/python benchmarks/watch_idle.py [--trees 5] [--files 10000] [--idle 10]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

CHILD = (
    "import sys, time\nopen(sys.argv[1], 'a').write(f'{time.time()}\\n')\n"
    "while True: time.sleep(60)\n"
)
PROCESSMAN = str(Path(sys.executable).parent / "processman")


def make_tree(root: Path, files: int) -> None:
    per_dir = 100
    for d in range(files // per_dir):
        directory = root / f"pkg{d:03d}"
        directory.mkdir(parents=True)
        for f in range(per_dir):
            (directory / f"m{f:03d}.py").write_text("x = 1\n")


def starts(marker: Path) -> int:
    return len(marker.read_text().split()) if marker.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trees", type=int, default=5)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pm-idle-") as tmp:
        work = Path(tmp)
        (work / "child.py").write_text(CHILD)
        lines = []
        for i in range(args.trees):
            tree = work / f"tree{i}"
            make_tree(tree, args.files)
            lines.append(
                f'[[processes]]\nid = "dev{i}"\nscript = "{work / "child.py"}"\n'
                f'interpreter = "{sys.executable}"\n'
                f'args = ["{work / f"starts{i}"}"]\ncwd = "{tree}"\ndevMode = true\n'
            )
        config = work / "processman.toml"
        config.write_text("\n".join(lines) + "\n[logs]\nconsole = false\n")
        launched = time.monotonic()
        proc = subprocess.Popen(
            [PROCESSMAN, "run", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            markers = [work / f"starts{i}" for i in range(args.trees)]
            while not all(starts(m) >= 1 for m in markers):
                time.sleep(0.005)
            # write into every tree until each process has reloaded once: then all watch
            watching = [False] * args.trees
            while not all(watching):
                for i, _m in enumerate(markers):
                    if not watching[i]:
                        (work / f"tree{i}" / "pkg000" / "probe.py").write_text(str(time.time()))
                time.sleep(0.15)  # longer than the quiet period, or no reload would ever start
                watching = [starts(m) >= 2 for m in markers]
            ready = time.monotonic() - launched
            time.sleep(1.0)
            manager = psutil.Process(proc.pid)
            before = manager.cpu_times()
            time.sleep(args.idle)
            after = manager.cpu_times()
            cpu = (after.user - before.user) + (after.system - before.system)
            rss = manager.memory_info().rss / 2**20
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    print(f"\n{args.trees} dev-mode processes, {args.files} files each\n")
    print("| measure | processman |")
    print("|---|---|")
    print(f"| launch until every watch reports a write | {ready:.2f} s |")
    print(f"| manager CPU over {args.idle:g} s idle | {cpu:.3f} CPU-s |")
    print(f"| manager RSS | {rss:.1f} MiB |")


if __name__ == "__main__":
    main()
