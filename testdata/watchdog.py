"""A Type=notify program with a watchdog, as systemd's WatchdogSec= expects one.

    watchdog.py PINGS [trigger]

Checks that WATCHDOG_PID is its own pid (else exits 3, as sd_watchdog_enabled() would
find no watchdog), says READY=1, then sends WATCHDOG=1 every half WATCHDOG_USEC, PINGS
times; then stops pinging and hangs (or, with ``trigger``, sends WATCHDOG=trigger).
Each start prints "watchdog pid=<pid> usec=<WATCHDOG_USEC>".
"""

import os
import socket
import sys
import time

pings = int(sys.argv[1])
trigger = sys.argv[2:] == ["trigger"]
usec = int(os.environ["WATCHDOG_USEC"])
print(f"watchdog pid={os.getpid()} usec={usec}", flush=True)
if os.environ.get("WATCHDOG_PID") != str(os.getpid()):
    print(f"WATCHDOG_PID={os.environ.get('WATCHDOG_PID')!r} is not mine", flush=True)
    sys.exit(3)


def send(text: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text, os.environ["NOTIFY_SOCKET"])


send(b"READY=1")
for _ in range(pings):
    time.sleep(usec / 2e6)
    send(b"WATCHDOG=1")
if trigger:
    send(b"WATCHDOG=trigger")
time.sleep(600)
