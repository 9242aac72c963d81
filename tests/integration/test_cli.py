"""The ``processman`` command, run as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import psutil
import pytest

from processman import __version__
from tests.conftest import TESTDATA, pid_alive

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def processman(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processman", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
    )


@contextlib.contextmanager
def running(
    config: Path, *options: str, preexec_fn: Callable[[], object] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``processman run`` as a real subprocess, its output captured; the test stops it,
    and it is killed on the way out if the test did not get that far."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "processman", "run", str(config), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # and its pipes closed: no ResourceWarning in a later test


def write_config(tmp_path: Path, pid_file: Path) -> Path:
    path = tmp_path / "processman.toml"
    path.write_text(
        f"""
[[processes]]
id = "tree"
script = "{TESTDATA / "grandchild.py"}"
interpreter = "{sys.executable}"
args = ["{pid_file}"]

[[processes]]
id = "echo"
command = ["{sys.executable}", "{TESTDATA / "echo.py"}"]
"""
    )
    return path


def _read_until(proc: subprocess.Popen[str], *needles: str) -> str:
    """Read the child's stderr until every needle has appeared (the test timeout bounds it)."""
    assert proc.stderr is not None
    seen = ""
    while not all(n in seen for n in needles):
        line = proc.stderr.readline()
        assert line, f"processman ended early: {seen}"
        seen += line
    return seen


def test_version_and_help() -> None:
    assert processman("--version").stdout.strip() == f"processman {__version__}"
    for command in ([], ["run"], ["check"]):
        result = processman(*command, "--help")
        assert result.returncode == 0 and "usage: processman" in result.stdout


def test_check_prints_each_process(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "pid")
    result = processman("check", cwd=tmp_path)  # discovered in the current directory
    assert result.returncode == 0, result.stderr
    assert "tree\n  argv:        " + sys.executable in result.stdout
    assert f"  cwd:         {tmp_path}" in result.stdout
    assert f"  interpreter: {sys.executable} ({sys.executable})" in result.stdout
    assert "echo\n" in result.stdout
    explicit = processman("check", str(config)).stdout
    assert explicit.splitlines()[1:] == result.stdout.splitlines()[1:]


