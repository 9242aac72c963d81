"""Write invalid UTF-8, a line longer than 64 KiB, and an unterminated last line; exit 0."""

import sys

out = sys.stdout.buffer
out.write(b"bad \xff\xfe bytes\n")
out.write(b"x" * (70 * 1024) + b"\n")
out.write(b"no newline at the end")
out.flush()
