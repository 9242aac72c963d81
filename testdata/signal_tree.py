"""A parent and a child that each say which signal they got (SIGUSR1, SIGHUP), then go on."""

import signal
import subprocess
import sys
import time


def say(role: str) -> None:
    def handler(number: int, _frame: object) -> None:
        print(f"{role} got {signal.Signals(number).name}", flush=True)

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
