"""A parent and a child that each say which signal they got (SIGUSR1, SIGHUP), then go on."""

import os
import signal
import subprocess
import sys
import time


def say(role: str) -> None:
    def handler(number: int, _frame: object) -> None:
        # one write of the whole line: print() under PYTHONUNBUFFERED writes the text and
        # the newline apart, and the parent's and child's lines ran into one (CI)
        os.write(1, f"{role} got {signal.Signals(number).name}\n".encode())

    for sig in (signal.SIGUSR1, signal.SIGHUP):
        signal.signal(sig, handler)


if len(sys.argv) > 1:  # the child
    say("child")
    print("child ready", flush=True)
    while True:
        time.sleep(60)
say("parent")
subprocess.Popen([sys.executable, __file__, "child"])
while True:
    time.sleep(60)