def test_check_names_a_broken_venv_link(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to("/nonexistent/python3.9")
    (tmp_path / "w.py").write_text("print('ran')\n")
    (tmp_path / "processman.toml").write_text('[[processes]]\nid = "w"\nscript = "w.py"\n')
    result = processman("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # the config is valid; the machine is not
    broken = (
        f"{tmp_path}/.venv/bin/python (a broken link to /nonexistent/python3.9: its target is gone)"
    )
    assert f"  warning:     no interpreter found; tried {broken}\n" in result.stdout
    assert "  interpreter: none found (see the warning above) (auto)\n" in result.stdout


def test_the_command_imports_dependency_injector_without_its_integrations(
    tmp_path: Path,
) -> None:
    # pydantic and starlette are installed here (schemathesis, the HTTP API), yaml too
    code = (
        "import sys; from processman.__main__ import import_dependency_injector as imp;"
        "imp(); import dependency_injector.wiring as w, dependency_injector.providers;"
        "print(sorted(n for n in ('starlette', 'yaml', 'pydantic') if n in sys.modules),"
        " hasattr(w, 'StarletteRequest'), [type(f).__name__ for f in sys.meta_path].count('_Hidden'));"
        "import yaml, starlette.requests; print('importable after')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.splitlines() == ["[] False 0", "importable after"], result.stderr
    (tmp_path / "processman.yaml").write_text(
        f"processes:\n  - id: echo\n    command: [{sys.executable}, {TESTDATA / 'echo.py'}]\n"
    )
    result = processman("check", str(tmp_path / "processman.yaml"))
    assert result.returncode == 0 and "echo\n  argv:" in result.stdout, result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[[processes]]\nid = "a"\ncommand = "x"\nbackof = "1s"\n',
            "processman.toml: processes[0].backof: unknown key 'backof' (did you mean 'backoff'?)",
        ),
        ("[[processes]\n", "processman.toml: invalid TOML"),
        ("", "processman.toml: the file is empty"),
    ],
)
def test_bad_config_exits_2_without_traceback(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "processman.toml").write_text(content)
    for command in ("check", "run"):
        result = processman(command, cwd=tmp_path)
        assert result.returncode == 2
        assert message in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_config_and_unknown_only(tmp_path: Path) -> None:
    result = processman("check", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "nope.toml: file not found" in result.stderr
    result = processman("run", cwd=tmp_path)
    assert result.returncode == 2 and "no config file found" in result.stderr
    config = write_config(tmp_path, tmp_path / "pid")
    result = processman("run", str(config), "--only", "echo,ghost")
    assert (
        result.returncode == 2 and "--only: unknown id 'ghost' (known: echo, tree)" in result.stderr
    )
    result = processman("run", str(config), "--only", " , ")
    assert result.returncode == 2 and "--only: no id given (known: echo, tree)" in result.stderr


def test_run_refuses_a_logs_dir_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    config = write_config(tmp_path, tmp_path / "pid")
    config.write_text('[logs]\ndir = "taken"\n' + config.read_text())
    result = processman("run", str(config))
    assert result.returncode == 2 and not (tmp_path / "pid").exists()  # nothing started
    assert result.stderr == (
        f"processman: {config}: logs.dir: cannot write logs to {tmp_path / 'taken'}: "
        "it is not a directory\n"
    )


def test_check_warns_of_a_logs_dir_that_cannot_be_written(tmp_path: Path) -> None:
    # check passed, and run then exited 2
    (tmp_path / "taken").write_text("")
    config = tmp_path / "processman.toml"
    for logs_dir, reason in (
        ("taken", "it is not a directory"),
        ("taken/sub", f"{tmp_path / 'taken'} is not a directory"),
    ):
        config.write_text(
            f'[logs]\ndir = "{logs_dir}"\n[[processes]]\nid = "a"\ncommand = "true"\n'
        )
        result = processman("check", str(config))
        assert result.returncode == 0, result.stderr
        assert (
            f"warning: cannot write logs to {tmp_path / logs_dir}: {reason} (run would refuse to start)"
            in result.stdout.splitlines()
        )
    config.write_text('[logs]\ndir = "new/logs"\n[[processes]]\nid = "a"\ncommand = "true"\n')
    result = processman("check", str(config))
    assert "warning" not in result.stdout and not (tmp_path / "new").exists()  # made by run only


def test_an_empty_process_list_is_said(tmp_path: Path) -> None:
    config = tmp_path / "processman.toml"
    config.write_text("processes = []\n")
    result = processman("check", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "warning: no processes to supervise"
    with running(config) as proc:
        seen = _read_until(proc, "no processes to supervise")  # it sat silent
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
    assert proc.returncode == 0, seen + rest
    assert f"no processes to supervise: {config} lists none" in seen


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_until_signal_then_clean_exit(tmp_path: Path, sig: signal.Signals) -> None:
    pid_file = tmp_path / "pid"
    config = write_config(tmp_path, pid_file)
    with running(config) as proc:
        seen = _read_until(proc, "Hello from Python", "tree | grandchild ")
        grandchild = int(pid_file.read_text())
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=15)
        err = seen + rest
    assert proc.returncode == 0, err
    assert not pid_alive(grandchild)
    assert "echo | Hello from Python" in err
    assert f"{sig.name} received: stopping every process" in err
    # the last lines are written before run leaves (it exits without interpreter teardown)
    assert "echo | stopped" in err and "tree | stopped" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGQUIT])
def test_a_quit_stops_every_process_as_sigterm_does(tmp_path: Path, sig: signal.Signals) -> None:
    # without a handler run died at once, and its guardian SIGKILLed the children
    config = tmp_path / "processman.toml"
    config.write_text(
        f"[[processes]]\nid = 'slow'\ncommand = [{sys.executable!r}, "
        f"{str(TESTDATA / 'slow_exit.py')!r}]\n"
    )
    # (as from a terminal: pytest itself may run where the shell ignores SIGQUIT)
    with running(config, preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL)) as proc:
        seen = _read_until(proc, "slow | ready")
        child = int(seen.split("slow | running (pid ")[1].split(")")[0])
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=15)
    assert proc.returncode == 0, seen + rest
    assert f"{sig.name} received: stopping every process" in rest
    assert "slow | cleaning up" in rest  # its stopSignal reached it
    assert "slow | stopped" in rest and not pid_alive(child)


