"""SPEC §8 with real processes and real probes: readiness, health, dependencies."""

from __future__ import annotations

import http.server
import shutil
import socket
import sys
import threading
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from processman import ProcessManager, Status
from processman.adapters.probes import NetworkProber
from processman.domain.model import Condition, Probe, ProbeKind, RestartPolicy
from tests.conftest import pid_alive
from tests.integration.helpers import config, script, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code = {"/ok": 200, "/bad": 503, "/moved": 301}.get(self.path, 404)
        self.send_response(code)
        if code == 301:
            self.send_header("Location", "/bad")  # not followed: a 3xx passes
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_network_probes_answer_what_happened(http_server: str) -> None:
    prober = NetworkProber()
    listening = socket.create_server(("127.0.0.1", 0))
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    closed = free_port()
    try:
        tcp = lambda address: Probe(kind=ProbeKind.TCP, target=address)  # noqa: E731
        http = lambda url, timeout=1.0: Probe(kind=ProbeKind.HTTP, target=url, timeout=timeout)  # noqa: E731
        assert await prober.check(tcp(f"127.0.0.1:{listening.getsockname()[1]}")) is None
        assert await prober.check(tcp(f"127.0.0.1:{closed}")) == "connection refused"
        assert await prober.check(http(http_server + "/ok")) is None
        assert await prober.check(http(http_server + "/moved")) is None
        assert await prober.check(http(http_server + "/bad")) == f"GET {http_server}/bad: 503"
        assert await prober.check(http(f"http://127.0.0.1:{closed}/")) == "connection refused"
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        assert await prober.check(http(silent_url, timeout=0.2)) == "timed out after 0.2s"
    finally:
        await prober.aclose()
        listening.close()
        silent.close()


async def test_a_dependent_starts_as_soon_as_its_dependency_is_ready(tmp_path: Path) -> None:
    port = free_port()
    db = script(
        "db",
        "listen_later.py",
        str(port),
        "0.3",
        ready=Probe(kind=ProbeKind.TCP, target=f"127.0.0.1:{port}", period=0.2),
    )
    app = script("app", "echo.py", depends_on={"db": Condition.READY})
    async with ProcessManager(config(db, app)) as m:
        assert m.status("app").status is Status.WAITING
        assert m.status("app").last_error.startswith("waiting for db (")
        async with m.events() as events:
            ready_at = started_at = None
            with anyio.fail_after(10):
                async for event in events:
                    status = event.status
                    if status is None:
                        continue
                    if status.id == "db" and status.ready and ready_at is None:
                        ready_at = anyio.current_time()
                    if status.id == "app" and status.status == "starting":
                        started_at = anyio.current_time()  # the start; the spawn follows
                        break
        assert ready_at is not None and started_at is not None
        # the ready event itself starts it (a few ms; benchmarks/chain.py measures it), not
        # a poll: bounded loosely here, so that a loaded CI machine does not fail it
        assert started_at - ready_at < 0.25
        await wait_until(lambda: m.status("app").status == "running")
        assert m.status("app").last_error == ""


async def test_an_exec_probe_runs_in_the_process_cwd_and_env(tmp_path: Path) -> None:
    marker = tmp_path / "up"
    check = "import os, sys; sys.exit(0 if os.path.exists(os.environ['MARKER']) else 1)"
    spec = script(
        "worker",
        "echo.py",
        env={"MARKER": str(marker)},
        ready=Probe(kind=ProbeKind.EXEC, command=(sys.executable, "-c", check), period=0.1),
    )
    async with ProcessManager(config(spec)) as m:
        await anyio.sleep(0.3)
        assert m.status("worker").status == "running" and not m.status("worker").ready
        marker.write_text("")
        await wait_until(lambda: m.status("worker").ready, 5)


