"""Use resources for the metrics tests, and say how much (each process of the tree prints
``rss <pid> <bytes>`` once its memory is in place, read from /proc/self/statm).

    usage.py tree MIB   a grandchild allocates and touches MIB MiB; both then sleep
    usage.py burn       burn one core
    usage.py grow MIB   allocate and touch MIB MiB more every 0.1 s, for ever
"""

import os
import subprocess
import sys
import time

MIB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def touched(size: int) -> bytearray:
    block = bytearray(size)
    for i in range(0, size, PAGE):
        block[i] = 1
    return block


def say_rss() -> None:
    with open("/proc/self/statm") as statm:
        resident = int(statm.read().split()[1]) * PAGE
    os.write(1, f"rss {os.getpid()} {resident}\n".encode())  # one write: two processes share it


mode = sys.argv[1]
if mode == "tree":
    child = subprocess.Popen([sys.executable, __file__, "hold", sys.argv[2]])
    say_rss()
    time.sleep(300)
elif mode == "hold":
    kept = touched(int(sys.argv[2]) * MIB)
    say_rss()
    time.sleep(300)
elif mode == "burn":
    print("burning", flush=True)
    while True:
        pass
elif mode == "grow":
    blocks = []
    print("growing", flush=True)
    while True:
        blocks.append(touched(int(sys.argv[2]) * MIB))
        time.sleep(0.1)
