"""processman beside its peers on the scenarios of issue 6 beyond launch and idle.

Each scenario runs every tool (processman installed from this checkout into a fresh
venv, supervisord and circus from PyPI, PM2 from npm; see ``compare.install``) on the
same children, ``--runs`` times, and is measured from outside:

- crash loop: a child that logs its start time and exits 1 at once, each tool at its
  smallest restart delay; the median interval between two starts;
- stop with 5 of 50 children ignoring SIGTERM (stop timeout 2 s): SIGTERM to the tool
  until the 45 others are gone, and until all 50 are;
- 200,000 lines to a file: from the child's start to the last line in the tool's log
  file; the file is checked line by line (nothing missing, duplicated or reordered) and
  the child reports how long its own writes took (it blocks when the tool falls behind),
  beside the same child writing straight to the file and to /dev/null; then the same
  with the child unbuffered (a write per line);
- the same through processman's loguru console sink (stderr to /dev/null);
- 500 children (processman and the bare launcher): launch, manager RSS per child, and
  the p99 of ``GET /api/processes``.

    .venv/bin/python benchmarks/scenarios.py [--runs 3] [--tools processman,supervisord,...]
        [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from compare import (
    BARE,
    CHILD,
    alive,
    install,
    own_processes,
    summary,
    table,
    wait_exit,
    write_section,
)

LINES = 200_000
CRASHER = textwrap.dedent(
    """
    import sys, time
    with open(sys.argv[1], "a") as f:
        f.write(f"{time.monotonic()}\\n")
    sys.exit(1)
    """
)
IGNORER = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
    while True:
        time.sleep(3600)
    """
)
WRITER = textwrap.dedent(
    f"""
    import os, sys, time
    def note(suffix, value):  # atomically: the benchmark polls for these files
        open(sys.argv[1] + suffix + ".tmp", "w").write(str(value))
        os.replace(sys.argv[1] + suffix + ".tmp", sys.argv[1] + suffix)
    started = time.monotonic()
    note(".start", started)
    write = sys.stdout.write
    for i in range({LINES}):
        write(f"line {{i:06d}} of the log throughput benchmark\\n")
    sys.stdout.flush()
    note(".wrote", time.monotonic() - started)
    while True:
        time.sleep(3600)
    """
)
EXPECTED = [f"line {i:06d} of the log throughput benchmark" for i in range(LINES)]


@dataclass
class Program:
    id: str
    argv: list[str]
    crash_loop: bool = False
    log_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


# --- configs: the same programs for every tool ---------------------------------------


def configure(
    tool: str, home: Path, work: Path, programs: list[Program], **options: object
) -> tuple[list[str], dict[str, str]]:
    """Write ``tool``'s config for ``programs`` in ``work``; return its argv and env."""
    if tool == "processman":
        return _processman(home, work, programs, **options), {}
    if tool == "supervisord":
        return _supervisord(home, work, programs), {}
    if tool == "circus":
        return _circus(home, work, programs), {}
    if tool == "PM2":
        return _pm2(home, work, programs), {"PM2_HOME": str(work / "pm2-home")}
    raise ValueError(tool)


def _processman(
    venv: Path,
    work: Path,
    programs: list[Program],
    console: bool = False,
    api: str | None = None,
) -> list[str]:
    text = ""
    for p in programs:
        text += f'[[processes]]\nid = "{p.id}"\ncommand = {json.dumps(p.argv)}\n'
        text += 'stopTimeout = "2s"\n'
        if p.env:
            text += f"env = {{ {', '.join(f'{k} = {json.dumps(v)}' for k, v in p.env.items())} }}\n"
        if p.crash_loop:
            text += 'backoff = "0s"\nmaxBackoff = "0s"\n'
        text += "\n"
    logs = [p.log_file for p in programs if p.log_file]
    text += f"[logs]\nconsole = {'true' if console else 'false'}\n"
    if logs:
        text += f'dir = "{logs[0].parent}"\nrotation = "1 GB"\n'
    (work / "processman.toml").write_text(text)
    argv = [str(venv / "bin" / "processman"), "run", str(work / "processman.toml")]
    return argv + (["--api", api] if api else [])


def _supervisord(venv: Path, work: Path, programs: list[Program]) -> list[str]:
    text = (
        f"[supervisord]\nnodaemon=true\nlogfile={work}/supervisord.log\n"
        f"pidfile={work}/supervisord.pid\nchildlogdir={work}\n\n"
        f"[unix_http_server]\nfile={work}/supervisor.sock\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
    )
    for p in programs:
        text += (
            f"[program:{p.id}]\ncommand={shlex.join(p.argv)}\nstartsecs=0\nautorestart=true\n"
            "startretries=1000000\nstopasgroup=true\nkillasgroup=true\nstopwaitsecs=2\n"
        )
        if p.log_file:
            text += f"stdout_logfile={p.log_file}\nstdout_logfile_maxbytes=0\n"
        if p.env:
            text += f"environment={','.join(f'{k}={json.dumps(v)}' for k, v in p.env.items())}\n"
        text += "\n"
    (work / "supervisord.conf").write_text(text)
    return [str(venv / "bin" / "supervisord"), "-c", str(work / "supervisord.conf")]