async def test_an_exec_probe_that_hangs_is_killed_at_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "probe.pid"
    hang = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    spec = script(
        "worker",
        "echo.py",
        ready_timeout=0.6,
        ready=Probe(kind=ProbeKind.EXEC, command=(sys.executable, "-c", hang), timeout=0.3),
    )
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: m.status("worker").status is Status.BACKOFF, 10)
        assert m.status("worker").last_error == "not ready after 0.6s: timed out after 0.3s"
        await m.stop("worker")
    # the test's own leak check proves the probe's tree is gone


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # timing of real processes
async def test_a_process_never_ready_is_stopped_and_backs_off() -> None:
    port = free_port()  # nobody listens
    spec = script(
        "db",
        "echo.py",
        ready_timeout=0.5,
        backoff=0.2,
        ready=Probe(kind=ProbeKind.TCP, target=f"127.0.0.1:{port}"),
    )
    async with ProcessManager(config(spec)) as m:
        first = m.status("db").pid
        await wait_until(lambda: m.status("db").restart_count >= 1, 10)
        assert m.status("db").pid != first
        await wait_until(lambda: m.status("db").status is Status.BACKOFF, 10)
        assert m.status("db").last_error == "not ready after 0.5s: connection refused"


async def test_a_hung_server_is_restarted_by_its_health_check(tmp_path: Path) -> None:
    port = free_port()
    hang = tmp_path / "hang"
    spec = script(
        "web",
        "listen_later.py",
        str(port),
        "0",
        str(hang),
        backoff=0.1,
        ready=Probe(kind=ProbeKind.TCP, target=f"127.0.0.1:{port}"),
        health=Probe(kind=ProbeKind.TCP, target=f"127.0.0.1:{port}", period=0.2, failures=2),
    )
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: m.status("web").ready, 10)
        hung = m.status("web").pid
        hang.write_text("")  # it stops listening, and stays alive
        await wait_until(lambda: m.status("web").pid not in (hung, None), 10)
        hang.unlink()
        status = m.status("web")
        assert status.restart_count == 1
        assert status.last_error == "health check failed 2 times: connection refused"


# --- sd_notify ----------------------------------------------------------------------

NOTIFY = Probe(kind=ProbeKind.NOTIFY)


@pytest.mark.parametrize("sender", ["itself", "its child"])
async def test_notify_ready_from_the_instance_tree(sender: str) -> None:
    args = ("0.2", "accepting connections") if sender == "itself" else ("--child", "0.2", "up")
    spec = script("db", "notify_ready.py", *args, ready=NOTIFY, ready_timeout=10.0)
    async with ProcessManager(config(spec)) as m:
        assert not m.status("db").ready
        await wait_until(lambda: m.status("db").ready, 10)
        expected = "accepting connections" if sender == "itself" else "up"
        await wait_until(lambda: m.status("db").notify_status == expected, 5)
    # the socket stays open until every process is gone: STOPPING=1 reaches it (redis
    # said "sd_notify: -2" when it was closed first)
    assert any(e.line == "STOPPING=1 sent" for e in m.logs("db")), [e.line for e in m.logs("db")]


async def test_notify_from_a_daemon_that_left_the_group(tmp_path: Path) -> None:
    # a program that double-forks (pg_ctl, redis --daemonize) says READY=1 from a process
    # that is no descendant any more by parent links: its cgroup says it is the instance's
    daemon = tmp_path / "daemon.pid"
    spec = script(
        "db",
        "notify_ready.py",
        f"--daemon={daemon}",
        "0.1",
        "daemonised",
        ready=NOTIFY,
        ready_timeout=10.0,
    )
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: m.status("db").ready, 10)
        assert m.status("db").notify_status == "daemonised"
        pid = int(daemon.read_text())
        assert pid_alive(pid)
    assert not pid_alive(pid)  # and it went with the tree


async def test_notify_from_outside_the_tree_or_too_big_is_ignored() -> None:
    spec = script("db", "notify_ready.py", "--big", "0.1", "late", ready=NOTIFY, ready_timeout=10.0)
    async with ProcessManager(config(spec)) as m:
        path = m._notifier.path  # type: ignore[union-attr]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as outsider:
            outsider.sendto(b"READY=1\nSTATUS=from a stranger", path)  # this test is no instance
        # the over-long READY=1 is sent 1 s before the real one
        await wait_until(lambda: any(e.line == "sent the long one" for e in m.logs("db")))
        await anyio.sleep(0.1)  # it was read, and ignored
        assert not m.status("db").ready and m.status("db").notify_status == ""
        await wait_until(lambda: m.status("db").ready, 10)
        assert m.status("db").notify_status == "late"


