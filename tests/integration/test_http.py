"""The HTTP API on a real uvicorn server on 127.0.0.1, with real children."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sys
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import httpx
import pytest
from loguru import logger
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import processman
from processman import ProcessManager
from processman.adapters.http import ApiServer, create_app
from processman.domain.model import ApiSettings, Config, LogSettings
from tests.conftest import TESTDATA, pid_alive
from tests.integration.helpers import script, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from starlette.requests import Request

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn runs on asyncio only (the app itself is anyio)


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def served(app: Any, *, lifespan: bool = False) -> AsyncIterator[str]:
    sock = bound_socket()
    server = ApiServer(app, lifespan=lifespan)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve, sock)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            server.stop()
    finally:
        sock.close()


def make_config(*specs: Any, token: str | None = None, buffer_lines: int = 1000) -> Config:
    return Config(
        processes=specs, api=ApiSettings(token=token), logs=LogSettings(buffer_lines=buffer_lines)
    )


@asynccontextmanager
async def api(
    config: Config, **app_options: Any
) -> AsyncIterator[tuple[ProcessManager, httpx.AsyncClient]]:
    async with ProcessManager(config) as manager, served(create_app(manager, **app_options)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield manager, client


STATUS_KEYS = {
    "id",
    "status",
    "pid",
    "startTime",
    "uptime",
    "restartCount",
    "exitCode",
    "lastError",
    "command",
    "devMode",
    "ready",
    "notifyStatus",
    "group",
    "replica",
    "cpuPercent",
    "memoryBytes",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_endpoints_and_shapes() -> None:
    config = make_config(script("echo", "echo.py"), script("idle", "echo.py", autostart=False))
    async with api(config) as (manager, client):
        assert (await client.get("/api/health")).json() == {"status": "ok", "processes": 2}
        listed = (await client.get("/api/processes")).json()
        assert [s["id"] for s in listed] == ["echo", "idle"]
        echo, idle = listed
        assert set(echo) == STATUS_KEYS
        assert echo["status"] == "running" and isinstance(echo["pid"], int)
        assert RFC3339_UTC.match(echo["startTime"]) and echo["exitCode"] is None
        assert (
            echo["command"][1:] == [script("echo", "echo.py").script] and echo["devMode"] is False
        )
        assert idle["pid"] is None and idle["startTime"] is None and idle["uptime"] == 0
        assert (await client.get("/api/processes/echo")).json()["id"] == "echo"

        started = (await client.post("/api/processes/idle/start")).json()
        assert started["status"] == "running" and started["pid"]
        stopped = (await client.post("/api/processes/idle/stop")).json()
        assert (
            stopped["status"] == "stopped" and stopped["pid"] is None and stopped["exitCode"] == -15
        )
        assert not pid_alive(started["pid"])  # the tree is gone when the answer arrives
        restarted = (await client.post("/api/processes/echo/restart")).json()
        assert restarted["status"] == "running" and restarted["pid"] != echo["pid"]
        assert restarted["restartCount"] == 0  # an explicit restart is not counted

        await wait_until(lambda: bool(manager.logs("echo")))
        lines = (await client.get("/api/processes/echo/logs", params={"tail": 1})).json()
        assert lines[0]["line"] == "Hello from Python" and lines[0]["stream"] == "stdout"
        assert RFC3339_UTC.match(lines[0]["time"])
        assert datetime.fromisoformat(lines[0]["time"]).tzinfo is not None


async def test_tail_defaults_to_100_and_is_capped_at_buffer_lines() -> None:
    config = make_config(script("chatty", "chatty.py", "300"), buffer_lines=250)
    async with api(config) as (manager, client):
        await wait_until(lambda: any(e.line == "chatty: done" for e in manager.logs("chatty", 250)))
        await wait_until(lambda: any("0000299" in e.line for e in manager.logs("chatty", 250)))
        assert len((await client.get("/api/processes/chatty/logs")).json()) == 100
        assert len((await client.get("/api/processes/chatty/logs?tail=100000")).json()) == 250
        assert (await client.get("/api/processes/chatty/logs?tail=0")).json() == []


async def test_bearer_token() -> None:
    async with api(make_config(script("echo", "echo.py"), token="s3cret")) as (_, client):
        assert (await client.get("/api/health")).status_code == 200
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic s3cret"},
            {"Authorization": "s3cret"},
        ):
            answer = await client.get("/api/processes", headers=headers)
            assert answer.status_code == 401 and "error" in answer.json()
            answer = await client.post("/api/processes/echo/stop", headers=headers)
            assert answer.status_code == 401
        ok = await client.get("/api/processes", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    # an explicit token wins over the config's
    async with api(make_config(script("echo", "echo.py"), token="s3cret"), token="other") as (
        _,
        client,
    ):
        assert (
            await client.get("/api/processes", headers={"Authorization": "Bearer other"})
        ).status_code == 200


BAD_REQUESTS = [
    ("GET", "/api/processes/nope", {404}),
    ("POST", "/api/processes/nope/start", {404}),
    ("POST", "/api/processes/nope/stop", {404}),
    ("POST", "/api/processes/nope/restart", {404}),
    ("GET", "/api/processes/nope/logs", {404}),
    ("GET", "/api/processes/nope/logs/stream", {404}),
    ("GET", "/api/processes/echo/logs?tail=-1", {400}),
    ("GET", "/api/processes/echo/logs?tail=x", {400}),
    ("GET", "/api/processes/echo/logs?tail=1.5", {400}),
    ("GET", "/api/processes/echo/logs?tail=", {400}),
    ("GET", "/api/processes/echo/logs?tail=%00", {400}),
    ("GET", "/api/processes/echo/logs?tail=%D9%A3", {400}),  # an Arabic-Indic digit three
    ("GET", "/api/processes/..%2F", {400, 404}),
    ("GET", "/api/processes/..%2F..%2Fetc%2Fpasswd", {400, 404}),
    ("GET", "/api/processes/%00", {400, 404}),
    ("GET", "/api/processes/a%20b", {400, 404}),
    ("GET", "/api/processes/" + "x" * 500, {400, 404}),
    ("GET", "/api/processes/%FF%FE", {400, 404}),
    ("GET", "/api/processes/echo/", {404}),
    ("GET", "/api/nothing", {404}),
    ("POST", "/api/processes", {405}),
    ("DELETE", "/api/processes/echo", {405}),
    ("GET", "/api/processes/echo/start", {405}),
    ("PUT", "/api/processes/echo/stop", {405}),
    ("POST", "/api/health", {405}),
    ("POST", "/api/processes/echo/logs", {405}),
]


async def test_bad_requests_never_500() -> None:
    async with api(make_config(script("echo", "echo.py"))) as (_, client):
        for method, path, expected in BAD_REQUESTS:
            answer = await client.request(method, path)
            assert answer.status_code in expected, (method, path, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "application/json"
            assert isinstance(answer.json()["error"], str)


async def test_a_manager_that_is_not_running_is_503_not_500() -> None:
    manager = ProcessManager(make_config(script("echo", "echo.py")))
    app = create_app(manager)  # mounted, say, without the manager in the app's lifespan
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        assert (await client.get("/api/health")).status_code == 200
        for method, path in [
            ("GET", "/api/processes"),
            ("GET", "/api/processes/echo"),
            ("POST", "/api/processes/echo/start"),
            ("GET", "/api/processes/echo/logs"),
            ("GET", "/api/processes/echo/logs/stream"),
        ]:
            answer = await client.request(method, path)
            assert answer.status_code == 503, (method, path, answer.text)
            assert "use it inside `async with`" in answer.json()["error"]
        async with manager:
            pid = manager.status("echo").pid
        # once shut down: the last statuses are there, and nothing starts again
        assert (await client.get("/api/processes/echo")).json()["status"] == "stopped"
        answer = await client.post("/api/processes/echo/start")
        assert answer.status_code == 503 and "has shut down" in answer.json()["error"]
    assert pid is not None and not pid_alive(pid)
    assert manager.status("echo").pid is None


async def test_a_log_stream_gets_the_last_lines_then_ends_when_the_manager_shuts_down() -> None:
    manager = ProcessManager(make_config(script("slow", "slow_exit.py")))
    body = ""
    async with served(create_app(manager)) as url, httpx.AsyncClient(base_url=url) as client:

        async def follow(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            nonlocal body
            path = "/api/processes/slow/logs/stream"
            async with client.stream("GET", path, timeout=30) as response:
                async for text in response.aiter_text():
                    if not body:
                        task_status.started()  # subscribed: ": connected" came
                    body += text

        async with anyio.create_task_group() as tg:
            async with manager:
                await wait_until(lambda: [e.line for e in manager.logs("slow")] == ["ready"])
                await tg.start(follow)
            # the block is left: the stream got what the child said while it stopped
        answer = await client.get("/api/processes/slow/logs/stream")
        assert answer.status_code == 503 and "has shut down" in answer.json()["error"]
    assert '"line":"cleaning up"' in body
    assert body.endswith('event: end\ndata: {"reason":"processman shut down"}\n\n'), body


class EventReader:
    """Reads SSE records (comments included) from one streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_text()
        self._buffer = ""

    async def next(self, count: int) -> list[str]:
        records: list[str] = []
        while len(records) < count:
            if "\n\n" in self._buffer:
                record, self._buffer = self._buffer.split("\n\n", 1)
                records.append(record)
            else:
                self._buffer += await self._chunks.__anext__()
        return records


