"""Say one line on each stream, then exit 3."""

import sys

print("out")
print("err", file=sys.stderr)
sys.exit(3)
