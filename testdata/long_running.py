"""The original plan's long_running.py: run a while (15 s, or argv[1] seconds), then exit 1."""

import sys
import time

print("long_running: started", flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 15)
sys.exit(1)
