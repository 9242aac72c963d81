"""Windows spawner: a job object per instance, killed as a whole.

The child is created suspended, in a new process group, assigned to a job object with
``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`` and only then resumed, so it cannot start a
process outside the job. Stop sends ``CTRL_BREAK_EVENT`` to its process group, waits
``stopTimeout``, then ``TerminateJobObject``; if the manager dies, Windows closes its
handle to the job and kills everything in it.

All Win32 calls go through ``Win32Api`` (ctypes, created only on Windows), so the logic
here is tested on any OS against a fake (``tests/unit/test_spawn_windows.py``). It has
not run on a real Windows machine in CI (docs/adapters.md).
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from processman.adapters._usage import processes_usage, tree_of
from processman.domain.errors import SpawnError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from processman.domain.ports import SpawnRequest, Usage

ERROR_FILE_NOT_FOUND = 2
ERROR_PATH_NOT_FOUND = 3
ERROR_ACCESS_DENIED = 5
ERROR_BAD_EXE_FORMAT = 193
ERROR_DIRECTORY = 267
ERROR_BROKEN_PIPE = 109
WAIT_POLL_MS = 100  # a wait in a worker thread is cut in slices, so it can be cancelled


class Win32Error(OSError):
    """A failed Win32 call: ``winerror`` and the function's name."""

    def __init__(self, winerror: int, function: str, message: str = "") -> None:
        super().__init__(winerror, message or f"{function} failed with error {winerror}")
        self.winerror = winerror
        self.function = function


class Win32Api(Protocol):
    """The Win32 calls the spawner makes (``Kernel32`` in production, a fake in tests)."""

    def create_job(self) -> int: ...
    def set_kill_on_close(self, job: int) -> None: ...
    def create_process(
        self, argv: list[str], cwd: str, env: Mapping[str, str]
    ) -> tuple[int, int, int, int, int]:
        """Create it suspended in a new process group: (process, thread, pid, stdout, stderr)."""
        ...

    def assign(self, job: int, process: int) -> None: ...
    def resume(self, thread: int) -> None: ...
    def ctrl_break(self, pid: int) -> None: ...
    def terminate_job(self, job: int, exit_code: int) -> None: ...
    def wait(self, process: int, timeout_ms: int) -> bool: ...
    def exit_code(self, process: int) -> int: ...
    def read(self, pipe: int, size: int) -> bytes: ...
    def close(self, handle: int) -> None: ...


class WindowsSpawner:
    """``Spawner`` for Windows (job objects)."""

    def __init__(self, win32: Win32Api | None = None) -> None:
        self._win32 = win32

    async def aclose(self) -> None:
        """Nothing to release: each job is closed with its stop."""

    def _api(self) -> Win32Api:
        if self._win32 is None:
            self._win32 = _kernel32()
        return self._win32

    async def spawn(self, request: SpawnRequest) -> WindowsProcess:
        """Create the child suspended, put it in a kill-on-close job, then resume it."""
        if request.pass_fds or request.pid_env:
            raise SpawnError(
                request.argv[0], "inherited sockets and WATCHDOG_PID need a POSIX system"
            )
        win32 = self._api()
        try:
            job = win32.create_job()
        except Win32Error as exc:
            raise spawn_error(exc, request) from None
        try:
            win32.set_kill_on_close(job)
            process, thread, pid, stdout, stderr = win32.create_process(
                list(request.argv), request.cwd, request.env
            )
        except Win32Error as exc:
            win32.close(job)
            raise spawn_error(exc, request) from None
        try:
            win32.assign(job, process)
            win32.resume(thread)
        except Win32Error as exc:
            win32.terminate_job(job, 1)
            for handle in (thread, process, stdout, stderr, job):
                win32.close(handle)
            raise spawn_error(exc, request) from None
        win32.close(thread)
        return WindowsProcess(win32, job, process, pid, stdout, stderr)


def spawn_error(exc: Win32Error, request: SpawnRequest) -> SpawnError:
    """Map a Win32 error of CreateProcess & co to the domain's SpawnError."""
    program = request.argv[0]
    if exc.winerror == ERROR_DIRECTORY:
        return SpawnError(request.cwd, "working directory does not exist")
    if exc.winerror in (ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND):
        has_path = "/" in program or "\\" in program
        return SpawnError(program, "file not found" if has_path else "not found on PATH")
    if exc.winerror == ERROR_ACCESS_DENIED:
        return SpawnError(program, "permission denied")
    if exc.winerror == ERROR_BAD_EXE_FORMAT:
        return SpawnError(program, "not a Windows program")
    return SpawnError(program, f"{exc.function} failed: {exc.strerror}")


def _kernel32() -> Win32Api:
    api: Win32Api = Kernel32()  # type: ignore[assignment,unused-ignore]  # Windows only
    return api


