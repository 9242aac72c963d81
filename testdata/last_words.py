"""Say "ready"; then, on SIGTERM (or at once with --exit), write N numbered lines in one
go and exit 0 at once. Its stdout pipe is made 1 MiB first, so that the writes never
wait for a reader: most of the lines are still in the pipe when it is gone."""

import fcntl
import os
import signal
import sys
import time

count = int(sys.argv[1])
fcntl.fcntl(1, fcntl.F_SETPIPE_SZ, 1 << 20)
words = "".join(f"last words {i:05}\n" for i in range(count)).encode()


def last_words(*_: object) -> None:
    os.write(1, words)
    os._exit(0)


signal.signal(signal.SIGTERM, last_words)
print("ready", flush=True)
if "--exit" in sys.argv:
    last_words()
while True:
    time.sleep(1)
