"""On SIGTERM, say so, take 0.2 s to clean up, then exit 0 by itself (it exits while being
stopped)."""

import signal
import sys
import time


def on_term(signum: int, frame: object) -> None:
    print("cleaning up", flush=True)
    time.sleep(0.2)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(1)
