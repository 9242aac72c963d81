"""Write argv[1] MiB (default 10) without a newline, then one short line, then sleep."""

import sys
import time

size = int(sys.argv[1]) if len(sys.argv) > 1 else 10
chunk = b"x" * (1024 * 1024)
for _ in range(size):
    sys.stdout.buffer.write(chunk)
sys.stdout.buffer.write(b"\nend\n")
sys.stdout.flush()
while True:
    time.sleep(1)
