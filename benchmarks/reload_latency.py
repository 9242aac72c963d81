"""Reload latency: from a file write to the new child's first line of code.

Runs processman (default ``watchDebounce`` and ``10ms``), the ``watchfiles`` CLI, and,
when npm is present, nodemon and PM2 (installed into a temporary folder) on the same
child and the same writes, in one run. For each: median and p90 over N single writes,
and how many restarts a burst of 20 writes gives, and a file rewritten every 5 ms for
500 ms.

    .venv/bin/python benchmarks/reload_latency.py [--trials 20]
        [--tools processman,watchfiles,nodemon,pm2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

CHILD = textwrap.dedent(
    """
    import sys, time
    with open(sys.argv[1], "a") as f:
        f.write(f"{time.time()}\\n")
    while True:
        time.sleep(60)
    """
)
REPO = Path(__file__).resolve().parent.parent
PROCESSMAN = [str(Path(sys.executable).parent / "processman")]


def starts(marker: Path) -> list[float]:
    try:
        return [float(line) for line in marker.read_text().split()]
    except FileNotFoundError:
        return []


def wait_for_starts(marker: Path, count: int, timeout: float = 15.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = starts(marker)
        if len(seen) >= count:
            return seen
        time.sleep(0.002)
    raise TimeoutError(f"expected {count} starts, saw {len(starts(marker))}")


class Tool:
    def __init__(
        self,
        name: str,
        command: Callable[[Path, Path, Path], list[str]],
        env: dict[str, str] | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.command, self.env, self.cleanup = name, command, env or {}, cleanup


def measure(tool: Tool, trials: int, workdir: Path) -> dict[str, object]:
    watched = workdir / tool.name.replace(" ", "_") / "src"
    watched.mkdir(parents=True)
    (watched / "child.py").write_text(CHILD)
    marker = workdir / f"{tool.name.replace(' ', '_')}.starts"
    argv = tool.command(watched, watched / "child.py", marker)
    proc = subprocess.Popen(
        argv,
        cwd=watched,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **tool.env},
    )
    latencies: list[float] = []
    try:
        wait_for_starts(marker, 1, 30)
        time.sleep(1.0)  # let the tool settle its watches
        for trial in range(trials):
            count = len(starts(marker))
            written = time.time()
            (watched / "trigger.py").write_text(f"trial = {trial}\n")
            seen = wait_for_starts(marker, count + 1)
            latencies.append(seen[count] - written)
            time.sleep(0.6)  # idle again before the next write
        time.sleep(1.0)
        count = len(starts(marker))
        for i in range(20):
            (watched / f"burst{i % 4}.py").write_text(f"i = {i}\n")
            time.sleep(0.001)
        time.sleep(3.0)
        burst_restarts = len(starts(marker)) - count
        count = len(starts(marker))
        end = time.monotonic() + 0.5  # SPEC §4: one file rewritten every 5 ms for 500 ms
        while time.monotonic() < end:
            (watched / "long_burst.py").write_text(f"t = {time.monotonic()}\n")
            time.sleep(0.005)
        time.sleep(3.0)
        long_burst_restarts = len(starts(marker)) - count
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        if tool.cleanup:
            tool.cleanup()
    latencies.sort()
    return {
        "tool": tool.name,
        "median_ms": statistics.median(latencies) * 1000,
        "p90_ms": latencies[int(0.9 * (len(latencies) - 1))] * 1000,
        "min_ms": latencies[0] * 1000,
        "max_ms": latencies[-1] * 1000,
        "burst_restarts": burst_restarts,
        "long_burst_restarts": long_burst_restarts,
    }


def processman_tool(debounce: str | None) -> Tool:
    def command(watched: Path, child: Path, marker: Path) -> list[str]:
        config = watched.parent / "processman.toml"
        extra = f'watchDebounce = "{debounce}"\n' if debounce else ""
        config.write_text(
            f'[[processes]]\nid = "child"\nscript = "{child}"\ninterpreter = "{sys.executable}"\n'
            f'args = ["{marker}"]\ncwd = "{watched}"\ndevMode = true\n{extra}\n'
            "[logs]\nconsole = false\n"
        )
        return [*PROCESSMAN, "run", str(config)]

    return Tool(f"processman ({debounce or 'default 50ms'})", command)


def watchfiles_tool() -> Tool:
    def command(watched: Path, child: Path, marker: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "watchfiles",
            "--filter",
            "all",
            f"{sys.executable} {child} {marker}",
            str(watched),
        ]

    return Tool("watchfiles CLI", command)


def npm_tools(workdir: Path) -> list[Tool]:
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: nodemon and PM2 skipped", file=sys.stderr)
        return []
    prefix = workdir / "npm"
    prefix.mkdir()
    result = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "nodemon", "pm2"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(
            f"npm install failed: nodemon and PM2 skipped\n{result.stderr[-500:]}", file=sys.stderr
        )
        return []
    bin_dir = prefix / "node_modules" / ".bin"

    def nodemon(watched: Path, child: Path, marker: Path) -> list[str]:
        return [
            str(bin_dir / "nodemon"),
            "--watch",
            str(watched),
            "--ext",
            "py",
            "--exec",
            f"{sys.executable} {child} {marker}",
        ]

    pm2_home = workdir / "pm2-home"

    def pm2(watched: Path, child: Path, marker: Path) -> list[str]:
        return [
            str(bin_dir / "pm2-runtime"),
            "start",
            str(child),
            "--interpreter",
            sys.executable,
            "--watch",
            str(watched),
            "--name",
            "bench",
            "--",
            str(marker),
        ]

    def pm2_cleanup() -> None:
        subprocess.run(
            [str(bin_dir / "pm2"), "kill"],
            env={**os.environ, "PM2_HOME": str(pm2_home)},
            capture_output=True,
        )

    return [Tool("nodemon", nodemon), Tool("PM2", pm2, {"PM2_HOME": str(pm2_home)}, pm2_cleanup)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--tools", default="processman,watchfiles,nodemon,pm2")
    args = parser.parse_args()
    wanted = set(args.tools.split(","))
    with tempfile.TemporaryDirectory(prefix="pm-reload-") as tmp:
        workdir = Path(tmp)
        tools: list[Tool] = []
        if "processman" in wanted:
            tools += [processman_tool(None), processman_tool("10ms")]
        if "watchfiles" in wanted:
            tools.append(watchfiles_tool())
        if wanted & {"nodemon", "pm2"}:
            tools += [t for t in npm_tools(workdir) if t.name.lower() in wanted]
        results = [measure(tool, args.trials, workdir) for tool in tools]
    print(
        f"\nReload latency, {args.trials} single writes each; burst = 20 writes in ~25 ms; "
        "long burst = one file rewritten every 5 ms for 500 ms\n"
    )
    print("| tool | median | p90 | min–max | restarts per burst | per long burst |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['tool']} | {r['median_ms']:.0f} ms | {r['p90_ms']:.0f} ms | "
            f"{r['min_ms']:.0f}–{r['max_ms']:.0f} ms | {r['burst_restarts']} | "
            f"{r['long_burst_restarts']} |"
        )


if __name__ == "__main__":
    main()
