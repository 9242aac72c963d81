"""processman beside its peers on the same children: launch, memory, idle CPU, shutdown.

For each tool (a bare ``subprocess.Popen`` launcher as the physical limit, processman,
supervisord and circus from PyPI in a temporary venv, PM2 from npm in a temporary folder
when npm is present), over ``--runs`` runs: start it on N children that each write a
marker file when they start, then measure from outside with psutil:

- launch: from the tool's start until every child has written its marker;
- RSS: the tool's own processes (its process tree minus the children), after 1 s;
- idle CPU: the tool's own processes' CPU time over ``--idle`` seconds;
- shutdown: from SIGTERM to the tool until every child pid is gone and the tool exited.

    .venv/bin/python benchmarks/compare.py [--children 50] [--runs 3] [--idle 20]
        [--tools bare,processman,supervisord,circus,pm2] [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import select
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

import psutil

if TYPE_CHECKING:
    from collections.abc import Callable

CHILD = textwrap.dedent(
    """
    import os, sys, time
    open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
    while True:
        time.sleep(3600)
    """
)
BARE = textwrap.dedent(
    """
    import signal, subprocess, sys
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    n, child, markers = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    procs = [subprocess.Popen([sys.executable, child, markers], start_new_session=True)
             for _ in range(n)]
    while not stop:
        signal.pause()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    """
)
REPO = Path(__file__).resolve().parent.parent


class Tool:
    """How to start one tool on N children in a work directory."""

    def __init__(
        self,
        name: str,
        command: Callable[[Path, int], list[str]],
        env: dict[str, str] | None = None,
        cleanup: Callable[[Path], None] | None = None,
    ):
        self.name, self.command, self.env, self.cleanup = name, command, env or {}, cleanup


def child_argv(work: Path) -> list[str]:
    return [sys.executable, str(work / "child.py"), str(work / "markers")]


def bare(work: Path, n: int) -> list[str]:
    return [
        sys.executable,
        str(work / "bare.py"),
        str(n),
        str(work / "child.py"),
        str(work / "markers"),
    ]


def processman(venv: Path) -> Callable[[Path, int], list[str]]:
    def command(work: Path, n: int) -> list[str]:
        argv = child_argv(work)
        entries = "".join(
            f'[[processes]]\nid = "c{i}"\ncommand = {json.dumps(argv)}\nstopTimeout = "2s"\n\n'
            for i in range(n)
        )
        (work / "processman.toml").write_text(entries + "[logs]\nconsole = false\n")
        return [str(venv / "bin" / "processman"), "run", str(work / "processman.toml")]

    return command


def install_processman(root: Path, source: Path = REPO, name: str = "processman-venv") -> Path:
    """processman as a user gets it: ``pip install`` of ``source`` (this checkout) into a
    fresh venv (no development packages, which would change what its imports cost)."""
    venv = root / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(source)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return venv


def supervisord(peers: Path) -> Callable[[Path, int], list[str]]:
    def command(work: Path, n: int) -> list[str]:
        programs = "".join(
            f"[program:c{i}]\ncommand={' '.join(child_argv(work))}\nstartsecs=0\n"
            "stopasgroup=true\nkillasgroup=true\nstopwaitsecs=2\n\n"
            for i in range(n)
        )
        conf = work / "supervisord.conf"
        conf.write_text(
            f"[supervisord]\nnodaemon=true\nlogfile={work}/supervisord.log\n"
            f"pidfile={work}/supervisord.pid\nchildlogdir={work}\n\n"
            f"[unix_http_server]\nfile={work}/supervisor.sock\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            + programs
        )
        return [str(peers / "bin" / "supervisord"), "-c", str(conf)]

    return command


def circus(peers: Path) -> Callable[[Path, int], list[str]]:
    def command(work: Path, n: int) -> list[str]:
        base = 25000 + (os.getpid() % 1000) * 3
        watchers = "".join(
            f"[watcher:c{i}]\ncmd={' '.join(child_argv(work))}\nnumprocesses=1\n"
            "graceful_timeout=2\nstop_children=true\n\n"
            for i in range(n)
        )
        conf = work / "circus.ini"
        conf.write_text(
            f"[circus]\nendpoint=tcp://127.0.0.1:{base}\n"
            f"pubsub_endpoint=tcp://127.0.0.1:{base + 1}\n"
            f"check_delay=5\nstatsd=False\n\n" + watchers
        )
        return [str(peers / "bin" / "circusd"), str(conf)]

    return command


def pm2(npm_prefix: Path) -> Callable[[Path, int], list[str]]:
    def command(work: Path, n: int) -> list[str]:
        argv = child_argv(work)
        apps = [
            {
                "name": f"c{i}",
                "script": argv[1],
                "args": argv[2:],
                "interpreter": argv[0],
                "autorestart": True,
                "kill_timeout": 2000,
            }
            for i in range(n)
        ]
        (work / "ecosystem.config.js").write_text("module.exports = " + json.dumps({"apps": apps}))
        return [
            str(npm_prefix / "node_modules" / ".bin" / "pm2-runtime"),
            str(work / "ecosystem.config.js"),
        ]

    return command


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """``proc.wait(timeout)`` without its polling: ``Popen.wait`` with a timeout sleeps
    0.5, 1, 2, ... 50 ms between checks, which would round an exit at 32 ms up to 64."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(pidfd)
    proc.wait()


def own_processes(tool: psutil.Process, children: set[int]) -> list[psutil.Process]:
    procs = [tool]
    try:
        procs += [p for p in tool.children(recursive=True) if p.pid not in children]
    except psutil.NoSuchProcess:
        pass
    return procs


