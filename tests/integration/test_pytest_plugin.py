"""The pytest plugin (SPEC §13), run by pytest's own ``pytester`` in a fresh pytest
process, on real processes: a passing run, a crash, a readiness timeout, a leaked
grandchild, and a module-scoped fixture on ``running(...)`` shared by three tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import psutil
import pytest

from tests.conftest import pid_alive

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["pytester"]

SCRIPTS = {
    # ready once it says so (a logLine probe)
    "db.py": "import time\ntime.sleep(0.3)\nprint('db: ready to accept connections', flush=True)\ntime.sleep(1000)\n",
    "api.py": "import os, time\nprint('api: serving as', os.environ['PROCESSMAN_ID'], flush=True)\ntime.sleep(1000)\n",
    # runs (so it is ready), says a few things, then fails
    "crasher.py": (
        "import sys, time\n"
        "for i in range(60):\n    print('crasher line', i, flush=True)\n"
        "time.sleep(0.5)\nprint('crasher: giving up', flush=True)\nsys.exit(3)\n"
    ),
    "silent.py": "import time\nprint('silent: starting', flush=True)\ntime.sleep(1000)\n",
    # a daemon that leaves its process group, its parent and processman's cgroup
    "leaker.py": textwrap.dedent(
        """\
        import os, sys, time
        pidfile = sys.argv[1]
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                try:
                    for line in open("/proc/self/mountinfo"):
                        parts = line.split()
                        if parts[parts.index("-") + 1] == "cgroup2":
                            with open(os.path.join(parts[4], "cgroup.procs"), "w") as f:
                                f.write(str(os.getpid()))
                            break
                except OSError:
                    pass
                with open(pidfile + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.rename(pidfile + ".tmp", pidfile)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                while True:
                    time.sleep(1)
            os._exit(0)
        print("leaker: daemon started", flush=True)
        time.sleep(1000)
        """
    ),
}

CONFIG = f"""
[[processes]]
id = "db"
command = [{sys.executable!r}, "db.py"]
ready = {{ logLine = "ready to accept" }}
stopTimeout = "2s"

[[processes]]
id = "api"
command = [{sys.executable!r}, "api.py"]
dependsOn = ["db"]
stopTimeout = "2s"

[[processes]]
id = "crasher"
command = [{sys.executable!r}, "crasher.py"]
autostart = false
restart = "never"

[[processes]]
id = "silent"
command = [{sys.executable!r}, "silent.py"]
autostart = false
ready = {{ logLine = "never printed" }}

[[processes]]
id = "pool"
command = [{sys.executable!r}, "api.py"]
autostart = false
replicas = 2

[[processes]]
id = "leaker"
command = [{sys.executable!r}, "leaker.py", "daemon.pid"]
autostart = false
"""

TESTS = """
import os, time
from pathlib import Path

import pytest


def test_two_processes_one_waiting_for_the_other(processman):
    pm = processman("processman.toml")
    assert pm.status("db").ready and pm.status("api").ready
    assert pm.status("api").start_time > pm.status("db").start_time
    assert pm.url is None
    deadline = time.monotonic() + 10
    while not pm.logs("api", n=5) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e.line for e in pm.logs("api", n=5)] == ["api: serving as api"]
    old = pm.status("db").pid
    pm.restart("db")
    pm.wait_ready("db", "api", timeout="30s")
    assert pm.status("db").pid != old
    assert {s.id for s in pm.list()} == {
        "db", "api", "crasher", "silent", "pool-0", "pool-1", "leaker"
    }
    Path("pids").write_text(" ".join(str(pm.status(i).pid) for i in ("db", "api")))


def test_a_group_of_replicas(processman):
    pm = processman("processman.toml", only=["pool"])
    assert [(s.id, s.ready) for s in pm.list() if s.group == "pool"] == [
        ("pool-0", True),
        ("pool-1", True),
    ]


def test_the_api_url(processman):
    import httpx

    pm = processman("api.toml")
    assert pm.url.startswith("http://127.0.0.1:")
    listed = httpx.get(pm.url + "/api/processes").json()
    assert [p["id"] for p in listed] == ["db"] and listed[0]["ready"]


def test_a_crash_during_the_test(processman):
    pm = processman("processman.toml", only=["crasher"])
    time.sleep(1.5)


def test_not_ready_in_time(processman):
    processman("processman.toml", only=["silent"], timeout="1s")