class WindowsProcess:
    """A child in its own job object."""

    def __init__(
        self, win32: Win32Api, job: int, process: int, pid: int, stdout: int, stderr: int
    ) -> None:
        self._win32 = win32
        self._job = job
        self._process = process
        self._pid = pid
        self._code: int | None = None
        self._users = 0  # stop and wait calls under way: they use the handles
        self._stopped = False  # the job is closed only after a stop (it ends what is left)
        self._closed = False
        self._stdout = _PipeReader(win32, stdout)
        self._stderr = _PipeReader(win32, stderr)

    @property
    def pid(self) -> int:
        """The child's process id (and process group id)."""
        return self._pid

    @property
    def stdout(self) -> _PipeReader:
        """The child's stdout."""
        return self._stdout

    @property
    def stderr(self) -> _PipeReader:
        """The child's stderr."""
        return self._stderr

    async def wait(self) -> int:
        """The exit code, once the child has exited."""
        self._users += 1
        try:
            while self._code is None:
                exited = await anyio.to_thread.run_sync(
                    self._win32.wait, self._process, WAIT_POLL_MS
                )
                if exited and self._code is None:
                    self._code = self._win32.exit_code(self._process)
        finally:
            self._users -= 1
            self._close_when_unused()
        return self._code

    def holds(self, pid: int) -> bool:
        """Only the child itself (nothing here asks for more: no sd_notify on Windows)."""
        return pid == self._pid

    def signal(self, signal: str) -> None:
        """SIGKILL ends the job; Windows has no other signal to send a tree."""
        if signal != "SIGKILL":
            raise ValueError(f"{signal} cannot be sent on Windows (only SIGKILL)")
        if not self._closed:
            try:
                self._win32.terminate_job(self._job, 1)
            except Win32Error:
                pass

    def usage(self) -> Usage | None:
        """The tree's CPU time and memory, summed over its processes."""
        return processes_usage(tree_of(self._pid))

    #: no kernel limit here: the runner checks ``maxMemory`` every second
    limits_memory = False

    def killed_for_memory(self) -> bool:
        """Never: nothing here asks the kernel to kill the tree."""
        return False

    async def stop(self, signal: str, grace: float) -> int | None:
        """CTRL_BREAK to the group, then TerminateJobObject after ``grace``; the job is gone.

        Another stop or a wait may be under way beside it (the runner's exit watcher, a
        second Ctrl-C): the handles are closed by whichever ends last, never under a call
        that still uses them (a closed handle's number can name a new object)."""
        if self._closed:
            return self._code
        self._users += 1
        self._stopped = True
        try:
            if self._code is None:
                try:
                    self._win32.ctrl_break(self._pid)
                except Win32Error:
                    pass  # no console to share: go straight to the job
                with anyio.move_on_after(grace):
                    await self.wait()
            try:
                self._win32.terminate_job(self._job, 1)  # what is left in the job, leader or not
            except Win32Error:
                pass
            await self.wait()
        finally:
            self._users -= 1
            self._close_when_unused()
        return self._code

    def _close_when_unused(self) -> None:
        if self._stopped and self._users == 0 and not self._closed:
            self._closed = True
            self._win32.close(self._process)
            self._win32.close(self._job)


class _PipeReader:
    """Reads a pipe handle in a worker thread; EOF on a broken pipe."""

    def __init__(self, win32: Win32Api, handle: int) -> None:
        self._win32 = win32
        self._handle = handle

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    data = await anyio.to_thread.run_sync(self._win32.read, self._handle, 65536)
                except Win32Error as exc:
                    if exc.winerror == ERROR_BROKEN_PIPE:
                        return
                    raise
                if not data:
                    return
                yield data
        finally:
            self._win32.close(self._handle)


