"""Write argv[1] numbered lines (default 100000) to stdout as fast as possible, then wait."""

import sys
import time

count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
out = sys.stdout
for start in range(0, count, 1000):
    out.write(
        "".join(f"line {i:07d} of a chatty child\n" for i in range(start, min(count, start + 1000)))
    )
out.flush()
print("chatty: done", file=sys.stderr, flush=True)
time.sleep(300)