@pytest.mark.skipif(
    shutil.which("systemd-notify") is None, reason="systemd-notify is not installed"
)
async def test_systemd_notify_ready_and_its_barrier() -> None:
    # systemd-notify sends READY=1, then BARRIER=1 with a pipe, and waits until that is
    # closed (the answer), so it is still alive, and in the tree, when the datagram is read
    shell = 'sleep 0.2; systemd-notify --ready --status="serving on 6379"; echo notified; sleep 60'
    spec = script("redis", "echo.py", ready=NOTIFY, ready_timeout=10.0)
    spec = msgspec.structs.replace(
        spec, script=None, interpreter=None, args=(), command=("sh", "-c", shell)
    )
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: m.status("redis").ready, 10)
        assert m.status("redis").notify_status == "serving on 6379"
        # the barrier was answered: systemd-notify went on before its own 5 s were up
        await wait_until(lambda: any(e.line == "notified" for e in m.logs("redis")), 4)


async def test_a_notify_process_that_never_says_ready_times_out() -> None:
    spec = script("db", "echo.py", ready=NOTIFY, ready_timeout=0.3, backoff=5.0)
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: m.status("db").status is Status.BACKOFF, 10)
        assert (
            m.status("db").last_error
            == "not ready after 0.3s: no READY=1 received over NOTIFY_SOCKET"
        )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # timing of real processes
async def test_a_watchdog_that_is_fed_keeps_the_instance_and_a_missed_one_restarts_it() -> None:
    # 6 pings every 0.15 s (half the interval) keep it for ~0.9 s; then one interval of
    # 0.3 s without WATCHDOG=1 is a failed health check (failures = 1), restarted by policy
    watchdog = Probe(kind=ProbeKind.WATCHDOG, period=0.3, failures=1)
    spec = script("db", "watchdog.py", "6", ready=NOTIFY, health=watchdog, backoff=0.1)
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: m.status("db").ready, 10)
        first = m.status("db").pid
        await anyio.sleep(0.6)  # fed: still the same instance
        assert m.status("db").pid == first and m.status("db").restart_count == 0
        await wait_until(lambda: m.status("db").restart_count == 1, 10)
        assert m.status("db").last_error == "health check failed 1 time: no WATCHDOG=1 within 0.3s"
    lines = [e.line for e in m.logs("db")]
    assert f"watchdog pid={first} usec=300000" in lines, lines  # WATCHDOG_PID was its own
    assert not pid_alive(first)


async def test_watchdog_trigger_fails_the_health_check_at_once() -> None:
    watchdog = Probe(kind=ProbeKind.WATCHDOG, period=30.0, failures=1)
    spec = script("db", "watchdog.py", "0", "trigger", health=watchdog, backoff=5.0)
    async with ProcessManager(config(spec)) as m:
        await wait_until(lambda: m.status("db").status is Status.BACKOFF, 10)
        assert m.status("db").last_error == "health check failed 1 time: WATCHDOG=trigger received"


# --- dependencies, with real processes -----------------------------------------------


def stamped(process_id: str, tmp_path: Path, *extra: str, **values: object):  # type: ignore[no-untyped-def]
    return script(
        process_id, "stop_stamp.py", str(tmp_path / f"{process_id}.stop"), *extra, **values
    )


def stop_times(tmp_path: Path, process_id: str) -> list[float]:
    path = tmp_path / f"{process_id}.stop"
    return [float(line) for line in path.read_text().split()] if path.exists() else []


