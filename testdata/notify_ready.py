"""Send sd_notify datagrams to NOTIFY_SOCKET, as a Type=notify program does.

    notify_ready.py [--child | --daemon=PIDFILE] [--big] DELAY STATUS

After DELAY seconds: STATUS=<STATUS>, then READY=1, from this process, or with --child
from a child of it (the sender is then a grandchild of the manager's instance, and it
waits for a barrier before it exits, as sd_notify_barrier() and systemd-notify do), or with
--daemon from a daemon it double-forks out of its session (its pid in PIDFILE); --big
first sends a datagram over 4096 bytes that says READY=1 too (to be ignored), says so,
and waits 1 s. Then sleep;
on SIGTERM, send STOPPING=1 (as redis does) and say whether it could, then exit.
"""

import array
import os
import select
import signal
import socket
import subprocess
import sys
import time

args = sys.argv[1:]
child = "--child" in args
big = "--big" in args
daemon = next((a.split("=", 1)[1] for a in args if a.startswith("--daemon=")), None)
delay, status = (a for a in args if not a.startswith("--"))


def send(text: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text, os.environ["NOTIFY_SOCKET"])


def barrier() -> None:
    """BARRIER=1 with a pipe's write end; the manager closes it once it has read every
    datagram before it. Without this, a sender that exits at once may be gone before
    the manager can place it in a tree (man sd_notify_barrier)."""
    readable, writable = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [writable]))]
        sock.sendmsg([b"BARRIER=1"], fds, 0, os.environ["NOTIFY_SOCKET"])
    os.close(writable)
    select.select([readable], [], [], 5)  # end of file: answered
    os.close(readable)


if os.environ.get("NOTIFY_SENDER") == "1":
    send(f"STATUS={status}\n".encode())
    send(b"READY=1")
    barrier()
    sys.exit(0)


def stopping(*_: object) -> None:
    try:
        send(b"STOPPING=1")
        print("STOPPING=1 sent", flush=True)
    except OSError as exc:
        print(f"STOPPING=1 failed: {exc}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stopping)
time.sleep(float(delay))
if big:
    send(b"READY=1\n" + b"X=" + b"x" * 5000)
    print("sent the long one", flush=True)
    time.sleep(1.0)
if daemon:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:  # out of the instance's session and group, reparented
            with open(daemon, "w") as file:
                file.write(str(os.getpid()))
            send(f"STATUS={status}\n".encode())
            send(b"READY=1")
            while True:
                time.sleep(60)
        os._exit(0)
    os.wait()
elif child:
    subprocess.run(
        [sys.executable, __file__, delay, status], env={**os.environ, "NOTIFY_SENDER": "1"}
    )
else:
    send(f"STATUS={status}\n".encode())
    send(b"READY=1")
while True:
    time.sleep(60)