def test_a_hangup_reloads_the_config_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    # SPEC §10: SIGHUP reloads (supervisord, nginx); a closed terminal no longer stops run
    config = tmp_path / "processman.toml"
    slow = f"[[processes]]\nid = 'slow'\ncommand = [{sys.executable!r}, {str(TESTDATA / 'slow_exit.py')!r}]\n"
    echo = f"[[processes]]\nid = 'echo'\ncommand = [{sys.executable!r}, {str(TESTDATA / 'echo.py')!r}]\n"
    config.write_text(slow)
    with running(config, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL)) as proc:
        seen = _read_until(proc, "slow | ready")
        child = int(seen.split("slow | running (pid ")[1].split(")")[0])
        config.write_text(slow + "colour = 1\n")
        proc.send_signal(signal.SIGHUP)
        bad = _read_until(proc, "SIGHUP: the config was not reloaded")
        assert "processes[0].colour: unknown key" in bad
        config.write_text(slow + echo)
        proc.send_signal(signal.SIGHUP)
        _read_until(proc, "SIGHUP: config reloaded: added echo", "echo | running")
        assert pid_alive(child)  # unchanged: never touched
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
    assert proc.returncode == 0, rest
    assert "slow | stopped" in rest and not pid_alive(child)


def test_a_reload_turns_the_console_of_the_children_on(tmp_path: Path) -> None:
    config = tmp_path / "processman.toml"
    ticker = (
        "[[processes]]\nid = 'ticker'\n"
        "command = ['sh', '-c', 'while true; do echo tick; sleep 0.05; done']\n"
    )
    config.write_text(ticker + "[logs]\nconsole = false\n")
    with running(config, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL)) as proc:
        # its handlers are set before the first spawn: a SIGHUP before would kill it
        deadline = time.monotonic() + 20
        while not psutil.Process(proc.pid).children():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.5)  # ten ticks, none shown
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)
        before = os.read(proc.stderr.fileno(), 1 << 16) if _readable(proc) else b""
        os.set_blocking(proc.stderr.fileno(), True)
        assert b"tick" not in before, before
        config.write_text(ticker + "[logs]\nconsole = true\n")
        proc.send_signal(signal.SIGHUP)
        # shown from the reload on; bounded here, so that a failure still stops run
        seen, deadline = b"", time.monotonic() + 10
        while b"ticker | tick" not in seen:
            assert time.monotonic() < deadline, f"no child line after the reload: {seen!r}"
            if _readable(proc, 0.1):
                chunk = os.read(proc.stderr.fileno(), 1 << 16)
                assert chunk, f"processman ended early: {seen!r}"
                seen += chunk
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def _readable(proc: subprocess.Popen[str], wait: float = 0.0) -> bool:
    import select

    assert proc.stderr is not None
    return bool(select.select([proc.stderr.fileno()], [], [], wait)[0])


def test_a_second_signal_kills_what_waits_out_its_stop_timeout(tmp_path: Path) -> None:
    config = tmp_path / "processman.toml"
    config.write_text(
        f"[[processes]]\nid = 'stubborn'\nstopTimeout = '60s'\n"
        f"command = [{sys.executable!r}, {str(TESTDATA / 'ignore_sigterm.py')!r}]\n"
    )
    with running(config) as proc:
        seen = _read_until(proc, "stubborn | ignoring SIGTERM")
        child = int(seen.split("stubborn | running (pid ")[1].split(")")[0])
        proc.send_signal(signal.SIGINT)
        _read_until(proc, "SIGINT received: stopping every process (again to kill them)")
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=15)  # not the 60 s of its stopTimeout
    assert proc.returncode == 0, rest
    assert "SIGINT received again: killing every process now" in rest
    assert "stubborn | stopped" in rest and not pid_alive(child)