def test_a_leaked_grandchild(processman):
    pm = processman("processman.toml", only=["leaker"])
    deadline = time.monotonic() + 10
    while not Path("daemon.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert Path("daemon.pid").exists()
"""

MODULE = """
import pytest

from processman.testing import running

PIDS = []


@pytest.fixture(scope="module")
def services():
    with running("processman.toml", only=["api"]) as pm:
        yield pm


@pytest.mark.parametrize("n", [1, 2, 3])
def test_reused(services, n):
    assert services.status("api").ready and services.status("db").ready
    PIDS.append(services.status("api").pid)
    assert len(set(PIDS)) == 1
"""


SESSION = """
import pytest


@pytest.fixture
def silent(processman_session):
    return processman_session("processman.toml", only=["silent"], timeout="1s")


def test_a_session_factory_not_ready(silent):
    pass
"""


def report_of(output: str, heading: str) -> str:
    """The part of pytest's output under ``heading``, up to the next test's report."""
    rest = output[output.index(heading) + len(heading) :]
    return re.split(r"\n_{3,} |\n={3,} ", rest, maxsplit=1)[0]


def _marked_processes() -> list[int]:
    """Processes that carry a ``running`` marker (none should outlive a run)."""
    found = []
    for process in psutil.process_iter():
        try:
            if "PROCESSMAN_TEST_RUN" in process.environ():
                found.append(process.pid)
        except (psutil.Error, OSError):
            continue
    return found


def test_the_plugin_on_real_processes(pytester: pytest.Pytester) -> None:
    for name, text in SCRIPTS.items():
        pytester.makefile(".py", **{name[:-3]: text})
    (pytester.path / "processman.toml").write_text(CONFIG)
    port = free_port()
    api = CONFIG.split("[[processes]]")[1]
    (pytester.path / "api.toml").write_text(
        f'[api]\nlisten = "127.0.0.1:{port}"\n[[processes]]{api}'
    )
    pytester.makepyfile(test_fixture=TESTS, test_module_scope=MODULE, test_session=SESSION)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=120)
    output = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 7, output  # three, the leak test's call, three reused
    assert outcomes.get("failed") == 2, output
    assert outcomes.get("errors") == 2, output  # the leak's teardown, the session setup
    result.stdout.fnmatch_lines(
        [
            "*test_two_processes_one_waiting_for_the_other PASSED*",
            "*test_a_group_of_replicas PASSED*",
            "*test_the_api_url PASSED*",
            "*test_a_crash_during_the_test FAILED*",
            "*test_not_ready_in_time FAILED*",
            "*test_a_leaked_grandchild PASSED*",
            "*test_a_leaked_grandchild ERROR*",
            "*test_reused?1? PASSED*",
            "*test_reused?2? PASSED*",
            "*test_reused?3? PASSED*",
        ]
    )
    # the crash: the test failed, with lastError and the last 50 lines in the report
    crash = report_of(output, "_ test_a_crash_during_the_test _")
    assert "a process failed while the test ran: crasher exited: exited with code 3" in crash
    section = crash[crash.index("processman: crasher") :]
    assert "--- last 50 log lines of crasher ---" in section
    assert "crasher line 11\n" in section and "crasher: giving up" in section
    assert "crasher line 10\n" not in section  # 62 lines were written: the last 50 shown
    # the timeout: the test failed with the process's last error and its lines
    timeout = report_of(output, "_ test_not_ready_in_time _")
    assert "ProcessFailed: silent was not ready in time" in timeout
    assert "silent: starting" in timeout[timeout.index("processman: silent") :]
    # the leak: named, killed, and an error of the test that left it
    leak = report_of(output, "ERROR at teardown of test_a_leaked_grandchild")
    assert "still alive after every process was stopped (killed now): pid" in leak
    daemon = int((pytester.path / "daemon.pid").read_text())
    assert f"pid {daemon} (" in leak
    assert not pid_alive(daemon)
    # a session factory's readiness failure goes to the report of the test that asked
    session = report_of(output, "ERROR at setup of test_a_session_factory_not_ready")
    assert "silent: starting" in session[session.index("processman: silent") :]
    # every process of every run is gone
    pids = [int(pid) for pid in (pytester.path / "pids").read_text().split()]
    assert not any(pid_alive(pid) for pid in pids)
    assert _marked_processes() == []


def test_the_plugin_is_inert_for_tests_that_do_not_use_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
import sys

def test_nothing_of_processman_was_imported():
    assert "processman_pytest" in sys.modules  # the plugin is loaded ...
    assert [m for m in sys.modules if m.split(".")[0] == "processman"] == []  # ... alone
    assert "loguru" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    fixtures = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", "-q"],
        capture_output=True,
        text=True,
        cwd=pytester.path,
        env={**os.environ, "PYTEST_ADDOPTS": ""},
        timeout=60,
    )
    assert "processman -- " in fixtures.stdout or "processman [" in fixtures.stdout, fixtures.stdout
    assert "processman_session [session scope]" in fixtures.stdout


def test_an_api_that_cannot_be_served_is_a_config_error_before_any_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from processman.domain.errors import ConfigError
    from processman.testing import running

    monkeypatch.delenv("PROCESSMAN_TOKEN", raising=False)
    marker = tmp_path / "started"
    process = f'[[processes]]\nid = "a"\ncommand = ["touch", "{marker}"]\n'
    open_to_all = tmp_path / "open.toml"
    open_to_all.write_text(f'[api]\nlisten = "0.0.0.0:{free_port()}"\n{process}')
    with pytest.raises(ConfigError, match=r"api\.listen: refusing to serve .* without a token"):
        with running(open_to_all):
            pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = tmp_path / "busy.toml"
        busy.write_text(f'[api]\nlisten = "127.0.0.1:{taken.getsockname()[1]}"\n{process}')
        with pytest.raises(ConfigError, match=r"api\.listen: cannot listen on 127\.0\.0\.1:"):
            with running(busy):
                pass
    assert not marker.exists()  # nothing was started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
