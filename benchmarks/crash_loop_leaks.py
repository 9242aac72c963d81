"""No zombies, no leaks: many processes crash-looping with a 10 ms backoff.

Runs ``processman run --api`` on N processes that exit 1 at once (``backoff = "10ms"``,
``autostart = false``). From outside: takes the manager's zombie children, open file
descriptors and RSS, starts every process through the API, lets them crash-loop for T
seconds, stops them all, and takes the same figures again.

    .venv/bin/python benchmarks/crash_loop_leaks.py [--processes 200] [--seconds 20]
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
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

PROCESSMAN = str(Path(sys.executable).parent / "processman")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(api: str, path: str) -> Any:
    with urllib.request.urlopen(api + path, timeout=60) as response:
        return json.loads(response.read())


def wait_for(api: str) -> None:
    for _ in range(500):
        try:
            get(api, "/api/health")
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("the API did not answer")


def call_all(api: str, ids: list[str], command: str) -> None:
    def one(process_id: str) -> None:
        request = urllib.request.Request(
            f"{api}/api/processes/{process_id}/{command}", method="POST"
        )
        urllib.request.urlopen(request, timeout=60).close()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, ids))


def snapshot(manager: psutil.Process) -> tuple[int, int, float]:
    zombies = sum(1 for c in manager.children() if c.status() == psutil.STATUS_ZOMBIE)
    return zombies, manager.num_fds(), manager.memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pm-leaks-") as tmp:
        config = Path(tmp) / "processman.toml"
        config.write_text(
            "".join(
                f'[[processes]]\nid = "crash{i}"\ncommand = ["/bin/sh", "-c", "exit 1"]\n'
                'backoff = "10ms"\nmaxBackoff = "10ms"\nautostart = false\n\n'
                for i in range(args.processes)
            )
            + "[logs]\nconsole = false\n"
        )
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [PROCESSMAN, "run", str(config), "--api", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            manager = psutil.Process(proc.pid)
            wait_for(api)
            ids = [f"crash{i}" for i in range(args.processes)]
            start = snapshot(manager)
            call_all(api, ids, "start")
            started = time.monotonic()
            time.sleep(args.seconds)
            call_all(api, ids, "stop")
            elapsed = time.monotonic() - started
            restarts = sum(s["restartCount"] for s in get(api, "/api/processes"))
            time.sleep(0.5)
            end = snapshot(manager)
            cpu = manager.cpu_times()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    print(f"\n{args.processes} processes crash-looping (backoff 10ms) for {elapsed:.0f} s\n")
    print("| measure | start | end |")
    print("|---|---|---|")
    print(f"| zombie children of the manager | {start[0]} | {end[0]} |")
    print(f"| open file descriptors | {start[1]} | {end[1]} |")
    print(f"| RSS | {start[2]:.1f} MiB | {end[2]:.1f} MiB |")
    growth = end[2] - start[2]
    busy = cpu.user + cpu.system
    print(f"\n{restarts} restarts; RSS growth {growth:+.2f} MiB; manager CPU {busy:.1f} s")


if __name__ == "__main__":
    main()