SHOW_SIGNALS = (
    "import signal, time\n"
    "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):\n"
    "    handler = signal.getsignal(s)\n"
    "    print(s.name, 'ignored' if handler is signal.SIG_IGN else 'default', flush=True)\n"
    "time.sleep(60)\n"
)
IGNORED_BY_NOHUP_AND = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _ignore_as_nohup_in_the_background() -> None:
    for sig in IGNORED_BY_NOHUP_AND:
        signal.signal(sig, signal.SIG_IGN)


def test_children_get_default_signals_however_run_was_started(tmp_path: Path) -> None:
    # started as by `nohup ... &` from a shell without job control: SIGHUP (nohup), SIGINT
    # and SIGQUIT (the background job) ignored on entry, and SIGTERM too for good measure
    config = tmp_path / "processman.toml"
    config.write_text(
        f"[[processes]]\nid = 'sig'\ncommand = [{sys.executable!r}, '-c', {SHOW_SIGNALS!r}]\n"
    )
    with running(config, preexec_fn=_ignore_as_nohup_in_the_background) as proc:
        seen = _read_until(proc, *(f"sig | {s.name} " for s in IGNORED_BY_NOHUP_AND))
        child = int(seen.split("sig | running (pid ")[1].split(")")[0])
        # every signal run catches reaches its children as a default
        for sig in IGNORED_BY_NOHUP_AND:
            assert f"sig | {sig.name} default" in seen, seen
        # run goes on ignoring the hangup and the quit it was started ignoring ...
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGQUIT)
        seen += _read_until(
            proc,
            "SIGHUP received: ignored, as when processman started",
            "SIGQUIT received: ignored, as when processman started",
        )
        assert proc.poll() is None and pid_alive(child)
        # ... but stops on SIGTERM, though it was started ignoring that too (SPEC §6)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
    assert proc.returncode == 0, seen + rest
    assert "SIGTERM received: stopping every process" in rest and not pid_alive(child)


def test_run_only_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "pid")
    with running(config, "--only", "echo") as proc:
        _read_until(proc, "Hello from Python")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert not (tmp_path / "pid").exists()  # "tree" never started


def test_run_without_console_writes_only_the_files(tmp_path: Path) -> None:
    # console = false: no child line on stderr (and no loguru record for it), every
    # line in logs.dir, written before run leaves
    config = write_config(tmp_path, tmp_path / "pid")
    missing = '[[processes]]\nid = "missing"\ncommand = "no-such-program-xyz"\nmaxRetries = 0\n'
    config.write_text(
        config.read_text() + missing + f'\n[logs]\nconsole = false\ndir = "{tmp_path / "logs"}"\n'
    )
    log = tmp_path / "logs" / "echo.log"
    with running(config, "--only", "echo,missing") as proc:
        deadline = time.monotonic() + 15
        while not (log.exists() and "Hello from Python" in log.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, "no line in the file"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Hello from Python" not in out + err
    assert " stdout | Hello from Python" in log.read_text()
    # processman's warnings and errors still are on stderr (a crash must not go unsaid),
    # not a line per start and stop
    assert "missing | crashed: gave up after 0 restarts: cannot start no-such-program-xyz" in err
    assert "running (pid" not in err and "SIGTERM received" not in err, err


def test_ctrl_c_in_a_client_command_ends_it_without_a_traceback() -> None:
    # A server that takes the connection and never answers: `status` waits in its read.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "processman", "status", "--api", f"http://127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as from a terminal: a background job (a CI runner's) may have SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
        )
        try:
            server.settimeout(20)
            connection, _ = server.accept()  # the client is past its imports, waiting
            with connection:
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()  # and its pipes closed
    assert proc.returncode == -signal.SIGINT  # as Python ends on Ctrl-C: a shell loop stops
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_a_console_nobody_reads_never_holds_up_the_children(tmp_path: Path) -> None:
    # `processman run | less`, paused, or Ctrl-S in a terminal: the console's write blocked
    # the event loop, so the chatty child blocked on its full pipe (8 s in the probe).
    done = tmp_path / "done"
    chatty = (
        "import sys, time\n"
        "for i in range(50_000): print(f'line {i} ' + 'x' * 50)\n"
        f"sys.stdout.flush(); open({str(done)!r}, 'w').close(); time.sleep(60)\n"
    )
    config = tmp_path / "processman.toml"
    config.write_text(
        f'[[processes]]\nid = "chatty"\ncommand = ["{sys.executable}", "-c", {json.dumps(chatty)}]\n'
    )
    with running(config) as proc:  # its stderr is a pipe this test does not read yet
        deadline = time.monotonic() + 20
        while not done.exists():
            assert time.monotonic() < deadline, "the child was held up by the console"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert re.search(r"\[processman: \d+ console lines dropped: the console was not read\]", err)
    assert "SIGTERM received" in err  # what came after the gap is shown


