"""The pytest plugin of SPEC §13: the ``processman`` and ``processman_session`` fixtures.

Registered through the ``pytest11`` entry point. It is a package of its own and imports
pytest and the standard library only: processman (whose ``__init__`` imports loguru and
the config loader) is imported when a test first asks for a fixture, so a suite that
does not use them starts as fast as without it.

A process of an open handle that crashes (or whose run ends unasked) while a test runs
fails that test; a failed test's report carries a section with each such process's
``lastError`` and last 50 log lines (and so does one whose process was not ready).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from processman.testing import Processes

#: The handles open now, and how many failures each had when it was ready.
_OPEN: dict[int, Processes] = {}
_READY_WITH: dict[int, int] = {}
_REPORTED = pytest.StashKey[list[Any]]()
#: The test being run now: a session factory called from its fixtures reports to it.
_CURRENT: list[pytest.Item] = []


def _factory(stack: contextlib.ExitStack, item: pytest.Item | None) -> Callable[..., Processes]:
    def start(config: Any, only: Any = None, timeout: float | str = "60s") -> Processes:
        __tracebackhide__ = True  # a failure shows the test's line, not the plugin's
        from processman.testing import ProcessFailed, running

        try:
            handle = stack.enter_context(running(config, only=only, timeout=timeout))
        except ProcessFailed as exc:
            reported_to = item if item is not None else (_CURRENT[-1] if _CURRENT else None)
            if reported_to is not None:
                reported_to.stash.setdefault(_REPORTED, []).append(exc)
            raise
        _OPEN[id(handle)] = handle
        _READY_WITH[id(handle)] = len(handle.failures)  # a crash before it was ready is no
        stack.callback(_OPEN.pop, id(handle), None)  # news: it did become ready in time
        stack.callback(_READY_WITH.pop, id(handle), None)
        return handle

    return start


@pytest.fixture
def processman(request: pytest.FixtureRequest) -> Iterator[Callable[..., Processes]]:
    """``processman(config, only=None, timeout="60s")``: start a config (a path or a
    ``Config``), wait until its processes are ready, and return a synchronous handle;
    everything stops when the test ends, and a process left alive fails it."""
    with contextlib.ExitStack() as stack:
        yield _factory(stack, request.node)


@pytest.fixture(scope="session")
def processman_session() -> Iterator[Callable[..., Processes]]:
    """As ``processman``, for the whole session: each config started by it runs until
    the last test ends."""
    with contextlib.ExitStack() as stack:
        yield _factory(stack, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Keep the test being run, for what a session-scoped factory reports."""
    _CURRENT.append(item)
    try:
        return (yield)
    finally:
        _CURRENT.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail a test during which a process of an open handle crashed."""
    seen = {key: len(handle.failures) for key, handle in _OPEN.items()}
    reported = item.stash.setdefault(_REPORTED, [])
    try:
        result = yield
    finally:
        new = [
            failure
            for key, handle in list(_OPEN.items())
            for failure in handle.failures[seen.get(key, _READY_WITH.get(key, 0)) :]
        ]
        reported.extend(new)
    if new:
        listed = "; ".join(str(failure) for failure in new)
        pytest.fail(f"a process failed while the test ran: {listed}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report shows each failed process's last error and lines."""
    report = yield
    failures = item.stash.get(_REPORTED, [])
    if report.failed and failures:
        shown = set()
        for failure in failures:
            text = failure.report()
            if text not in shown:
                shown.add(text)
                report.sections.append((f"processman: {failure.process_id}", text))
    return report
