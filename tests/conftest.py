"""Shared fixtures: both anyio backends, and a check that no test leaves a child behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
PYTHON = sys.executable


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _live_descendants() -> set[int]:
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """Every child a test starts is gone when it ends."""
    before = _live_descendants()
    yield
    deadline = time.monotonic() + 3
    leaked = _live_descendants() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        leaked = _live_descendants() - before
    for pid in leaked:  # clean up before failing, so one leak does not cascade
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    assert not leaked, f"test left child processes behind: {sorted(leaked)}"


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
