"""Print ``tick N`` every 0.2 s, N counting up from 1, until stopped."""

import itertools
import time

for n in itertools.count(1):
    print(f"tick {n}", flush=True)
    time.sleep(0.2)
