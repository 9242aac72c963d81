"""Start a grandchild that sleeps, write its pid to argv[1], then sleep too."""

import subprocess
import sys
import time

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
print(f"grandchild {child.pid}", flush=True)
time.sleep(300)
