"""Print the environment variables named in argv, one NAME=value line each, then sleep."""

import os
import sys
import time

for name in sys.argv[1:]:
    print(f"{name}={os.environ.get(name, '<unset>')}", flush=True)
time.sleep(300)