def _circus(venv: Path, work: Path, programs: list[Program]) -> list[str]:
    base = 26000 + (os.getpid() % 1000) * 3
    # circus restarts what died on its check_delay timer: its smallest delay for the crash loop
    delay = 0.01 if any(p.crash_loop for p in programs) else 5
    text = (
        f"[circus]\nendpoint=tcp://127.0.0.1:{base}\n"
        f"pubsub_endpoint=tcp://127.0.0.1:{base + 1}\ncheck_delay={delay}\nstatsd=False\n\n"
    )
    for p in programs:
        text += (
            f"[watcher:{p.id}]\ncmd={shlex.join(p.argv)}\nnumprocesses=1\n"
            "graceful_timeout=2\nstop_children=true\nrespawn=true\nmax_retry=-1\n"
        )
        if p.crash_loop:  # else circus stops a process that restarts twice in a second
            text += "check_flapping=false\n"
        if p.log_file:
            text += f"stdout_stream.class=FileStream\nstdout_stream.filename={p.log_file}\n"
        if p.env:
            text += f"\n[env:{p.id}]\n" + "".join(f"{k}={v}\n" for k, v in p.env.items())
        text += "\n"
    (work / "circus.ini").write_text(text)
    return [str(venv / "bin" / "circusd"), str(work / "circus.ini")]


def _pm2(prefix: Path, work: Path, programs: list[Program]) -> list[str]:
    apps = []
    for p in programs:
        app: dict[str, object] = {
            "name": p.id,
            "script": p.argv[1],
            "args": p.argv[2:],
            "interpreter": p.argv[0],
            "autorestart": True,
            "kill_timeout": 2000,
            "kill_signal": "SIGTERM",  # PM2's default is SIGINT
            "restart_delay": 0,
            "max_restarts": 1000000,
            "min_uptime": 0,
        }
        if p.log_file:
            app |= {"out_file": str(p.log_file), "merge_logs": True}
        if p.env:
            app["env"] = p.env
        apps.append(app)
    (work / "ecosystem.config.js").write_text("module.exports = " + json.dumps({"apps": apps}))
    return [
        str(prefix / "node_modules" / ".bin" / "pm2-runtime"),
        str(work / "ecosystem.config.js"),
    ]


# --- running a tool ---------------------------------------------------------------


class Running:
    """One tool started on its config; ``close`` leaves nothing behind."""

    def __init__(self, argv: list[str], env: dict[str, str], work: Path):
        self.work = work
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
        self.children: set[int] = set()

    def wait_markers(self, markers: Path, n: int, timeout: float = 60) -> float:
        while len(os.listdir(markers)) < n:
            if time.monotonic() - self.started > timeout or self.proc.poll() is not None:
                raise RuntimeError(f"{len(os.listdir(markers))}/{n} children started")
            time.sleep(0.002)
        self.children = {int(name) for name in os.listdir(markers)}
        return time.monotonic() - self.started

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def workdir(root: Path) -> Path:
    work = Path(tempfile.mkdtemp(dir=root))
    (work / "markers").mkdir()
    for name, text in (("child.py", CHILD), ("crash.py", CRASHER), ("ignore.py", IGNORER)):
        (work / name).write_text(text)
    (work / "writer.py").write_text(WRITER)
    (work / "bare.py").write_text(BARE)
    return work


# --- scenarios --------------------------------------------------------------------


def crash_loop(tool: str, home: Path, root: Path) -> dict[str, float]:
    work = workdir(root)
    starts = work / "starts"
    program = Program("crash", [sys.executable, str(work / "crash.py"), str(starts)], True)
    running = Running(*configure(tool, home, work, [program]), work)
    try:
        deadline = time.monotonic() + 8
        times: list[float] = []
        while time.monotonic() < deadline and len(times) < 41:
            time.sleep(0.05)
            if starts.exists():
                times = [float(t) for t in starts.read_text().split()]
    finally:
        running.close()
    if len(times) < 3:
        return {"interval_s": float("nan"), "starts": float(len(times))}
    intervals = [b - a for a, b in zip(times[1:], times[2:], strict=False)]
    return {"interval_s": statistics.median(intervals), "starts": float(len(times))}


