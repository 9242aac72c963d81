"""The original plan's echo.py: say hello, then stay alive.

(The plan's version spins in ``while True: pass``; this one sleeps, so a test run
does not burn a core.)"""

import sys
import time

print("Hello from Python", flush=True)
sys.stdout.flush()
while True:
    time.sleep(1)
