"""``processman run --api`` as a real subprocess: its clients (the CLI), auth, and schemathesis."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import TYPE_CHECKING

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from processman.adapters.api_client import ApiClient
from processman.domain.errors import ApiUnreachableError
from tests.conftest import TESTDATA, pid_alive

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, extra: str = "") -> Path:
    path = directory / "processman.toml"
    path.write_text(
        f"""
[[processes]]
id = "echo"
command = ["{sys.executable}", "{TESTDATA / "echo.py"}"]
stopTimeout = "2s"

[[processes]]
id = "env"
script = "{TESTDATA / "print_env.py"}"
interpreter = "{sys.executable}"
args = ["PROCESSMAN_API", "PROCESSMAN_ID", "PROCESSMAN_TOKEN"]
stopTimeout = "2s"
{extra}
"""
    )
    return path


class Supervisor:
    """A ``processman run --api`` subprocess."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processman",
                "run",
                str(config),
                "--api",
                f"127.0.0.1:{self.port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/api/health", timeout=1)
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.communicate()[1]
                time.sleep(0.02)
        raise AssertionError("processman run --api did not answer")

    def cli(
        self, *args: str, token: str | None = None, api: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("PROCESSMAN_API", "PROCESSMAN_TOKEN")
        }
        env["PROCESSMAN_API"] = api or self.url
        if token:
            env["PROCESSMAN_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "processman", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )

    def shutdown(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()  # and its pipes closed
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    running = Supervisor(write_config(tmp_path), env={"PROCESSMAN_TOKEN": ""})
    yield running
    running.shutdown()


def test_status_start_stop_restart_and_exit_codes(supervisor: Supervisor) -> None:
    result = supervisor.cli("status")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        *("ID", "STATUS", "PID", "UPTIME", "RESTARTS", "READY", "CPU", "MEM", "LAST", "ERROR")
    ]
    assert [row.split()[:2] + row.split()[5:6] for row in rows] == [
        ["echo", "running", "yes"],
        ["env", "running", "yes"],
    ]
    cpu, memory = rows[0].split()[6], rows[0].split()[7:9]
    assert cpu.endswith("%") and memory[1] in ("KiB", "MiB"), rows[0]  # the whole tree's

    as_json = json.loads(supervisor.cli("status", "--json").stdout)
    assert [s["id"] for s in as_json] == ["echo", "env"] and "restartCount" in as_json[0]

    stopped = supervisor.cli("stop", "echo")
    assert stopped.returncode == 0 and stopped.stdout.splitlines()[1].split()[:6] == [
        *("echo", "stopped", "-", "-", "0", "-")
    ]
    assert not pid_alive(as_json[0]["pid"])
    assert supervisor.cli("start", "echo").stdout.splitlines()[1].split()[1] == "running"
    assert supervisor.cli("restart", "echo").returncode == 0

    unknown = supervisor.cli("stop", "ghost")
    assert unknown.returncode == 1 and "unknown process id 'ghost'" in unknown.stderr
    unreachable = supervisor.cli("status", api=f"127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3 and "cannot reach the processman API" in unreachable.stderr
    for result in (unknown, unreachable):
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_status_watch_redraws_in_place_on_each_change_and_restores_the_terminal(
    supervisor: Supervisor,
) -> None:
    import pty

    env = {k: v for k, v in os.environ.items() if k not in ("PROCESSMAN_API", "PROCESSMAN_TOKEN")}
    env["PROCESSMAN_API"] = supervisor.url
    leader, follower = pty.openpty()
    watch = subprocess.Popen(
        [sys.executable, "-m", "processman", "status", "--watch"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        # as from a terminal: a suite run as a background job (CI) ignores SIGINT, and
        # the child would inherit that and never see the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(follower)
    screen = b""

    def read_until(needle: bytes) -> None:
        nonlocal screen
        deadline = time.monotonic() + 15
        while needle not in screen:
            assert time.monotonic() < deadline, screen[-2000:]
            import select

            if select.select([leader], [], [], 0.2)[0]:
                try:
                    screen += os.read(leader, 65536)
                except OSError:  # the other end closed
                    break

    try:
        read_until(b"env ")
        assert screen.startswith(b"\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor
        assert b"\x1b[2J" not in screen  # redrawn in place, never cleared: no flicker
        start = len(screen)
        assert supervisor.cli("stop", "echo").returncode == 0
        read_until(b"stopped")
        assert b"\x1b[H" in screen[start:]  # from the top, over the old table
        watch.send_signal(signal.SIGINT)  # Ctrl-C
        read_until(b"\x1b[?1049l")  # reading on: a full terminal would hold its writes
        assert watch.wait(10) == 0
        assert screen.endswith(b"\x1b[?25h\x1b[?1049l")  # the cursor and the screen back
        assert b"Traceback" not in screen
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        os.close(leader)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("not a url", "spaces or control characters"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("ftp://127.0.0.1:9876", "not ftp://"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://:9876", "names no host"),
        ("127.0.0.1:9876?x=1", "query or fragment"),
    ],
)
def test_an_api_address_that_is_no_address_is_named_not_a_traceback(
    address: str, problem: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PROCESSMAN_API", "PROCESSMAN_TOKEN")}
    for source, extra, argv in (
        ("--api", {}, ["status", "--api", address]),
        ("PROCESSMAN_API", {"PROCESSMAN_API": address}, ["logs", "echo", "-f"]),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "processman", *argv],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=30,
        )
        assert result.returncode == 3, result.stderr
        assert (
            result.stderr.startswith(f"processman: {source}: ") and repr(address) in result.stderr
        )
        assert problem in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_children_get_the_api_url_and_logs(supervisor: Supervisor) -> None:
    deadline = time.monotonic() + 10
    result = supervisor.cli("logs", "env", "-n", "3")
    while result.stdout.count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        result = supervisor.cli("logs", "env", "-n", "3")
    assert result.stdout.splitlines() == [
        f"PROCESSMAN_API={supervisor.url}",
        "PROCESSMAN_ID=env",
        "PROCESSMAN_TOKEN=<unset>",
    ]
    assert supervisor.cli("logs", "env", "-n", "1").stdout == "PROCESSMAN_TOKEN=<unset>\n"


def test_logs_follow_until_ctrl_c(supervisor: Supervisor) -> None:
    env = {**os.environ, "PROCESSMAN_API": supervisor.url}
    with subprocess.Popen(
        [sys.executable, "-m", "processman", "logs", "echo", "-n", "1", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl-C as from a terminal: a runner started in the background (`cmd &` without job
        # control) passes SIGINT on ignored, and Python then keeps ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as follower:
        lines: queue.Queue[str] = queue.Queue()
        assert follower.stdout is not None
        threading.Thread(
            target=lambda: [lines.put(line) for line in follower.stdout], daemon=True
        ).start()  # type: ignore[union-attr]
        try:
            assert lines.get(timeout=10) == "Hello from Python\n"  # the tail
            # the stream has no backlog: restart until a new instance's line arrives live
            deadline = time.monotonic() + 15
            live = None
            while live is None and time.monotonic() < deadline:
                assert supervisor.cli("restart", "echo").returncode == 0
                try:
                    live = lines.get(timeout=1)
                except queue.Empty:
                    pass
            assert live == "Hello from Python\n"
            follower.send_signal(signal.SIGINT)
            follower.wait(timeout=10)
        finally:
            if follower.poll() is None:
                follower.kill()
        assert follower.returncode == 0
        assert "Traceback" not in follower.stderr.read()  # type: ignore[union-attr]


class Follower:
    """``logs ID -n 0 -f``, its stdout read line by line from a thread."""

    def __init__(self, supervisor: Supervisor, process_id: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processman", "logs", process_id, "-n", "0", "-f"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PROCESSMAN_API": supervisor.url},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(
            target=lambda: [self.lines.put(line) for line in self.proc.stdout],  # type: ignore[union-attr]
            daemon=True,
        )
        self._reader.start()
        # the stream has no backlog: restart until a new instance's line arrives live
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert supervisor.cli("restart", process_id).returncode == 0
            try:
                self.lines.get(timeout=1)
                return
            except queue.Empty:
                pass
        self.proc.kill()
        raise AssertionError("the follower never got a live line")

    def finish(self) -> tuple[list[str], str]:
        """Wait for it to end by itself: the lines it printed since, and its stderr."""
        try:
            self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        said = []
        while not self.lines.empty():
            said.append(self.lines.get())
        with self.proc.stdout, self.proc.stderr:  # type: ignore[union-attr]
            return said, self.proc.stderr.read()  # type: ignore[union-attr]


@pytest.mark.parametrize("ending", ["shut down", "killed"])
def test_logs_follow_ends_with_processman(tmp_path: Path, ending: str) -> None:
    # the server used to stop first: uvicorn cancelled the open stream after 1 s and run
    # printed its traceback, and the follower missed the children's last lines
    config = tmp_path / "processman.toml"
    config.write_text(
        f"[[processes]]\nid = 'slow'\n"
        f"command = [{sys.executable!r}, {str(TESTDATA / 'slow_exit.py')!r}]\n"
    )
    supervisor = Supervisor(config, env={"PROCESSMAN_TOKEN": ""})
    try:
        follower = Follower(supervisor, "slow")
        if ending == "shut down":
            err = supervisor.shutdown()
            assert "Traceback" not in err and "slow | cleaning up" in err
        else:
            supervisor.proc.kill()
        said, follower_err = follower.finish()
    finally:
        if supervisor.proc.poll() is None:
            supervisor.proc.kill()
        supervisor.proc.communicate()
    if ending == "shut down":  # the child's last words, then the end
        assert said[-1:] == ["cleaning up\n"], said
        assert follower.proc.returncode == 0
        assert follower_err == "[processman: processman shut down]\n"
    else:
        assert follower.proc.returncode == 3
        assert follower_err == f"processman: {supervisor.url}: the log stream broke off\n"


def test_token_from_the_environment(tmp_path: Path) -> None:
    running = Supervisor(write_config(tmp_path), env={"PROCESSMAN_TOKEN": "t0ken"})
    try:
        refused = running.cli("status")
        assert refused.returncode == 1 and "bearer token" in refused.stderr
        assert running.cli("status", token="wrong").returncode == 1
        assert running.cli("status", token="t0ken").returncode == 0
        assert running.cli("--version").returncode == 0
    finally:
        running.shutdown()


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processman", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PROCESSMAN_TOKEN": "", **(env or {})},
    )


def test_non_loopback_without_token_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run_command("run", str(config), "--api", f"0.0.0.0:{free_port()}")
    assert result.returncode == 2
    assert "refusing to serve the API on 0.0.0.0" in result.stderr and "token" in result.stderr


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_command("run", str(write_config(tmp_path)), "--api", f"127.0.0.1:{port}")
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


# --- schemathesis against the live server ---------------------------------------------


def test_schemathesis_finds_no_500_and_no_schema_violation(tmp_path: Path) -> None:
    running = Supervisor(write_config(tmp_path), env={"PROCESSMAN_TOKEN": "tok"})
    try:
        schema = schemathesis.openapi.from_url(running.url + "/openapi.json")
        # the log stream never ends, so it cannot be checked as one response
        schema = schema.exclude(path="/api/processes/{id}/logs/stream")
        schema = schema.exclude(path="/api/events")
        checked = []
        for result in schema.get_all_operations():
            operation = result.ok()
            checked.append(operation.label)

            # random cases, and the config's ids as the schema's examples (so real
            # processes are started, stopped and restarted too)
            strategy = st.one_of(operation.as_strategy(), *operation.get_strategies_from_examples())

            @given(case=strategy)
            @settings(
                max_examples=10,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case: schemathesis.Case) -> None:
                # scaling a process without replicas is 400 (SPEC §9) however valid the
                # request's shape: that 400 is the state's answer, not a refused shape
                excluded = [positive_data_acceptance] if case.path.endswith("/scale") else []
                case.call_and_validate(
                    headers={"Authorization": "Bearer tok"}, excluded_checks=excluded
                )

            check()
        assert len(checked) == 11, checked
    finally:
        running.shutdown()


def test_the_config_token_wins_over_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path, '\n[api]\ntoken = "from-file"\n')
    running = Supervisor(config, env={"PROCESSMAN_TOKEN": "from-env"})
    try:
        assert running.cli("status", token="from-env").returncode == 1
        assert running.cli("status", token="from-file").returncode == 0
    finally:
        running.shutdown()


@contextlib.contextmanager
def stalling_server(answer: bytes) -> Iterator[str]:
    """A server that sends ``answer`` to each connection and then nothing: processman run
    stopped with Ctrl-Z, or something that is not processman."""
    server = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return  # closed
            connection.recv(65536)
            connection.sendall(answer)
            connections.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        server.close()
        thread.join(5)
        for connection in connections:
            connection.close()


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"


@pytest.mark.parametrize(
    "answer",
    [
        b"",  # not even a status line
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[",
    ],
)
def test_a_server_that_never_answers_is_unreachable_not_a_hang(answer: bytes) -> None:
    with stalling_server(answer) as url:
        client = ApiClient(url, answer_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ApiUnreachableError, match="timed out"):
            client.get("/api/processes")
        assert time.monotonic() - started < 5


def test_a_log_stream_gone_silent_ends_the_follow() -> None:
    # The server sends a keep-alive every 15 s: a stream silent for longer is dead.
    answer = SSE_HEAD + b'data: {"line": "last words"}\n\n'
    with stalling_server(answer) as url:
        client = ApiClient(url, stream_silence=0.3)
        received = []
        with pytest.raises(ApiUnreachableError) as info:
            for event in client.events("/api/processes/x/logs/stream"):
                received.append(event)
    assert received == [("message", '{"line": "last words"}')]
    assert (
        str(info.value)
        == f"cannot reach the processman API at {url}: the log stream was silent for 0.3 s"
    )
