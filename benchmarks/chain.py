"""A chain of 10 processes, each depending on the one before, ready by ``notify`` or by
``tcp``: how close the whole chain comes to the sum of the children's own start-ups.

Each child records when it was created (the kernel's start time, from /proc) and when
it became ready (just before it sends ``READY=1``, or listens); it takes ``--work``
seconds of start-up. The chain's time runs from the first child's creation to the last
one's readiness; the sum is that of each child's (ready - created). SPEC's targets:
notify within 1.2 x the sum, tcp within the sum + 100 ms per hop.

    .venv/bin/python benchmarks/chain.py [--length 10] [--work 0.1] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROCESSMAN = str(Path(sys.executable).parent / "processman")
CHILD = textwrap.dedent(
    """
    import json, os, socket, sys, time
    # when the kernel created this process (its start time, in clock ticks since boot)
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    created = time.time() - age
    out, kind, port, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    time.sleep(work)  # the child's own start-up
    ready = time.time()
    if kind == "notify":
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    else:
        server = socket.create_server(("127.0.0.1", port))
    with open(out, "w") as f:
        json.dump({"created": created, "ready": ready}, f)
    while True:
        time.sleep(60)
    """
)


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [int(sock.getsockname()[1]) for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def one_run(kind: str, length: int, work: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="pm-chain-") as tmp:
        root = Path(tmp)
        (root / "child.py").write_text(CHILD)
        ports = free_ports(length)
        entries = ""
        for i in range(length):
            ready = (
                "{ notify = true }" if kind == "notify" else f'{{ tcp = "127.0.0.1:{ports[i]}" }}'
            )
            depends = f'dependsOn = ["p{i - 1}"]\n' if i else ""
            argv = [
                sys.executable,
                str(root / "child.py"),
                str(root / f"p{i}.json"),
                kind,
                str(ports[i]),
                str(work),
            ]
            command = json.dumps(argv)
            entries += (
                f'[[processes]]\nid = "p{i}"\ncommand = {command}\nready = {ready}\n{depends}\n'
            )
        (root / "processman.toml").write_text(entries + "[logs]\nconsole = false\n")
        run = subprocess.Popen(
            [PROCESSMAN, "run"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            last = root / f"p{length - 1}.json"
            while not last.exists() or not last.read_text():
                if time.monotonic() > deadline or run.poll() is not None:
                    raise RuntimeError("the chain did not become ready")
                time.sleep(0.01)
            if kind == "tcp":
                time.sleep(1.5)  # the last one's probe: until the manager saw it ready
            times = [json.loads((root / f"p{i}.json").read_text()) for i in range(length)]
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(30)
    own = sum(t["ready"] - t["created"] for t in times)
    chain = times[-1]["ready"] - times[0]["created"]
    return chain, own


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--work", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for kind in ("notify", "tcp"):
        results = [one_run(kind, args.length, args.work) for _ in range(args.runs)]
        chain = statistics.median(c for c, _ in results)
        own = statistics.median(o for _, o in results)
        hops = args.length - 1
        print(
            f"{kind}: chain of {args.length} ready in {chain:.3f} s; the children's own start-ups "
            f"sum to {own:.3f} s: {chain / own:.2f} x, {1000 * (chain - own) / hops:.0f} ms a hop "
            f"(median of {args.runs})"
        )


if __name__ == "__main__":
    main()
