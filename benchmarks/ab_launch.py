"""A/B: processman at a git ref against this checkout, on the same children, interleaved.

Both are installed as a user gets them (``pip install``, no development packages) into
temporary venvs; for each child count, the runs alternate bare ``Popen``, the ref and
the checkout, and the medians are compared. It answers "did this change cost anything?"
(the orchestration work must launch a config without probes or dependencies exactly as
fast as before).

    .venv/bin/python benchmarks/ab_launch.py [--ref c609a3e] [--children 50,500] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the same children and measure as the peer comparison


def install_ref(root: Path, ref: str) -> Path:
    tree = root / "ref-tree"
    subprocess.run(
        ["git", "-C", str(compare.REPO), "worktree", "add", "-q", str(tree), ref], check=True
    )
    try:
        return compare.install_processman(root, tree, "ref-venv")
    finally:
        subprocess.run(
            ["git", "-C", str(compare.REPO), "worktree", "remove", "--force", str(tree)], check=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", default="c609a3e")
    parser.add_argument("--children", default="50,500")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pm-ab-"))
    try:
        tools = [
            compare.Tool("bare Popen", compare.bare),
            compare.Tool(f"processman {args.ref}", compare.processman(install_ref(root, args.ref))),
            compare.Tool("processman now", compare.processman(compare.install_processman(root))),
        ]
        for n in (int(c) for c in args.children.split(",")):
            results: dict[str, list[dict[str, float]]] = {t.name: [] for t in tools}
            for run in range(args.runs):
                for tool in tools:
                    results[tool.name].append(compare.measure(tool, n, 1.0, root))
                    print(
                        f"{n} children, run {run + 1}: {tool.name}: {results[tool.name][-1]}",
                        file=sys.stderr,
                    )
            print(f"\n{n} children, median of {args.runs} interleaved runs\n")
            print("| | launch | RSS | stop |\n|---|---|---|---|")
            medians = {
                name: {
                    k: statistics.median(r[k] for r in runs)
                    for k in ("launch_s", "rss_mib", "shutdown_s")
                }
                for name, runs in results.items()
            }
            for name, m in medians.items():
                launch, rss, stop = m["launch_s"], m["rss_mib"], m["shutdown_s"]
                print(f"| {name} | {launch:.3f} s | {rss:.1f} MiB | {stop:.3f} s |")
            ref, now, bare = (medians[t.name] for t in (tools[1], tools[2], tools[0]))
            print(
                f"\nlaunch: now / ref = {now['launch_s'] / ref['launch_s']:.3f}; "
                f"now / bare = {now['launch_s'] / bare['launch_s']:.3f}, "
                f"ref / bare = {ref['launch_s'] / bare['launch_s']:.3f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
