"""The original plan's crash.py: exit 1 at once."""

import sys

sys.exit(1)