def stop_with_ignorers(tool: str, home: Path, root: Path, n: int = 50) -> dict[str, float]:
    work = workdir(root)
    markers = work / "markers"
    programs = [
        Program(
            f"c{i}",
            [sys.executable, str(work / ("ignore.py" if i < 5 else "child.py")), str(markers)],
        )
        for i in range(n)
    ]
    running = Running(*configure(tool, home, work, programs), work)
    try:
        running.wait_markers(markers, n)
        ignorers = set()
        for pid in running.children:
            try:
                if "ignore.py" in " ".join(psutil.Process(pid).cmdline()):
                    ignorers.add(pid)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.5)
        stopped = time.monotonic()
        running.proc.send_signal(signal.SIGTERM)
        result: dict[str, float] = {}
        while True:
            now = time.monotonic() - stopped
            live = {pid for pid in running.children if alive(pid)}
            if "others_s" not in result and not live - ignorers:
                result["others_s"] = now
            if not live:
                result["all_s"] = now
                break
            if now > 60:
                raise RuntimeError(f"{tool}: children alive 60 s after SIGTERM")
            time.sleep(0.001)
        wait_exit(running.proc, 60)
        result["returned_s"] = time.monotonic() - stopped
        return result
    finally:
        running.close()


def log_lines(tool: str, home: Path, root: Path, **options: object) -> dict[str, float]:
    """The writer under ``tool``; ``bare`` runs it with stdout on the file (or /dev/null)."""
    work = workdir(root)
    log_file = work / "logs" / "w.log"
    log_file.parent.mkdir()
    marker = work / "writer"
    argv = [sys.executable, str(work / "writer.py"), str(marker)]
    if tool == "bare":
        target = os.devnull if options.get("devnull") else log_file
        with open(target, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, start_new_session=True)
        running = None
        if options.get("devnull"):  # nothing to check: how fast the child writes, alone
            while not Path(str(marker) + ".wrote").exists():
                time.sleep(0.001)
            proc.kill()
            proc.wait()
            wrote = float(Path(str(marker) + ".wrote").read_text())
            return {"last_line_s": wrote, "lines_per_s": LINES / wrote, "child_write_s": wrote}
    else:
        extra = {"PYTHONUNBUFFERED": "1"} if options.pop("unbuffered", False) else {}
        program = Program("w", argv, log_file=log_file, env=extra)
        command, env = configure(tool, home, work, [program], **options)
        running = Running(command, env, work)
    try:
        last = EXPECTED[-1].encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                with open(log_file, "rb") as file:
                    file.seek(max(0, os.path.getsize(log_file) - 300))
                    if last in file.read():
                        seen = time.monotonic()
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tool}: the last line never reached {log_file}")
            time.sleep(0.001)
        while not Path(str(marker) + ".wrote").exists():
            time.sleep(0.001)
        started = float(Path(str(marker) + ".start").read_text())
        wrote = float(Path(str(marker) + ".wrote").read_text())
    finally:
        if running is not None:
            running.children = {
                int(p.pid)
                for p in psutil.Process(running.proc.pid).children(recursive=True)
                if "writer.py" in " ".join(p.cmdline())
            }
            running.close()
        else:
            proc.kill()
            proc.wait()
    text = log_file.read_text(errors="replace").splitlines()
    if tool == "processman":  # "<time> stdout | <line>"
        text = [line.split(" | ", 1)[1] for line in text if " stdout | " in line]
    total = seen - started
    return {
        "last_line_s": total,
        "lines_per_s": LINES / total,
        "child_write_s": wrote,
        "complete": float(text == EXPECTED),
    }


