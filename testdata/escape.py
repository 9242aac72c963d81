"""Leave the process group two ways, writing the escapees' pids under argv[1].

- ``setsid.pid``: a child that calls setsid() (a new session and group, same parent)
- ``daemon.pid``: a daemon made by a double fork and setsid() (its parent is gone)

With argv[2] == "exit", the leader exits as soon as both have written their pids (not
before: its exit ends the tree, and an escapee killed before writing would never be seen);
otherwise it sleeps.
"""

import os
import sys
import time

directory = sys.argv[1]


def write_pid(name: str) -> None:
    with open(os.path.join(directory, name + ".tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.rename(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))


def live_forever() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # as daemons do: no pipe of the manager's held open
        os.dup2(devnull, fd)
    while True:
        time.sleep(1)


if os.fork() == 0:
    os.setsid()
    write_pid("setsid.pid")
    live_forever()

middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork() == 0:
        write_pid("daemon.pid")
        live_forever()
    os._exit(0)
os.waitpid(middle, 0)

print("escaped", flush=True)
if len(sys.argv) > 2 and sys.argv[2] == "exit":
    while not all(os.path.exists(os.path.join(directory, n)) for n in ("setsid.pid", "daemon.pid")):
        time.sleep(0.005)
    sys.exit(0)
while True:
    time.sleep(1)
