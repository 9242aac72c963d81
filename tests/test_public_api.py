"""The public surface of SPEC §7: names, the StrEnum status, snake_case fields, nothing on import."""

from __future__ import annotations

import subprocess
import sys

import processman
from processman import ProcessStatus, Status, UnknownProcessError


def test_all_names_exist() -> None:
    for name in processman.__all__:
        assert hasattr(processman, name), name
    assert {"ProcessManager", "load_config", "UnknownProcessError", "Status"} <= set(
        processman.__all__
    )


def test_status_is_a_str_enum_with_spec_strings() -> None:
    assert [s.value for s in Status] == [
        "waiting",
        "starting",
        "running",
        "backoff",
        "stopping",
        "stopped",
        "exited",
        "crashed",
    ]
    assert Status.RUNNING == "running" and isinstance(Status.RUNNING, str)


def test_status_fields_are_snake_case_and_frozen() -> None:
    assert ProcessStatus.__struct_fields__ == (
        "id",
        "status",
        "pid",
        "start_time",
        "uptime",
        "restart_count",
        "exit_code",
        "last_error",
        "command",
        "dev_mode",
        "ready",
        "notify_status",
        "group",
        "replica",
        "cpu_percent",
        "memory_bytes",
    )
    status = ProcessStatus(
        id="a",
        status=Status.STOPPED,
        pid=None,
        start_time=None,
        uptime=0.0,
        restart_count=0,
        exit_code=None,
        last_error="",
        command=("x",),
        dev_mode=False,
    )
    try:
        status.pid = 3  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("status objects must be frozen")


def test_unknown_process_error_is_a_key_error() -> None:
    assert issubclass(UnknownProcessError, KeyError)
    assert str(UnknownProcessError("x")) == "unknown process id 'x'"


def test_import_has_no_side_effects() -> None:
    code = (
        "import threading, sys; from loguru import logger; before = len(logger._core.handlers);"
        "import processman;"
        "assert threading.active_count() == 1;"
        "assert 'dependency_injector' not in sys.modules;"  # until ProcessManager is used
        "assert processman.ProcessManager.__name__ == 'ProcessManager';"
        "assert len(logger._core.handlers) == before;"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "ok", result.stderr
