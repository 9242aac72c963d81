"""Run until SIGTERM; then write the wall time to argv[1], take argv[2] seconds to go
(0.2 by default), and exit. Also, for a migration: with argv[3], exit at once with 0 if
that file exists, else 1."""

import os
import signal
import sys
import time

stamp = sys.argv[1]
linger = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
if len(sys.argv) > 3:
    print("migrating", flush=True)
    sys.exit(0 if os.path.exists(sys.argv[3]) else 1)


def stop(*_: object) -> None:
    with open(stamp, "a") as file:
        file.write(f"{time.time()}\n")
    time.sleep(linger)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
print("up", flush=True)
while True:
    time.sleep(60)
