"""The Windows spawner's logic against a fake Win32 layer (it runs on any OS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from processman.adapters.spawn_windows import (
    ERROR_ACCESS_DENIED,
    ERROR_BROKEN_PIPE,
    ERROR_DIRECTORY,
    ERROR_FILE_NOT_FOUND,
    Win32Error,
    WindowsSpawner,
)
from processman.app.container import Container, platform_family
from processman.domain.errors import SpawnError
from processman.domain.ports import SpawnRequest

if TYPE_CHECKING:
    from collections.abc import Mapping

pytestmark = pytest.mark.anyio


class FakeWin32:
    """Records every call; ``fail`` maps a function name to a Win32 error code."""

    def __init__(
        self, fail: Mapping[str, int] | None = None, ignores_ctrl_break: bool = False
    ) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = dict(fail or {})
        self.ignores_ctrl_break = ignores_ctrl_break
        self.alive = True
        self.code = 0
        self.output = [b"hello\r\n", b"world\r\n"]
        self.closed: set[int] = set()
        self.used_after_close: list[tuple[str, int]] = []

    def _use(self, name: str, handle: int) -> None:
        if handle in self.closed:  # its number may name another object by now
            self.used_after_close.append((name, handle))

    def _call(self, name: str, *args: object) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise Win32Error(self.fail[name], name)

    def create_job(self) -> int:
        self._call("create_job")
        return 100

    def set_kill_on_close(self, job: int) -> None:
        self._call("set_kill_on_close", job)

    def create_process(
        self, argv: list[str], cwd: str, env: Mapping[str, str]
    ) -> tuple[int, int, int, int, int]:
        self._call("create_process", tuple(argv), cwd)
        return 200, 201, 4242, 300, 301

    def assign(self, job: int, process: int) -> None:
        self._call("assign", job, process)

    def resume(self, thread: int) -> None:
        self._call("resume", thread)

    def ctrl_break(self, pid: int) -> None:
        self._call("ctrl_break", pid)
        if not self.ignores_ctrl_break:
            self.alive, self.code = False, 0xC000013A  # STATUS_CONTROL_C_EXIT

    def terminate_job(self, job: int, exit_code: int) -> None:
        self._use("terminate_job", job)
        self._call("terminate_job", job, exit_code)
        if self.alive:
            self.alive, self.code = False, exit_code

    def wait(self, process: int, timeout_ms: int) -> bool:
        self._use("wait", process)
        if self.alive:
            import time

            time.sleep(min(timeout_ms, 20) / 1000)
        return not self.alive

    def exit_code(self, process: int) -> int:
        self._use("exit_code", process)
        return self.code

    def read(self, pipe: int, size: int) -> bytes:
        if pipe == 300 and self.output:
            return self.output.pop(0)
        raise Win32Error(ERROR_BROKEN_PIPE, "ReadFile")

    def close(self, handle: int) -> None:
        self._use("close", handle)
        self.calls.append(("close", handle))
        self.closed.add(handle)


REQUEST = SpawnRequest(
    process_id="w", argv=("C:\\py\\python.exe", "w.py"), cwd="C:\\app", env={"A": "1"}
)


def names(fake: FakeWin32) -> list[str]:
    return [str(call[0]) for call in fake.calls]


async def test_created_suspended_assigned_to_the_job_then_resumed() -> None:
    fake = FakeWin32()
    process = await WindowsSpawner(fake).spawn(REQUEST)
    assert fake.calls == [
        ("create_job",),
        ("set_kill_on_close", 100),
        ("create_process", REQUEST.argv, "C:\\app"),
        ("assign", 100, 200),
        ("resume", 201),
        ("close", 201),  # the thread handle is no longer needed
    ]
    assert process.pid == 4242
    chunks = [chunk async for chunk in process.stdout]
    assert chunks == [b"hello\r\n", b"world\r\n"]
    assert [chunk async for chunk in process.stderr] == []
    assert {300, 301} <= fake.closed
    await process.stop("SIGTERM", 1.0)


async def test_stop_is_ctrl_break_then_terminate_job() -> None:
    fake = FakeWin32()
    process = await WindowsSpawner(fake).spawn(REQUEST)
    code = await process.stop("SIGTERM", 5.0)
    assert names(fake)[6:] == ["ctrl_break", "terminate_job", "close", "close"]
    assert code == 0xC000013A
    assert {100, 200} <= fake.closed  # the process and the job


async def test_a_child_ignoring_ctrl_break_is_terminated_with_its_job_after_the_grace() -> None:
    fake = FakeWin32(ignores_ctrl_break=True)
    process = await WindowsSpawner(fake).spawn(REQUEST)
    with anyio.fail_after(5):
        code = await process.stop("SIGTERM", 0.1)
    assert ("terminate_job", 100, 1) in fake.calls and code == 1


async def test_handles_are_closed_once_and_only_when_no_call_uses_them() -> None:
    # the runner's exit watcher waits beside the stop, and a second Ctrl-C adds a second
    # stop: the first to finish used to close the handles under the others
    fake = FakeWin32(ignores_ctrl_break=True)
    process = await WindowsSpawner(fake).spawn(REQUEST)
    codes: list[int | None] = []

    async def stop(grace: float) -> None:
        codes.append(await process.stop("SIGTERM", grace))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(process.wait)  # the exit watcher
            tg.start_soon(stop, 30.0)
            await anyio.sleep(0.05)
            tg.start_soon(stop, 0.0)
    assert codes == [1, 1]
    assert fake.used_after_close == []
    assert [call for call in fake.calls if call[0] == "close" and call[1] in (100, 200)] == [
        ("close", 200),
        ("close", 100),
    ]
    assert await process.stop("SIGKILL", 0.0) == 1  # a stop after the end touches nothing
    assert fake.used_after_close == []


async def test_the_job_outlives_a_natural_exit_until_the_stop_that_ends_what_is_left() -> None:
    fake = FakeWin32()
    process = await WindowsSpawner(fake).spawn(REQUEST)
    fake.alive = False  # it exits by itself; the runner's watcher sees it ...
    await process.wait()
    assert 100 not in fake.closed
    await process.stop("SIGTERM", 1.0)  # ... then stops what it left in the job
    assert ("terminate_job", 100, 1) in fake.calls and {100, 200} <= fake.closed
    assert fake.used_after_close == []


@pytest.mark.parametrize(
    ("function", "error", "message"),
    [
        ("create_process", ERROR_FILE_NOT_FOUND, "cannot start C:\\py\\python.exe: file not found"),
        (
            "create_process",
            ERROR_ACCESS_DENIED,
            "cannot start C:\\py\\python.exe: permission denied",
        ),
        (
            "create_process",
            ERROR_DIRECTORY,
            "cannot start C:\\app: working directory does not exist",
        ),
        ("create_job", 1450, "cannot start C:\\py\\python.exe: create_job failed"),
        ("assign", ERROR_ACCESS_DENIED, "cannot start C:\\py\\python.exe: permission denied"),
    ],
)
async def test_win32_errors_become_spawn_errors(function: str, error: int, message: str) -> None:
    fake = FakeWin32(fail={function: error})
    with pytest.raises(SpawnError) as info:
        await WindowsSpawner(fake).spawn(REQUEST)
    assert str(info.value).startswith(message)
    if function == "assign":  # a half-made child is killed with its job, nothing leaks
        assert ("terminate_job", 100, 1) in fake.calls
        assert {100, 200, 201, 300, 301} <= fake.closed


async def test_a_program_name_not_found_is_reported_as_not_on_path() -> None:
    fake = FakeWin32(fail={"create_process": ERROR_FILE_NOT_FOUND})
    request = SpawnRequest(process_id="n", argv=("node", "s.js"), cwd="C:\\app", env={})
    with pytest.raises(SpawnError, match="cannot start node: not found on PATH"):
        await WindowsSpawner(fake).spawn(request)


def test_the_container_selects_it_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "win32")
    assert platform_family() == "windows"
    container = Container()
    assert isinstance(container.spawner(), WindowsSpawner)