def measure(tool: Tool, n: int, idle: float, root: Path) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(dir=root))
    (work / "markers").mkdir()
    (work / "child.py").write_text(CHILD)
    (work / "bare.py").write_text(BARE)
    argv = tool.command(work, n)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **tool.env},
        start_new_session=True,
    )
    result: dict[str, float] = {}
    children: set[int] = set()
    try:
        markers = work / "markers"
        deadline = started + 60
        while len(os.listdir(markers)) < n:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{tool.name}: {len(os.listdir(markers))}/{n} children started")
            time.sleep(0.002)
        result["launch_s"] = time.monotonic() - started
        children = {int(name) for name in os.listdir(markers)}
        time.sleep(1.0)
        manager = psutil.Process(proc.pid)
        own = own_processes(manager, children)
        result["rss_mib"] = sum(p.memory_info().rss for p in own) / 2**20
        before = sum(sum(p.cpu_times()[:2]) for p in own)
        time.sleep(idle)
        own = own_processes(manager, children)
        result["idle_cpu_s"] = sum(sum(p.cpu_times()[:2]) for p in own) - before
        stop_started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_exit(proc, 60)
        while [pid for pid in children if alive(pid)]:
            if time.monotonic() - stop_started > 60:
                raise RuntimeError(f"{tool.name}: children still alive 60 s after SIGTERM")
            time.sleep(0.001)
        result["shutdown_s"] = time.monotonic() - stop_started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if tool.cleanup:
            tool.cleanup(work)
    return result


def install(root: Path, wanted: set[str]) -> dict[str, Path]:
    """Install what ``wanted`` names into ``root``: {tool: its venv or npm prefix}.

    processman from this checkout, supervisor and circus from PyPI (one venv), PM2 with
    npm (skipped when npm is missing or fails: no internet, no registry).
    """
    found: dict[str, Path] = {}
    if "processman" in wanted:
        found["processman"] = install_processman(root)
    if wanted & {"supervisord", "circus"}:
        peers = root / "peers"
        subprocess.run([sys.executable, "-m", "venv", str(peers)], check=True)
        packages = [
            p for p, name in (("supervisor", "supervisord"), ("circus", "circus")) if name in wanted
        ]
        subprocess.run([str(peers / "bin" / "pip"), "install", "--quiet", *packages], check=True)
        found.update({name: peers for name in ("supervisord", "circus") if name in wanted})
    npm = shutil.which("npm")
    if "pm2" in wanted and npm:
        prefix = root / "npm"
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "pm2"],
            capture_output=True,
        )
        if done.returncode == 0:
            found["pm2"] = prefix
    return found


def tools_for(installed: dict[str, Path], root: Path) -> list[Tool]:
    """The launch scenario's tools, in table order."""
    makers: dict[str, Callable[[Path], Callable[[Path, int], list[str]]]] = {
        "processman": processman,
        "supervisord": supervisord,
        "circus": circus,
        "pm2": pm2,
    }
    names = {"pm2": "PM2"}
    return [
        Tool(
            names.get(key, key),
            makers[key](path),
            {"PM2_HOME": str(root / "pm2-home")} if key == "pm2" else None,
        )
        for key, path in installed.items()
    ]


def write_section(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in path."""
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    document = path.read_text()
    if begin not in document or end not in document:
        raise SystemExit(f"{path}: no {begin.strip()} ... {end} markers to write between")
    head, rest = document.split(begin, 1)
    path.write_text(head + begin + text + rest[rest.index(end) :])


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--tools", default="bare,processman,supervisord,circus,pm2")
    parser.add_argument("--markdown", help="replace the compare section of this file")
    args = parser.parse_args()
    wanted = set(args.tools.split(","))
    root = Path(tempfile.mkdtemp(prefix="pm-compare-"))
    try:
        tools = [Tool("bare Popen", bare)] if "bare" in wanted else []
        tools += tools_for(install(root, wanted), root)
        results: dict[str, list[dict[str, float]]] = {t.name: [] for t in tools}
        for run in range(args.runs):
            for tool in tools:
                results[tool.name].append(measure(tool, args.children, args.idle, root))
                print(f"run {run + 1}: {tool.name}: {results[tool.name][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    metrics = [
        ("launch_s", f"Launch {args.children} children until every one runs", "s"),
        ("rss_mib", "Manager RSS (its own processes, children excluded)", "MiB"),
        ("idle_cpu_s", f"Manager CPU over {args.idle:g} s idle", "CPU-s"),
        ("shutdown_s", "Stop (SIGTERM) until every child is gone and the tool exited", "s"),
    ]
    report = (
        f"Run of {time.strftime('%Y-%m-%d')}, {args.children} children, median (min–max) of "
        f"{args.runs} runs; ratio = processman / tool.\n\n"
    )
    for key, title, unit in metrics:
        report += table(
            title, {name: [r[key] for r in runs] for name, runs in results.items()}, unit
        )
    print(report)
    if args.markdown:
        write_section(Path(args.markdown), "compare", report)


def table(title: str, rows: dict[str, list[float]], unit: str) -> str:
    """One scenario: each tool's median (min–max) and processman's ratio to it."""
    ours = statistics.median(rows["processman"]) if rows.get("processman") else None
    out = f"#### {title}\n\n| tool | {unit} | processman ratio |\n|---|---|---|\n"
    for name, values in rows.items():
        ratio = ""
        if ours is not None and not name.startswith("processman"):
            theirs = statistics.median(values)
            ratio = f"{ours / theirs:.2f}" if theirs else "-"
        out += f"| {name} | {summary(values)} | {ratio} |\n"
    return out + "\n"


if __name__ == "__main__":
    main()
