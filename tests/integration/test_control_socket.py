"""``processman run`` in one terminal and the client commands in another (SPEC §6): the
control socket, found from a subdirectory with nothing else given, and every client
command over it. Real ``processman`` subprocesses throughout."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import TESTDATA, pid_alive

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a unix socket")

ENV = {k: v for k, v in os.environ.items() if k not in ("PROCESSMAN_API", "PROCESSMAN_TOKEN")}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A client command as a user types it in another terminal: no --api, no token."""
    return subprocess.run(
        [sys.executable, "-m", "processman", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=30,
    )


def write_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "processman.toml"
    config.write_text(
        f"""
[[processes]]
id = "echo"
command = ["{sys.executable}", "{TESTDATA / "echo.py"}"]
stopTimeout = "2s"

[[processes]]
id = "tree"
script = "{TESTDATA / "signal_tree.py"}"
interpreter = "{sys.executable}"
stopTimeout = "2s"

[[processes]]
id = "chatty"
command = ["sh", "-c", "i=0; while true; do i=$$((i+1)); echo line $$i; sleep 0.05; done"]
stopTimeout = "2s"
"""
    )
    return config


@contextlib.contextmanager
def supervising(config: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    """``processman run CONFIG`` in its directory, until its control socket answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "processman", "run", str(config), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 20
        while cli("status", cwd=config.parent).returncode != 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the control socket never answered"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:  # always: a run the test ended itself still holds its two pipes
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def rows(table: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


def wait_for_line(config: Path, process_id: str, text: str) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        lines = cli("logs", process_id, "-n", "100", cwd=config.parent).stdout.splitlines()
        if any(text in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_run_here_and_status_from_a_subdirectory(tmp_path: Path) -> None:
    config = write_config(tmp_path / "app")
    below = tmp_path / "app" / "src" / "deep"
    below.mkdir(parents=True)
    with supervising(config) as proc:
        sock = tmp_path / "app" / ".processman.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # only its owner connects
        result = cli("status", cwd=below)
        assert result.returncode == 0, result.stderr
        assert [r[:2] for r in rows(result.stdout).values()] == [
            ["echo", "running"],
            ["tree", "running"],
            ["chatty", "running"],
        ]
        assert list(rows(cli("ps", "tree", "echo", cwd=below).stdout)) == ["tree", "echo"]
        refused = cli("ps", "ghost", cwd=below)
        assert refused.returncode == 1 and "unknown process id 'ghost'" in refused.stderr
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert not sock.exists()  # removed on exit
    gone = cli("status", cwd=below)
    assert gone.returncode == 3 and "no processman runs here" in gone.stderr


def test_a_second_run_of_one_config_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with supervising(config) as first:
        second = subprocess.run(
            [sys.executable, "-m", "processman", "run", str(config)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=30,
        )
        assert second.returncode == 2
        assert second.stderr == (
            f"processman: {config}: already supervised by pid {first.pid} "
            f"(its control socket {tmp_path / '.processman.sock'} answers)\n"
        )
        assert cli("status", cwd=tmp_path).returncode == 0  # the first runs on, untouched


def test_a_killed_runs_socket_is_replaced(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with supervising(config) as killed:
        pids = [r[2] for r in rows(cli("status", cwd=tmp_path).stdout).values()]
        killed.kill()  # no clean-up: the socket stays, and nobody answers on it
        killed.communicate()
    assert (tmp_path / ".processman.sock").exists()
    deadline = time.monotonic() + 10
    while any(pid_alive(int(pid)) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # the children die with the manager (SPEC §2)
    stale = cli("status", cwd=tmp_path)
    assert stale.returncode == 3 and "connection refused" in stale.stderr
    with supervising(config):
        assert cli("status", cwd=tmp_path).returncode == 0


def test_a_directory_without_room_for_the_socket_is_said_once(tmp_path: Path) -> None:
    # a unix socket's path holds at most 107 bytes: this one is longer
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    config = write_config(deep)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "processman", "run", str(config), "--api", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 20
        env = {**ENV, "PROCESSMAN_API": f"127.0.0.1:{port}"}
        while True:
            status = subprocess.run(
                [sys.executable, "-m", "processman", "status"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
            if status.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status.returncode == 0, status.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    said = [line for line in err.splitlines() if "no control socket" in line]
    assert len(said) == 1 and "client commands need --api" in said[0], err


def test_start_stop_restart_several_and_all(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with supervising(config):
        before = rows(cli("status", cwd=tmp_path).stdout)
        stopped = cli("stop", "echo", "chatty", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert {k: v[1] for k, v in rows(stopped.stdout).items()} == {
            "echo": "stopped",
            "chatty": "stopped",
        }
        assert not pid_alive(int(before["echo"][2])) and not pid_alive(int(before["chatty"][2]))
        started = cli("start", "all", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        assert [v[1] for v in rows(started.stdout).values()] == ["running"] * 3
        partly = cli("restart", "echo", "ghost", cwd=tmp_path)
        assert partly.returncode == 1  # the known one is restarted all the same
        assert list(rows(partly.stdout)) == ["echo"]
        assert partly.stderr.strip().endswith("unknown process id 'ghost'")
        assert cli("start", "all", "--help", cwd=tmp_path).returncode == 0


def test_signal_reaches_the_whole_tree(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with supervising(config):
        wait_for_line(config, "tree", "child ready")
        sent = cli("signal", "USR1", "tree", cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        assert rows(sent.stdout)["tree"][1] == "running"
        lines = wait_for_line(config, "tree", "child got SIGUSR1")
        assert "parent got SIGUSR1" in lines and "child got SIGUSR1" in lines
        bad = cli("signal", "NOPE", "tree", cwd=tmp_path)
        assert bad.returncode == 1 and "unknown signal 'NOPE'" in bad.stderr
        cli("stop", "echo", cwd=tmp_path)
        idle = cli("signal", "HUP", "echo", cwd=tmp_path)
        assert idle.returncode == 1 and "'echo' is stopped: no process to signal" in idle.stderr


def test_logs_of_every_process_in_time_order_with_the_prefix(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with supervising(config):
        wait_for_line(config, "chatty", "line 5")
        result = cli("logs", "-n", "20", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        prefix = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) (echo  |tree  |chatty) \| ")
        assert all(prefix.match(line) for line in lines), lines  # no colour: not a terminal
        stamps = [prefix.match(line).group(1) for line in lines]  # type: ignore[union-attr]
        assert stamps == sorted(stamps)
        assert any(" echo   | Hello from Python" in line for line in lines)
        # chatty's last 20 lines, in order (line 1 is gone once it passes line 20)
        chatty = [int(line.split()[-1]) for line in lines if " chatty | line " in line]
        assert 5 <= chatty[-1] and len(chatty) == min(20, chatty[-1]), chatty
        assert chatty == list(range(chatty[0], chatty[-1] + 1))
        coloured = subprocess.run(
            [sys.executable, "-m", "processman", "logs", "chatty", "echo", "-n", "1"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**ENV, "FORCE_COLOR": "1"},
            timeout=30,
        )
        assert "\x1b[" in coloured.stdout and " | " in coloured.stdout
        # each id in the colour run's console gives it: by its place in the config
        assert "\x1b[36mecho  " in coloured.stdout and "\x1b[32mchatty" in coloured.stdout
        one = cli("logs", "chatty", "-n", "2", cwd=tmp_path).stdout.splitlines()
        assert len(one) == 2 and all(line.startswith("line ") for line in one)  # bare


def test_logs_follow_every_process(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with supervising(config) as run:
        follower = subprocess.Popen(
            [sys.executable, "-m", "processman", "logs", "-f", "-n", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=ENV,
        )
        try:
            assert follower.stdout is not None
            seen = [follower.stdout.readline() for _ in range(3)]
            assert all(" chatty | line " in line for line in seen), seen
            cli("restart", "echo", cwd=tmp_path)
            while " echo   | Hello from Python" not in (line := follower.stdout.readline()):
                assert line, "the follow ended early"
            run.send_signal(signal.SIGTERM)  # every stream ends: the follow ends, exit 0
            _, err = follower.communicate(timeout=20)
            assert follower.returncode == 0 and err == "[processman: processman shut down]\n"
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.communicate()


def test_every_command_has_an_example_and_each_argument_a_help() -> None:
    for command in ("run", "check", "status", "start", "stop", "restart", "signal", "logs"):
        result = cli(command, "--help", cwd=Path.cwd())
        assert result.returncode == 0
        assert "example:" in result.stdout, command
        positional = result.stdout.split("positional arguments:")[-1].split("options:")[0]
        for line in positional.strip().splitlines():
            if line.startswith("  ") and not line.startswith("    "):
                assert len(line.split()) > 1, f"{command}: {line!r} has no help"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wait_and_only_with_dependencies(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "processman.toml").write_text(
        f"""
[[processes]]
id = "db"
script = "{TESTDATA / "listen_later.py"}"
interpreter = "{sys.executable}"
args = ["{port}", "0.5"]
ready = {{ tcp = "127.0.0.1:{port}" }}
stopTimeout = "2s"

[[processes]]
id = "app"
command = ["{sys.executable}", "{TESTDATA / "echo.py"}"]
dependsOn = ["db"]
stopTimeout = "2s"

[[processes]]
id = "never"
command = ["{sys.executable}", "{TESTDATA / "echo.py"}"]
ready = {{ logLine = "this line never comes" }}
stopTimeout = "2s"

[[processes]]
id = "other"
command = ["{sys.executable}", "{TESTDATA / "echo.py"}"]
"""
    )
    config = tmp_path / "processman.toml"
    with supervising(config, "--only", "app,never") as run:
        waited = cli("wait", "app", "--timeout", "20s", cwd=tmp_path)
        assert waited.returncode == 0, waited.stderr
        assert rows(waited.stdout)["app"][1] == "running"
        assert rows(cli("status", "db", cwd=tmp_path).stdout)["db"][1] == "running"
        late = cli("wait", "never", "--timeout", "0.5s", cwd=tmp_path)
        assert late.returncode == 1
        assert late.stderr.strip().endswith("never is not ready after 0.5s: running, not ready")
        bad = cli("wait", "app", "--timeout", "soon", cwd=tmp_path)
        assert bad.returncode == 1 and "--timeout: invalid duration" in bad.stderr
        assert cli("status", "other", cwd=tmp_path).returncode == 1  # not run: not in --only
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=20)
    assert "--only: also running db (needed by what --only names)" in err


def test_a_group_from_the_command_line(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "processman.toml"
    config.write_text(
        f"""
[[processes]]
id = "web"
command = ["{sys.executable}", "{TESTDATA / "fd_server.py"}"]
replicas = 2
sockets = ["127.0.0.1:{port}"]
ready = {{ logLine = "serving" }}
stopTimeout = "2s"

[[processes]]
id = "echo"
command = ["{sys.executable}", "{TESTDATA / "echo.py"}"]

[logs]
dir = "logs"
"""
    )
    checked = cli("check", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "replicas:    2 (web-0, web-1; below: the first's)" in checked.stdout
    assert f"socket:      127.0.0.1:{port}" in checked.stdout
    with supervising(config):
        assert list(rows(cli("status", cwd=tmp_path).stdout)) == ["web-0", "web-1", "echo"]
        assert list(rows(cli("status", "web", cwd=tmp_path).stdout)) == ["web-0", "web-1"]
        scaled = cli("scale", "web", "3", cwd=tmp_path)
        assert scaled.returncode == 0, scaled.stderr
        assert [v[1] for v in rows(scaled.stdout).values()] == ["running"] * 3
        before = rows(cli("status", "web", cwd=tmp_path).stdout)
        rolled = cli("restart", "web", cwd=tmp_path)
        assert rolled.returncode == 0, rolled.stderr
        after = rows(rolled.stdout)
        assert all(after[i][2] != before[i][2] for i in ("web-0", "web-1", "web-2"))
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        for args, message in [
            (("scale", "web", "x"), "replicas must be an integer of 0 or more, got 'x'"),
            (("scale", "echo", "2"), "set replicas in the config to scale 'echo'"),
            (("scale", "ghost", "2"), "unknown process id 'ghost'"),
        ]:
            refused = cli(*args, cwd=tmp_path)
            assert refused.returncode == 1 and refused.stderr.strip().endswith(message)
        logs = cli("logs", "web", cwd=tmp_path).stdout
        assert " web-0 | serving" in logs and " web-2 | serving" in logs, logs
        assert (tmp_path / "logs" / "web-1.log").read_text().count("serving") == 2


def test_reload_from_the_command_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    original = config.read_text()
    with supervising(config):
        before = rows(cli("status", cwd=tmp_path).stdout)
        config.write_text(original.replace('id = "chatty"', 'id = "talker"'))
        reloaded = cli("reload", cwd=tmp_path)
        assert reloaded.returncode == 0, reloaded.stderr
        assert reloaded.stdout.splitlines() == [
            "added:     talker",
            "removed:   chatty",
            "changed:   -",
            "unchanged: echo, tree",
        ]
        after = rows(cli("status", cwd=tmp_path).stdout)
        assert list(after) == ["echo", "tree", "talker"]
        assert after["echo"][2] == before["echo"][2] and not pid_alive(int(before["chatty"][2]))
        config.write_text(original + "\n[[processes]]\nid = 'x'\n")
        bad = cli("reload", cwd=tmp_path)
        assert bad.returncode == 2
        assert (
            bad.stderr.strip() == f"processman: {config}: processes[3]: needs `script` or `command`"
        )
        assert list(rows(cli("status", cwd=tmp_path).stdout)) == ["echo", "tree", "talker"]
