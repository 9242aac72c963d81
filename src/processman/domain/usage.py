"""CPU and memory of an instance's tree (SPEC §11): sizes, and readings turned into rates.

Pure: the spawner's handle measures (``ProcessHandle.usage``), this decides what a
measurement means and when a new one is due.
"""

from __future__ import annotations

import msgspec

#: A reading younger than this is answered again instead of measuring anew.
CACHE_SECONDS = 1.0

#: How often a tree without a kernel-enforced limit is checked against ``maxMemory``.
MEMORY_CHECK_SECONDS = 1.0


_UNITS = (
    ("TiB", 1024**4),
    ("TB", 1000**4),
    ("GiB", 1024**3),
    ("GB", 1000**3),
    ("MiB", 1024**2),
    ("MB", 1000**2),
    ("KiB", 1024),
    ("kB", 1000),
    ("B", 1),
)


def describe_size(size: int) -> str:
    """``size`` bytes as a person would have written it: in the unit that divides it
    exactly with the smallest number (``"512 MB"``, ``"1 GiB"``, ``"1500 B"``)."""
    name, factor = min(
        ((n, f) for n, f in _UNITS if size % f == 0), key=lambda unit: size // unit[1]
    )
    return f"{size // factor} {name}"


def human_size(size: int) -> str:
    """A short display of ``size`` bytes: ``"812 B"``, ``"20.5 MiB"``, ``"1.2 GiB"``."""
    value = float(size)
    for name in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or name == "GiB":
            return f"{value:.0f} {name}" if name == "B" else f"{value:.1f} {name}"
        value /= 1024
    raise AssertionError("unreachable")


class Reading(msgspec.Struct, frozen=True):
    """One measurement of a run's tree, and the CPU use it implies."""

    at: float  # monotonic seconds
    cpu_seconds: float  # CPU time of the tree since the run began
    memory_bytes: int  # resident memory of the tree now
    cpu_percent: float  # since the previous reading (the run's start for the first)


def due(previous: Reading | None, now: float) -> bool:
    """Whether a new measurement is due: none yet, or the last is a second old."""
    return previous is None or now - previous.at >= CACHE_SECONDS


def next_reading(
    previous: Reading | None, now: float, started_at: float, cpu_seconds: float, memory: int
) -> Reading:
    """The reading of a measurement taken at ``now``: CPU percent over the time since the
    previous reading of the same run, or since the run began (100 = one core)."""
    since, used = (previous.at, previous.cpu_seconds) if previous else (started_at, 0.0)
    elapsed = now - since
    percent = max(0.0, (cpu_seconds - used) / elapsed * 100) if elapsed > 0 else 0.0
    return Reading(now, cpu_seconds, memory, round(percent, 1))


def memory_error(limit: int) -> str:
    """``lastError`` of a run ended for using more than ``limit`` bytes."""
    return f"memory above {describe_size(limit)}: killed"


__all__ = [
    "CACHE_SECONDS",
    "MEMORY_CHECK_SECONDS",
    "Reading",
    "describe_size",
    "due",
    "human_size",
    "memory_error",
    "next_reading",
]
