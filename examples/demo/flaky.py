"""Starts, works for a moment, then crashes with exit code 1."""

import sys
import time

print("flaky: starting up")
time.sleep(1)
print("flaky: something went wrong", file=sys.stderr)
sys.exit(1)
