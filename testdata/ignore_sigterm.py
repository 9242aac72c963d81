"""Ignore SIGTERM (a stop must fall back to SIGKILL), say so, then sleep."""

import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(1)
