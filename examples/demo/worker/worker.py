"""A pretend model worker: says which Python runs it, then does a job a second."""

import os
import sys
import time

print(f"{os.environ['GREETING']}; running on {sys.executable}")
job = 0
while True:
    job += 1
    print(f"job {job} done")
    time.sleep(1)
