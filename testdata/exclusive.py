"""Hold an exclusive lock on argv[1]; if another instance holds it, note that and exit 3.

Two instances of one process running at once leave a ``<argv[1]>.double`` file behind.
"""

import fcntl
import sys
import time

lock = open(sys.argv[1], "a")  # noqa: SIM115 - held for the life of the process
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    with open(sys.argv[1] + ".double", "a") as f:
        f.write("two instances at once\n")
    sys.exit(3)
print("holding the lock", flush=True)
while True:
    time.sleep(1)
