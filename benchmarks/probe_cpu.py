"""The manager's CPU with 50 processes that each have an ``http`` ready probe and an
``http`` health probe at their default periods (1 s until ready, then every 10 s).

One small HTTP server answers every probe; the processes are sleepers. The manager's
CPU (its own process, children excluded) is read with psutil over ``--seconds`` once
every process is ready. SPEC's target: at most 5 % of one core.

    .venv/bin/python benchmarks/probe_cpu.py [--processes 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PROCESSMAN = str(Path(sys.executable).parent / "processman")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="pm-probe-cpu-") as tmp:
        work = Path(tmp)
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        entries = "".join(
            f'[[processes]]\nid = "p{i}"\ncommand = ["sleep", "3600"]\n'
            f'ready = {{ http = "{url}" }}\nhealth = {{ http = "{url}" }}\n\n'
            for i in range(args.processes)
        )
        (work / "processman.toml").write_text(entries + "[logs]\nconsole = false\n")
        run = subprocess.Popen(
            [PROCESSMAN, "run"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                status = subprocess.run(
                    [PROCESSMAN, "status", "--json"], cwd=work, capture_output=True, text=True
                )
                if status.returncode == 0 and all(s["ready"] for s in json.loads(status.stdout)):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the processes were not all ready in 60 s")
                time.sleep(0.2)
            manager = psutil.Process(run.pid)
            before = sum(manager.cpu_times()[:2])
            time.sleep(args.seconds)
            used = sum(manager.cpu_times()[:2]) - before
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(30)
            server.terminate()
            server.wait(10)
    print(
        f"{args.processes} processes with http ready and health probes: the manager used "
        f"{used:.3f} CPU-s in {args.seconds:g} s = {100 * used / args.seconds:.2f} % of a core"
    )


if __name__ == "__main__":
    main()