async def test_a_failed_migration_holds_the_app_back_until_it_succeeds(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    specs = (
        stamped("db", tmp_path),
        stamped(
            "migrate",
            tmp_path,
            "0",
            str(fixed),
            restart=RestartPolicy.NEVER,
            depends_on={"db": Condition.STARTED},
        ),
        stamped("app", tmp_path, depends_on={"migrate": Condition.SUCCEEDED}),
    )
    async with ProcessManager(config(*specs)) as m:
        await wait_until(lambda: m.status("migrate").status is Status.EXITED, 10)
        await anyio.sleep(0.2)
        app = m.status("app")
        assert app.status is Status.WAITING
        assert (
            app.last_error
            == "waiting for migrate to be succeeded (exited with code 1: exited with code 1)"
        )
        fixed.write_text("")
        await m.start("migrate")  # the fix: it runs again, succeeds, and the app goes on
        await wait_until(lambda: m.status("app").status == "running", 10)
        runs = sum(e.line == "migrating" for e in m.logs("migrate"))
        assert runs == 2
        await m.stop("app")
        await m.start("app")  # a succeeded migration is not run again
        await wait_until(lambda: m.status("app").status == "running", 10)
        assert sum(e.line == "migrating" for e in m.logs("migrate")) == runs


async def test_start_pulls_in_stopped_dependencies(tmp_path: Path) -> None:
    specs = (
        stamped("db", tmp_path, autostart=False),
        stamped("app", tmp_path, autostart=False, depends_on={"db": Condition.READY}),
    )
    async with ProcessManager(config(*specs)) as m:
        assert [s.status for s in m.list()] == ["stopped", "stopped"]
        await m.start("app")
        await wait_until(lambda: m.status("app").status == "running", 10)
        assert m.status("db").status == "running"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # both loops: test_dependencies_fake
async def test_stop_restart_and_shutdown_go_dependents_first(tmp_path: Path) -> None:
    specs = (
        stamped("db", tmp_path, "0.3"),
        stamped("app", tmp_path, "0.3", depends_on={"db": Condition.STARTED}),
        stamped("lone", tmp_path, "0.3"),
    )
    async with ProcessManager(config(*specs)) as m:

        def up(process_id: str, instances: int = 1) -> bool:  # its SIGTERM handler is set
            said = sum(e.line == "up" for e in m.logs(process_id))
            return m.status(process_id).status == "running" and said == instances

        await wait_until(lambda: all(up(i) for i in ("db", "app", "lone")), 10)
        await m.stop("db")
        assert m.status("app").status == "stopped" and m.status("lone").status == "running"
        (app_stop,), (db_stop,) = stop_times(tmp_path, "app"), stop_times(tmp_path, "db")
        assert db_stop - app_stop >= 0.25  # db got its signal once app had gone
        await m.start("app")
        await wait_until(lambda: up("app", 2) and up("db", 2), 10)
        old_app = m.status("app").pid
        restarted = await m.restart("db")
        assert restarted.status == "running"
        await wait_until(lambda: m.status("app").pid not in (old_app, None) and up("app", 3), 10)
        assert m.status("app").start_time > restarted.start_time  # type: ignore[operator]
        await wait_until(lambda: up("db", 3), 10)
        (_, app_stop), (_, db_stop) = stop_times(tmp_path, "app"), stop_times(tmp_path, "db")
        assert db_stop - app_stop >= 0.25  # the restart too stopped the app first
    app, db, lone = (stop_times(tmp_path, i)[-1] for i in ("app", "db", "lone"))
    assert abs(lone - app) < 0.2  # unrelated: in parallel with the first layer
    assert db - app >= 0.25  # db after its dependent was gone


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_redis_supervised_by_systemd_protocol_is_ready_by_notify(tmp_path: Path) -> None:
    port = free_port()
    redis = msgspec.structs.replace(
        script("redis", "echo.py", ready=NOTIFY, ready_timeout=20.0, cwd=str(tmp_path)),
        script=None,
        interpreter=None,
        args=(),
        command=(
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--supervised",
            "systemd",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ),
    )
    ping = f"import socket; s = socket.create_connection(('127.0.0.1', {port})); s.sendall(b'PING\\r\\n'); print(s.recv(64).decode().strip())"
    client = script("client", "echo.py", depends_on={"redis": Condition.READY})
    client = msgspec.structs.replace(
        client, script=None, interpreter=None, args=(), command=(sys.executable, "-c", ping)
    )
    async with ProcessManager(config(redis, client)) as m:
        await m.wait_ready("redis", timeout=20)
        assert m.status("redis").notify_status == "Ready to accept connections"
        await wait_until(lambda: any(e.line == "+PONG" for e in m.logs("client")), 10)
    lines = [e.line for e in m.logs("redis")]
    assert not any("sd_notify: -" in line for line in lines), lines  # STOPPING=1 got through
