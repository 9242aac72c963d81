"""What a tree of processes uses, measured process by process (psutil): for the spawners
of trees without a cgroup to ask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processman.domain.ports import Usage

if TYPE_CHECKING:
    from collections.abc import Iterable


def processes_usage(pids: Iterable[int]) -> Usage | None:
    """CPU time (theirs and their reaped children's) and resident memory of ``pids``,
    summed over those still alive; None when none is."""
    import psutil  # only when someone asks

    cpu, memory, alive = 0.0, 0, False
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                times = process.cpu_times()
                memory += process.memory_info().rss
        except psutil.Error:
            continue
        alive = True
        cpu += times.user + times.system + times.children_user + times.children_system
    return Usage(cpu, memory) if alive else None


def tree_of(pid: int) -> list[int]:
    """``pid`` and its live descendants, by parent links."""
    import psutil

    try:
        return [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


__all__ = ["processes_usage", "tree_of"]