async def test_live_stream_across_a_restart_with_keepalives() -> None:
    config = make_config(script("echo", "echo.py"))
    async with api(config, keepalive=0.2) as (manager, client):
        async with client.stream("GET", "/api/processes/echo/logs/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = EventReader(response)
            assert await events.next(1) == [": connected"]
            assert manager._hub.subscriber_count("echo") == 1
            await manager.restart("echo")  # no backlog: only lines after connecting come
            records = await events.next(3)
        data = [r for r in records if r.startswith("data: ")]
        assert data and '"line":"Hello from Python"' in data[0] and '"stream":"stdout"' in data[0]
        assert ": keep-alive" in records
        await wait_until(lambda: manager._hub.subscriber_count("echo") == 0)  # cleaned up


async def test_fifty_stream_clients_and_a_stalled_one_do_not_block_the_children() -> None:
    config = make_config(script("chatty", "chatty.py", "50000"), script("echo", "echo.py"))
    async with ProcessManager(config) as manager, served(create_app(manager)) as url:
        port = int(url.rsplit(":", 1)[1])
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /api/processes/chatty/logs/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        received = [0] * 50

        async def reader(i: int, client: httpx.AsyncClient) -> None:
            async with client.stream("GET", "/api/processes/chatty/logs/stream") as response:
                async for chunk in response.aiter_bytes():
                    received[i] += chunk.count(b"data: ")

        try:
            async with httpx.AsyncClient(
                base_url=url, timeout=60, limits=httpx.Limits(max_connections=60)
            ) as client:
                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(reader, i, client)
                    await wait_until(lambda: manager._hub.subscriber_count("chatty") == 51)
                    await manager.restart(
                        "chatty"
                    )  # now every client sees the burst from the start
                    # the child is never held back: it writes all 50,000 lines and says so
                    await wait_until(
                        lambda: any(e.line == "chatty: done" for e in manager.logs("chatty", 1000)),
                        60,
                    )
                    health = await client.get("/api/health")
                    assert health.status_code == 200
                    await wait_until(lambda: all(n > 0 for n in received), 30)
                    tg.cancel_scope.cancel()
            stalled.setblocking(False)
            seen = b""
            gap = b'event: gap\ndata: {"dropped":'  # read on until all of it has come
            with anyio.fail_after(30):
                while gap not in seen:
                    try:
                        seen += stalled.recv(1 << 20)
                    except BlockingIOError:
                        await anyio.sleep(0.01)
        finally:
            stalled.close()


async def test_mounted_under_a_prefix_in_a_host_app_with_lifespan() -> None:
    manager = ProcessManager(make_config(script("echo", "echo.py")))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager:
            yield

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host's own route")

    host = Starlette(
        routes=[Route("/", home), Mount("/processman", app=create_app(manager))], lifespan=lifespan
    )
    async with served(host, lifespan=True) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/")).text == "the host's own route"
        statuses = (await client.get("/processman/api/processes")).json()
        assert statuses[0]["status"] == "running"
        pid = statuses[0]["pid"]
        assert (await client.get("/processman/api/processes/nope")).status_code == 404
        assert (await client.get("/processman/openapi.json")).json()["openapi"].startswith("3.")
    assert not pid_alive(pid)  # the lifespan's end stopped the manager
    assert manager.status("echo").status == "stopped"


async def test_a_host_app_gets_the_children_lines_with_their_ids_in_one_call() -> None:
    # logger.enable("processman") alone printed the lines without the id (and only after
    # processman's import, which disables it)
    config = make_config(script("echo", "echo.py"), script("env", "print_env.py", "PROCESSMAN_ID"))
    manager = ProcessManager(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager:
            yield

    console = io.StringIO()
    handler = processman.log_to_console(config, stream=console, colorize=False)
    try:
        host = Starlette(routes=[Mount("/processman", app=create_app(manager))], lifespan=lifespan)
        async with served(host, lifespan=True) as url, httpx.AsyncClient(base_url=url) as client:
            await wait_until(lambda: "PROCESSMAN_ID=env" in console.getvalue())
            await wait_until(lambda: "Hello from Python" in console.getvalue())
            document = (await client.get("/processman/openapi.json")).json()
            assert document["servers"] == [{"url": "/processman"}]  # clients reach the mount
            listed = (await client.get(document["servers"][0]["url"] + "/api/processes")).json()
            assert [s["id"] for s in listed] == ["echo", "env"]
    finally:
        logger.remove(handler)
        logger.disable("processman")
    lines = console.getvalue().splitlines()
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} env  \| PROCESSMAN_ID=env$", "\n".join(lines), re.M)
    assert any(re.search(r" echo \| Hello from Python", line) for line in lines), lines


async def test_status_events_over_sse() -> None:
    config = make_config(script("echo", "echo.py"), script("env", "print_env.py"), token="t")
    async with api(config) as (manager, client):
        headers = {"Authorization": "Bearer t"}
        assert (await client.get("/api/events")).status_code == 401
        async with client.stream("GET", "/api/events", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            events: list[tuple[str, dict[str, Any]]] = []

            async def read(count: int) -> None:
                kind = ""
                with anyio.fail_after(10):
                    async for line in lines:
                        if line.startswith("event: "):
                            kind = line[len("event: ") :]
                        elif line.startswith("data: "):
                            events.append((kind, json.loads(line[len("data: ") :])))
                            if len(events) == count:
                                return

            await read(2)
            assert [(k, e["id"], e["status"]) for k, e in events] == [
                ("status", "echo", "running"),
                ("status", "env", "running"),
            ]
            assert set(events[0][1]) == STATUS_KEYS
            await manager.stop("echo")
            await read(4)
            assert [(k, e["id"], e["status"]) for k, e in events[2:]] == [
                ("status", "echo", "stopping"),
                ("status", "echo", "stopped"),
            ]
            await manager.remove_process("env")
            await read(7)
            assert events[-1] == ("removed", {"id": "env"})


async def test_openapi_has_no_servers_unless_mounted() -> None:
    async with api(make_config(script("echo", "echo.py"))) as (_, client):
        assert "servers" not in (await client.get("/openapi.json")).json()


async def test_openapi_schemas_come_from_the_types() -> None:
    async with api(make_config(script("echo", "echo.py"), token="t")) as (_, client):
        document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert set(schemas["ProcessStatus"]["properties"]) == STATUS_KEYS
    assert set(schemas["Status"]["enum"]) == {
        "waiting",
        "starting",
        "running",
        "backoff",
        "stopping",
        "stopped",
        "exited",
        "crashed",
    }
    assert set(schemas["LogEntry"]["properties"]) == {"time", "stream", "line", "process"}
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["paths"]["/api/health"]["get"]["security"] == []


async def test_group_ids_and_scale_over_http() -> None:
    web = script("web", "long_running.py", replicas=2)
    async with api(make_config(web, script("echo", "echo.py"))) as (manager, client):
        group = (await client.get("/api/processes/web")).json()
        assert [(s["id"], s["group"], s["replica"]) for s in group] == [
            ("web-0", "web", 0),
            ("web-1", "web", 1),
        ]
        one = (await client.get("/api/processes/web-1")).json()
        assert one["id"] == "web-1" and one["replica"] == 1
        assert (await client.get("/api/processes/echo")).json()["replica"] is None
        scaled = await client.post("/api/processes/web/scale", params={"replicas": "3"})
        assert scaled.status_code == 200
        assert [s["status"] for s in scaled.json()] == ["running"] * 3
        old = manager.status("web-2").pid
        stopped = await client.post("/api/processes/web/stop")
        assert [s["status"] for s in stopped.json()] == ["stopped"] * 3
        assert old is not None and not pid_alive(old)
        waited = await client.post("/api/processes/web/start")
        assert len(waited.json()) == 3
        ready = await client.post("/api/processes/web/wait", params={"timeout": "10s"})
        assert ready.status_code == 200 and all(s["ready"] for s in ready.json())
        logs = (await client.get("/api/processes/web/logs")).json()
        assert {entry["process"] for entry in logs} <= {"web-0", "web-1", "web-2"}
        for params, code, message in [
            ({"replicas": "-1"}, 400, "replicas must be an integer of 0 or more, got '-1'"),
            ({"replicas": "1.5"}, 400, "replicas must be an integer of 0 or more, got '1.5'"),
            ({}, 400, "give the number of replicas: ?replicas=N"),
        ]:
            answer = await client.post("/api/processes/web/scale", params=params)
            assert (answer.status_code, answer.json()) == (code, {"error": message})
        refused = await client.post("/api/processes/echo/scale", params={"replicas": "2"})
        assert refused.status_code == 400
        assert refused.json() == {"error": "set replicas in the config to scale 'echo'"}
        missing = await client.post("/api/processes/nope/scale", params={"replicas": "2"})
        assert missing.status_code == 404
        down = await client.post("/api/processes/web/scale", params={"replicas": "0"})
        assert down.json() == [] and (await client.get("/api/processes/web-0")).status_code == 404
        assert [s["id"] for s in (await client.get("/api/processes")).json()] == ["echo"]


async def test_reload_over_http(tmp_path: Path) -> None:
    from processman import load_config

    def entry(process_id: str, *extra: str) -> str:
        return (
            f"[[processes]]\nid = '{process_id}'\n"
            f"command = [{sys.executable!r}, {str(TESTDATA / 'echo.py')!r}]\n" + "".join(extra)
        )

    path = tmp_path / "processman.toml"
    path.write_text(entry("keep") + entry("gone") + entry("change"))
    async with api(load_config(path)) as (manager, client):
        kept = manager.status("keep").pid
        gone = manager.status("gone").pid
        path.write_text(entry("keep") + entry("change", "env = { V = '2' }\n") + entry("new"))
        answer = await client.post("/api/reload")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "added": ["new"],
            "removed": ["gone"],
            "changed": ["change"],
            "unchanged": ["keep"],
            "warnings": [],
        }
        assert manager.status("keep").pid == kept
        assert gone is not None and not pid_alive(gone)
        assert (await client.get("/api/processes/gone")).status_code == 404
        assert [s["id"] for s in (await client.get("/api/processes")).json()] == [
            "keep",
            "change",
            "new",
        ]
        path.write_text(entry("keep") + "colour = 1\n")
        bad = await client.post("/api/reload")
        assert bad.status_code == 400
        assert bad.json() == {"error": f"{path}: processes[0].colour: unknown key 'colour'"}
        path.unlink()
        missing = await client.post("/api/reload")
        assert missing.status_code == 400 and str(path) in missing.json()["error"]
        assert [s.id for s in manager.list()] == ["keep", "change", "new"]  # all ran on
        assert manager.status("keep").pid == kept


async def test_reload_of_a_config_made_in_python_says_so() -> None:
    async with api(make_config(script("echo", "echo.py"))) as (_, client):
        answer = await client.post("/api/reload")
    assert answer.status_code == 400
    assert answer.json() == {"error": "<config>: not read from a file: pass the new config"}


METRIC_FAMILIES = {  # SPEC §11: name -> (type, labels)
    "processman_process_up": ("gauge", {"id", "group"}),
    "processman_process_ready": ("gauge", {"id", "group"}),
    "processman_process_status": ("gauge", {"id", "group", "status"}),
    "processman_process_restarts": ("counter", {"id", "group"}),
    "processman_process_start_time_seconds": ("gauge", {"id", "group"}),
    "processman_process_cpu_seconds": ("counter", {"id", "group"}),
    "processman_process_resident_memory_bytes": ("gauge", {"id", "group"}),
    "processman_log_lines": ("counter", {"id", "group", "stream"}),
}


async def test_metrics_in_the_prometheus_text_format() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    config = make_config(
        script("echo", "echo.py"),
        script("web", "long_running.py", replicas=2),
        script("idle", "echo.py", autostart=False),
        token="s3cret",
    )
    async with api(config) as (manager, client):
        assert (await client.get("/metrics")).status_code == 401  # the token rule holds
        auth = {"Authorization": "Bearer s3cret"}
        await wait_until(lambda: bool(manager.logs("echo")))
        answer = await client.get("/metrics", headers=auth)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    for name, (kind, labels) in METRIC_FAMILIES.items():
        family = families[name]
        assert family.type == kind, name
        assert family.samples, name
        assert all(set(sample.labels) == labels for sample in family.samples), name
    assert {"process_cpu_seconds", "process_resident_memory_bytes"} <= set(families)

    def value(name: str, **labels: str) -> float:
        [sample] = [
            s
            for s in families[name].samples
            if labels.items() <= s.labels.items() and not s.name.endswith("_created")
        ]
        return sample.value

    assert value("processman_process_up", id="web-1", group="web") == 1
    assert value("processman_process_up", id="idle") == 0
    assert value("processman_process_status", id="idle", status="stopped") == 1
    assert value("processman_process_status", id="idle", status="running") == 0
    assert value("processman_process_resident_memory_bytes", id="web-0") > 1_000_000
    assert value("processman_log_lines", id="echo", stream="stdout") >= 1
    running = {s.labels["id"] for s in families["processman_process_start_time_seconds"].samples}
    assert "idle" not in running and {"web-0", "web-1"} <= running


async def test_the_api_socket_of_run_sends_small_answers_at_once() -> None:
    # A socket made without naming IPPROTO_TCP gets no TCP_NODELAY from asyncio: a small
    # answer written in two pieces (a gzipped /metrics) waited 40 ms for the client's
    # delayed ACK (Nagle), every scrape after the first
    from processman.adapters.api_socket import bind

    sock = bind("127.0.0.1", 0)
    manager = ProcessManager(make_config())
    server = ApiServer(create_app(manager))
    try:
        async with manager, anyio.create_task_group() as tg:
            await tg.start(server.serve, sock)
            with socket.create_connection(sock.getsockname()) as client:
                client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = await anyio.to_thread.run_sync(client.recv, 4096)
                assert b"200 OK" in answer
                ours = client.getsockname()
                options = []
                for fd in map(int, os.listdir("/proc/self/fd")):
                    try:
                        peer = socket.socket(fileno=os.dup(fd))
                    except OSError:
                        continue
                    with peer:
                        try:
                            if peer.type == socket.SOCK_STREAM and peer.getpeername() == ours:
                                options.append(
                                    peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                                )
                        except OSError:
                            pass
            server.stop()
    finally:
        sock.close()
    assert options and all(options), options  # the server's end of our connection
