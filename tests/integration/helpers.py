"""Helpers for tests with real child processes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import anyio

from processman.domain.model import Config, LogSettings, ProcessSpec
from tests.conftest import TESTDATA

if TYPE_CHECKING:
    from collections.abc import Callable


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


async def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        # polls state outside the event loop (files, /proc), so no Event to wait on
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)
