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


#: The user an unprivileged check runs as when the tests run as root.
NOBODY = 65534


def run_unprivileged(function: Callable[[], object]) -> tuple[object, str]:
    """Call ``function`` as an unprivileged user; return its result and what it printed.

    Under root, in a forked child that has become ``nobody`` (the interpreter and the
    modules it needs are loaded already: nobody may not read this venv); otherwise in a
    child of the same user. The child's result (or exception) comes back pickled.
    """
    import os
    import pickle
    import tempfile
    import warnings

    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as result:
        with warnings.catch_warnings():
            # 3.12+ warns of a fork in a process with threads (pytest-timeout's): the child
            # only runs ``function`` and exits, taking no lock another thread may hold
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                os.dup2(output.fileno(), 1)
                os.dup2(output.fileno(), 2)
                sys.stdout = sys.stderr = open(1, "w", closefd=False)  # pytest replaced them
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                try:
                    value: object = ("ok", function())
                except BaseException as exc:  # noqa: BLE001 - sent back to the parent
                    value = ("raised", exc)
                result.write(pickle.dumps(value))
                result.flush()
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
        result.seek(0)
        output.seek(0)
        kind, value = pickle.loads(result.read())
        printed = output.read().decode(errors="replace")
    if kind == "raised":
        raise value  # type: ignore[misc]
    return value, printed


def quiet_gaps(writes: list[tuple[float, float]], quiet: float) -> int:
    """How often the writes (start and end of each) may have left a pause of at least
    ``quiet``: where a machine too busy to keep a burst's pace let a reload in, rightly.

    A write's changes (truncate, then the data) fall somewhere within its start and end,
    so two changes of consecutive writes are at most the one's start to the next's end
    apart: a write stalled inside (a busy disk) counts as well as a pause between them.
    """
    import itertools

    return sum(
        1 for (start, _), (_, next_end) in itertools.pairwise(writes) if next_end - start >= quiet
    )
