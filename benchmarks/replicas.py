"""Replicas (SPEC §9): launch, scaling churn, and a rolling restart, as ratios in one run.

1. A group of N replicas against N separate processes, launched by ``processman run``
   (installed as a user gets it), interleaved: the group must launch within 1.05 x.
2. Scaling a group 0 -> 100 -> 0 ten times in one manager: zombies, open fds and RSS
   growth (after a first warm-up cycle) must be 0, 0 and under 2 MB.
3. A rolling restart of 4 replicas of a server that is ready once it says so, against 4
   times one instance's restart (stop + start + ready): at most 1.2 x.

    .venv/bin/python benchmarks/replicas.py [--children 500] [--runs 5] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import compare  # noqa: E402 - the same children and measure as the peer comparison

from processman import ProcessManager  # noqa: E402
from processman.domain.model import Config, LogSettings, Probe, ProbeKind, ProcessSpec  # noqa: E402

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"


def group_of(venv: Path):  # type: ignore[no-untyped-def]
    def command(work: Path, n: int) -> list[str]:
        argv = compare.child_argv(work)
        (work / "processman.toml").write_text(
            f'[[processes]]\nid = "c"\ncommand = {compare.json.dumps(argv)}\n'
            f'stopTimeout = "2s"\nreplicas = {n}\n\n[logs]\nconsole = false\n'
        )
        return [str(venv / "bin" / "processman"), "run", str(work / "processman.toml")]

    return command


def launch(root: Path, n: int, runs: int) -> tuple[float, float]:
    venv = compare.install_processman(root)
    tools = [
        compare.Tool(f"{n} separate processes", compare.processman(venv)),
        compare.Tool(f"a group of {n} replicas", group_of(venv)),
    ]
    results: dict[str, list[float]] = {t.name: [] for t in tools}
    for run in range(runs):
        for tool in tools:
            seconds = compare.measure(tool, n, 0.2, root)["launch_s"]
            results[tool.name].append(seconds)
            print(f"  run {run + 1}: {tool.name}: {seconds * 1000:.0f} ms", flush=True)
    separate, group = (statistics.median(results[t.name]) for t in tools)
    return separate, group


def own_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def zombies() -> int:
    return sum(1 for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE)


async def scale_churn(cycles: int, size: int) -> dict[str, float]:
    sleep = shutil.which("sleep") or "/bin/sleep"
    spec = ProcessSpec(id="w", cwd="/", command=(sleep, "600"), replicas=0, stop_timeout=2.0)
    me = psutil.Process()
    async with ProcessManager(Config(processes=(spec,), logs=LogSettings(console=False))) as m:
        await m.scale("w", size)  # warm-up: imports, buffers, the first cgroups
        await m.scale("w", 0)
        gc.collect()
        fds, rss = own_fds(), me.memory_info().rss
        started = time.monotonic()
        for _ in range(cycles):
            await m.scale("w", size)
            await m.scale("w", 0)
        seconds = time.monotonic() - started
        gc.collect()
        return {
            "seconds": seconds,
            "zombies": zombies(),
            "extra_fds": own_fds() - fds,
            "rss_growth_mb": (me.memory_info().rss - rss) / 1e6,
        }


def server(**values: object) -> ProcessSpec:
    return ProcessSpec(
        id="web",
        cwd=str(TESTDATA),
        command=(sys.executable, str(TESTDATA / "fd_server.py")),
        ready=Probe(kind=ProbeKind.LOG_LINE, target="serving"),
        stop_timeout=5.0,
        **values,  # type: ignore[arg-type]
    )


async def rolling(runs: int) -> tuple[float, float]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = (f"127.0.0.1:{port}",)
    single_times, rolling_times = [], []
    logs = LogSettings(console=False)
    one = server(sockets=address)
    group = server(sockets=address, replicas=4)
    async with ProcessManager(Config(processes=(one,), logs=logs)) as m:
        await m.wait_ready("web", timeout=10)
        for _ in range(runs):
            started = time.monotonic()
            await m.restart("web")
            await m.wait_ready("web", timeout=10)
            single_times.append(time.monotonic() - started)
    async with ProcessManager(Config(processes=(group,), logs=logs)) as m:
        await m.wait_ready("web", timeout=10)
        for _ in range(runs):
            started = time.monotonic()
            await m.restart("web")
            rolling_times.append(time.monotonic() - started)
    return statistics.median(single_times), statistics.median(rolling_times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pm-replicas-"))
    try:
        print(f"launch, {args.children} children, {args.runs} interleaved runs:")
        separate, group = launch(root, args.children, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("scaling 0 -> 100 -> 0, ten times:")
    churn = anyio.run(scale_churn, 10, 100)
    print("rolling restart of 4 replicas:")
    single, roll = anyio.run(rolling, args.runs)
    lines = [
        "| measure | figure | target |",
        "|---|---|---|",
        f"| launch: a group of {args.children} replicas / {args.children} separate processes "
        f"| {group * 1000:.0f} / {separate * 1000:.0f} ms = {group / separate:.2f} x | <= 1.05 x |",
        f"| scale 0 -> 100 -> 0, ten times ({churn['seconds']:.1f} s): zombies, extra fds "
        f"| {churn['zombies']:.0f}, {churn['extra_fds']:.0f} | 0, 0 |",
        f"| ... RSS growth of the manager | {churn['rss_growth_mb']:.2f} MB | < 2 MB |",
        f"| rolling restart of 4 / (4 x one restart: stop + start + ready) "
        f"| {roll * 1000:.0f} / (4 x {single * 1000:.0f}) ms = {roll / (4 * single):.2f} x "
        "| <= 1.2 x |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        compare.write_section(args.markdown, "replicas", text + "\n")


if __name__ == "__main__":
    main()
