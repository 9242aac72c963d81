"""Go-style durations: ``"250ms"``, ``"1.5s"``, ``"1m30s"``; ``0`` alone is allowed as a number."""

from __future__ import annotations

import math
import re

# Go's limit (an int64 of nanoseconds, 2562047h47m16.854775807s): a longer duration is a
# typo, and an overflowing one would be read as infinity
MAX_SECONDS = (2**63 - 1) / 1e9
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: object) -> float:
    """Return the duration in seconds.

    Raises:
        ValueError: with a message fit for a config error.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f'expected a duration string such as "1s", got {value!r}')
    if isinstance(value, int):
        if value == 0:
            return 0.0
        raise ValueError(f'a bare number is not a duration; write "{value}s" or "{value}ms"')
    text = value.strip()
    if text in ("0", "0s"):
        return 0.0
    if text.startswith("-"):
        raise ValueError(f"duration {value!r} is negative")
    if not text:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(
            f'invalid duration {value!r}: use a number and a unit (ms, s, m, h), e.g. "1s", "1m30s"'
        )
    if not math.isfinite(total) or total > MAX_SECONDS:
        raise ValueError(f"invalid duration {value!r}: longer than the most allowed, 2562047h")
    return total


def format_duration(seconds: float) -> str:
    """Format seconds back as a short Go-style duration (for messages)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def format_uptime(seconds: float) -> str:
    """An uptime as the status table shows it: ``42s``, ``5m03s``, ``2h10m``, ``3d04h``."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