def test_check_warns_of_what_would_fail_to_start(tmp_path: Path) -> None:
    (tmp_path / "plain.sh").write_text("echo hi\n")  # no run bit, no #!
    (tmp_path / "processman.toml").write_text(
        '[[processes]]\nid = "a"\nscript = "nope.py"\n'
        '[[processes]]\nid = "b"\ncommand = "true"\ncwd = "no/such/dir"\n'
        '[[processes]]\nid = "c"\nscript = "plain.sh"\n'
        '[[processes]]\nid = "d"\ncommand = "./bin/missing"\n'
    )
    result = processman("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # valid: the machine is what is wrong
    warnings = [line.strip() for line in result.stdout.splitlines() if "warning:" in line]
    assert warnings == [
        f"warning:     script {tmp_path}/nope.py does not exist",
        f"warning:     cwd {tmp_path}/no/such/dir does not exist",
        f"warning:     {tmp_path}/plain.sh is not executable (chmod +x it, or set interpreter)",
        f"warning:     {tmp_path}/plain.sh has no #! line to say what runs it",
        f"warning:     program {tmp_path}/bin/missing does not exist",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE")
@pytest.mark.parametrize("hard", [None, 200])
def test_run_raises_the_open_files_limit_that_its_processes_need(
    tmp_path: Path, hard: int | None
) -> None:
    # A soft limit of 1,024 (common) let only ~300 processes start: 3 descriptors each.
    import resource

    import psutil

    count = 150  # 450 descriptors, against a soft limit of 128
    config = tmp_path / "processman.toml"
    config.write_text(
        "".join(f'[[processes]]\nid = "p{i}"\ncommand = ["sleep", "60"]\n' for i in range(count))
        + "[logs]\nconsole = false\n"
    )
    _, hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = (128, hard or hard_now)
    with running(
        config, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    ) as proc:
        manager = psutil.Process(proc.pid)
        deadline = time.monotonic() + 20
        while len([c for c in manager.children() if c.name() == "sleep"]) < (
            count if hard is None else 50
        ):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        started = len([c for c in manager.children() if c.name() == "sleep"])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    if hard is None:
        assert started == count, err
    else:  # the hard limit cannot be passed: said at once, and the rest fail clearly
        assert started < count
        assert (
            "only 200 open files are allowed (the hard limit): 150 processes need about 706" in err
        )
        assert "Too many open files" in err


def test_check_shows_dependencies_and_probes(tmp_path: Path) -> None:
    (tmp_path / "processman.toml").write_text(
        '[[processes]]\nid = "db"\ncommand = "true"\nready = { tcp = "127.0.0.1:5432", period = "2s" }\n'
        '[[processes]]\nid = "app"\ncommand = "true"\ndependsOn = { db = "ready" }\n'
        'readyTimeout = "5s"\nready = { logLine = "up on \\\\d+" }\n'
        'health = { http = "http://127.0.0.1:8000/h" }\n'
        '[[processes]]\nid = "redis"\ncommand = "true"\nready = { notify = true }\n'
        'health = { watchdog = "30s" }\n'
    )
    result = processman("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "ready:       tcp 127.0.0.1:5432 (every 2s, timeout 1s)" in lines
    assert "dependsOn:   db (ready)" in lines
    assert "ready:       logLine 'up on \\\\d+' (within 5s)" in lines
    assert "health:      http http://127.0.0.1:8000/h (every 10s, timeout 1s)" in lines
    assert "ready:       notify: READY=1 over NOTIFY_SOCKET (within 60s)" in lines
    assert "health:      watchdog: WATCHDOG=1 over NOTIFY_SOCKET at least every 30s" in lines
