"""Helpers for tests with real child processes."""

from __future__ import annotations

import sys
from collections.abc import Callable

import anyio

from processman.domain.model import Config, LogSettings, ProcessSpec
from tests.conftest import TESTDATA


def script(process_id: str, name: str, *args: str, **overrides: object) -> ProcessSpec:
    """A testdata script run by this interpreter (fast, no PATH lookup)."""
    values: dict[str, object] = {
        "id": process_id,
        "cwd": str(TESTDATA),
        "script": str(TESTDATA / name),
        "interpreter": sys.executable,
        "args": args,
        "stop_timeout": 5.0,
    }
    values.update(overrides)
    return ProcessSpec(**values)  # type: ignore[arg-type]


def config(*specs: ProcessSpec, **logs: object) -> Config:
    return Config(processes=specs, logs=LogSettings(**logs))  # type: ignore[arg-type]


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)