def many(tool: str, home: Path, root: Path, n: int) -> dict[str, float]:
    work = workdir(root)
    markers = work / "markers"
    port = None
    if tool == "bare Popen":
        argv, env = (
            [sys.executable, str(work / "bare.py"), str(n), str(work / "child.py"), str(markers)],
            {},
        )
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        programs = [
            Program(f"c{i}", [sys.executable, str(work / "child.py"), str(markers)])
            for i in range(n)
        ]
        argv, env = configure(tool, home, work, programs, api=f"127.0.0.1:{port}")
    running = Running(argv, env, work)
    try:
        result = {"launch_s": running.wait_markers(markers, n)}
        time.sleep(1.0)
        own = own_processes(psutil.Process(running.proc.pid), running.children)
        result["rss_mib"] = sum(p.memory_info().rss for p in own) / 2**20
        if port is not None:
            latencies = []
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(300):
                began = time.perf_counter()
                connection.request("GET", "/api/processes")
                body = connection.getresponse().read()
                latencies.append(time.perf_counter() - began)
            connection.close()
            assert len(json.loads(body)) == n
            latencies.sort()
            result["api_p50_ms"] = latencies[len(latencies) // 2] * 1000
            result["api_p99_ms"] = latencies[int(len(latencies) * 0.99) - 1] * 1000
        return result
    finally:
        running.proc.send_signal(signal.SIGTERM)
        try:
            running.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        running.close()


# --- the report -------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default="processman,supervisord,circus,pm2")
    parser.add_argument("--markdown", help="replace the scenarios section of this file")
    args = parser.parse_args()
    # Children buffer their stdout as Python does by default, under every tool (a
    # PYTHONUNBUFFERED inherited from the caller would make every writer unbuffered).
    os.environ.pop("PYTHONUNBUFFERED", None)
    root = Path(tempfile.mkdtemp(prefix="pm-scenarios-"))
    report = (
        f"Run of {time.strftime('%Y-%m-%d')}, median (min–max) of {args.runs} runs; "
        "ratio = processman / tool.\n\n"
    )
    try:
        installed = {
            ("PM2" if k == "pm2" else k): v
            for k, v in install(root, set(args.tools.split(","))).items()
        }
        crash: dict[str, list[float]] = {}
        others: dict[str, list[float]] = {}
        everything: dict[str, list[float]] = {}
        files: dict[str, list[dict[str, float]]] = {}
        alone: list[float] = []  # the writer with stdout on /dev/null: no reader at all
        unbuffered: dict[str, list[float]] = {}  # a write per line: PYTHONUNBUFFERED=1
        for run in range(args.runs):
            for tool, home in installed.items():
                crash.setdefault(tool, []).append(crash_loop(tool, home, root)["interval_s"])
                stop = stop_with_ignorers(tool, home, root)
                others.setdefault(tool, []).append(stop["others_s"])
                everything.setdefault(tool, []).append(stop["all_s"])
                files.setdefault(tool, []).append(log_lines(tool, home, root))
                unbuffered.setdefault(tool, []).append(
                    log_lines(tool, home, root, unbuffered=True)["last_line_s"]
                )
                print(f"run {run + 1}: {tool} done", file=sys.stderr)
            files.setdefault("bare (stdout to the file)", []).append(
                log_lines("bare", Path(), root)
            )
            alone.append(log_lines("bare", Path(), root, devnull=True)["child_write_s"])
            if "processman" in installed:
                files.setdefault("processman + console sink", []).append(
                    log_lines("processman", installed["processman"], root, console=True)
                )
        report += table("Crash loop: median interval between two starts", crash, "interval, s")
        report += table(
            "Stop 50, 5 ignoring SIGTERM (2 s timeout): the 45 others gone", others, "s"
        )
        report += table("Stop 50, 5 ignoring SIGTERM (2 s timeout): all 50 gone", everything, "s")
        report += table(
            f"{LINES:,} lines to a file: child start to the last line in the file",
            {k: [r["last_line_s"] for r in v] for k, v in files.items()},
            "s",
        )
        report += (
            "| tool | lines/s | child's own write time, s | every line, in order |\n"
            "|---|---|---|---|\n"
        )
        for name, runs in files.items():
            complete = sum(int(r["complete"]) for r in runs)
            report += (
                f"| {name} | {statistics.median(r['lines_per_s'] for r in runs):,.0f} | "
                f"{summary([r['child_write_s'] for r in runs])} | {complete}/{len(runs)} runs |\n"
            )
        report += (
            f"\nThe same child with stdout on /dev/null writes in {summary(alone)} s: "
            "the floor of its own write time.\n\n"
        )
        report += table(
            f"{LINES:,} lines, the child unbuffered (PYTHONUNBUFFERED=1: a write per line)",
            unbuffered,
            "s",
        )
        if "processman" in installed:
            scale: dict[str, list[dict[str, float]]] = {"bare Popen": [], "processman": []}
            for _ in range(args.runs):
                for tool, home in (("bare Popen", Path()), ("processman", installed["processman"])):
                    small, large = many(tool, home, root, 50), many(tool, home, root, 500)
                    large["rss_per_child_kib"] = (large["rss_mib"] - small["rss_mib"]) * 1024 / 450
                    large["rss_50_mib"] = small["rss_mib"]
                    scale[tool].append(large)
            report += table(
                "500 children: launch",
                {k: [r["launch_s"] for r in v] for k, v in scale.items()},
                "s",
            )
            report += table(
                "500 children: manager RSS growth per child (500 vs 50 children)",
                {k: [r["rss_per_child_kib"] for r in v] for k, v in scale.items()},
                "KiB",
            )
            pm = scale["processman"]
            report += (
                "processman's RSS with 50 children and the API on: "
                f"{summary([r['rss_50_mib'] for r in pm])} MiB\n\n"
            )
            report += (
                "`GET /api/processes` with 500 processes (300 requests, one connection): "
                f"p50 {summary([r['api_p50_ms'] for r in pm])} ms, "
                f"p99 {summary([r['api_p99_ms'] for r in pm])} ms\n"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report)
    if args.markdown:
        write_section(Path(args.markdown), "scenarios", report)


if __name__ == "__main__":
    main()