if sys.platform == "win32":  # pragma: no cover - the logic above is tested with a fake

    class Kernel32:
        """``Win32Api`` with ctypes on kernel32."""

        def __init__(self) -> None:
            import ctypes
            from ctypes import wintypes

            self._ctypes: Any = ctypes
            self._wintypes: Any = wintypes
            self._k32: Any = ctypes.WinDLL("kernel32", use_last_error=True)

        def _check(self, ok: Any, function: str) -> Any:
            if not ok:
                raise Win32Error(self._ctypes.get_last_error(), function)
            return ok

        def create_job(self) -> int:
            return int(self._check(self._k32.CreateJobObjectW(None, None), "CreateJobObjectW"))

        def set_kill_on_close(self, job: int) -> None:
            ctypes, wintypes = self._ctypes, self._wintypes

            class BasicLimits(ctypes.Structure):
                _fields_ = [
                    ("PerProcessUserTimeLimit", ctypes.c_int64),
                    ("PerJobUserTimeLimit", ctypes.c_int64),
                    ("LimitFlags", wintypes.DWORD),
                    ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t),
                    ("ActiveProcessLimit", wintypes.DWORD),
                    ("Affinity", ctypes.c_size_t),
                    ("PriorityClass", wintypes.DWORD),
                    ("SchedulingClass", wintypes.DWORD),
                ]

            class IoCounters(ctypes.Structure):
                _fields_ = [
                    (name, ctypes.c_uint64)
                    for name in (
                        "ReadOperationCount",
                        "WriteOperationCount",
                        "OtherOperationCount",
                        "ReadTransferCount",
                        "WriteTransferCount",
                        "OtherTransferCount",
                    )
                ]

            class ExtendedLimits(ctypes.Structure):
                _fields_ = [
                    ("BasicLimitInformation", BasicLimits),
                    ("IoInfo", IoCounters),
                    ("ProcessMemoryLimit", ctypes.c_size_t),
                    ("JobMemoryLimit", ctypes.c_size_t),
                    ("PeakProcessMemoryUsed", ctypes.c_size_t),
                    ("PeakJobMemoryUsed", ctypes.c_size_t),
                ]

            limits = ExtendedLimits()
            limits.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            self._check(
                self._k32.SetInformationJobObject(
                    job, 9, ctypes.byref(limits), ctypes.sizeof(limits)
                ),
                "SetInformationJobObject",
            )

        def create_process(
            self, argv: list[str], cwd: str, env: Mapping[str, str]
        ) -> tuple[int, int, int, int, int]:
            # subprocess builds the command line, environment block and pipes the Windows way;
            # the suspended start and new group are creation flags.
            flags = 0x00000004 | 0x00000200  # CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP
            try:
                popen = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    creationflags=flags,
                )
            except OSError as exc:
                raise Win32Error(
                    getattr(exc, "winerror", None) or ERROR_FILE_NOT_FOUND, "CreateProcessW"
                ) from None
            import msvcrt

            process = int(popen._handle)  # type: ignore[attr-defined]
            thread = self._open_main_thread(popen.pid)
            stdout = msvcrt.get_osfhandle(popen.stdout.fileno())  # type: ignore[union-attr,attr-defined]
            stderr = msvcrt.get_osfhandle(popen.stderr.fileno())  # type: ignore[union-attr,attr-defined]
            self._keep = getattr(self, "_keep", []) + [popen]
            return process, thread, popen.pid, stdout, stderr

        def _open_main_thread(self, pid: int) -> int:
            ctypes, wintypes = self._ctypes, self._wintypes

            class ThreadEntry(ctypes.Structure):
                _fields_ = [
                    ("dwSize", wintypes.DWORD),
                    ("cntUsage", wintypes.DWORD),
                    ("th32ThreadID", wintypes.DWORD),
                    ("th32OwnerProcessID", wintypes.DWORD),
                    ("tpBasePri", wintypes.LONG),
                    ("tpDeltaPri", wintypes.LONG),
                    ("dwFlags", wintypes.DWORD),
                ]

            snapshot = self._check(
                self._k32.CreateToolhelp32Snapshot(0x4, 0), "CreateToolhelp32Snapshot"
            )
            try:
                entry = ThreadEntry()
                entry.dwSize = ctypes.sizeof(entry)
                ok = self._k32.Thread32First(snapshot, ctypes.byref(entry))
                while ok:
                    if entry.th32OwnerProcessID == pid:
                        return int(
                            self._check(
                                self._k32.OpenThread(0x0002, False, entry.th32ThreadID),
                                "OpenThread",
                            )
                        )
                    ok = self._k32.Thread32Next(snapshot, ctypes.byref(entry))
            finally:
                self._k32.CloseHandle(snapshot)
            raise Win32Error(ERROR_FILE_NOT_FOUND, "Thread32First")

        def assign(self, job: int, process: int) -> None:
            self._check(
                self._k32.AssignProcessToJobObject(job, process), "AssignProcessToJobObject"
            )

        def resume(self, thread: int) -> None:
            if self._k32.ResumeThread(thread) == 0xFFFFFFFF:
                raise Win32Error(self._ctypes.get_last_error(), "ResumeThread")

        def ctrl_break(self, pid: int) -> None:
            self._check(self._k32.GenerateConsoleCtrlEvent(1, pid), "GenerateConsoleCtrlEvent")

        def terminate_job(self, job: int, exit_code: int) -> None:
            self._check(self._k32.TerminateJobObject(job, exit_code), "TerminateJobObject")

        def wait(self, process: int, timeout_ms: int) -> bool:
            return bool(self._k32.WaitForSingleObject(process, timeout_ms) == 0)

        def exit_code(self, process: int) -> int:
            code = self._wintypes.DWORD()
            self._check(
                self._k32.GetExitCodeProcess(process, self._ctypes.byref(code)),
                "GetExitCodeProcess",
            )
            return int(code.value)

        def read(self, pipe: int, size: int) -> bytes:
            buffer = self._ctypes.create_string_buffer(size)
            count = self._wintypes.DWORD()
            self._check(
                self._k32.ReadFile(pipe, buffer, size, self._ctypes.byref(count), None), "ReadFile"
            )
            return bytes(buffer.raw[: count.value])

        def close(self, handle: int) -> None:
            self._k32.CloseHandle(handle)

else:

    class Kernel32:
        """Stands in for the Windows-only ``Win32Api`` elsewhere."""

        def __init__(self) -> None:
            raise RuntimeError("the Windows spawner runs on Windows only")
