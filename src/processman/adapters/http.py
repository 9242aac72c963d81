"""The HTTP control API of SPEC §5: one ASGI app (Starlette), mountable in a host app.

``create_app(manager)`` serves the manager's statuses, commands and logs as JSON,
live logs as Server-Sent Events, and its own OpenAPI document, generated from the
same msgspec types the handlers encode.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hmac
import html
import importlib.resources
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from processman._version import __version__
from processman.domain.durations import format_uptime, parse_duration
from processman.domain.errors import (
    ConfigError,
    NotReadyError,
    NotRunningError,
    ProcessNotRunningError,
    UnknownProcessError,
)
from processman.domain.model import SIGNAL_NAMES, ProcessStatus, Status
from processman.domain.ports import LogEntry, ProcessControl
from processman.domain.usage import human_size

if TYPE_CHECKING:
    import socket
    from contextlib import AbstractContextManager

    from anyio.abc import TaskStatus

    from processman.domain.model import Config
    from processman.domain.ports import LogSubscription

#: Seconds between ``: keep-alive`` comments on an idle log stream.
KEEPALIVE_SECONDS = 15.0

Handler = Callable[[Request], Awaitable[Response]]


class Health(msgspec.Struct, frozen=True):
    """``GET /api/health``."""

    status: str
    processes: int


class ErrorBody(msgspec.Struct, frozen=True):
    """Every 4xx answer."""

    error: str


class Gap(msgspec.Struct, frozen=True):
    """The ``gap`` event of a log stream: lines this client missed by falling behind."""

    dropped: int


_encode = msgspec.json.Encoder().encode


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Encode ``body`` with msgspec (camelCase status objects, RFC 3339 times)."""
    return Response(_encode(body), status_code, headers, media_type="application/json")


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message}`` with ``status_code``."""
    return json_response(ErrorBody(message), status_code, headers)


def create_app(
    manager: ProcessControl,
    *,
    token: str | None = None,
    keepalive: float = KEEPALIVE_SECONDS,
    auth: bool = True,
    read_config: Callable[[], Config] | None = None,
) -> Starlette:
    """The control API for ``manager``.

    Args:
        manager: a running ``ProcessManager`` (or anything with its methods).
        token: the bearer token every ``/api/processes`` request must carry; by default
            the config's ``api.token``; no auth when both are unset.
        keepalive: seconds between keep-alive comments on log streams.
        auth: False where the transport itself admits only the owner (the control
            socket, mode 0600): no token is asked for.
        read_config: what ``POST /api/reload`` applies (``processman run`` reads its
            file again, ``--only`` and ``--api`` applied); by default the file the
            manager's config came from (``manager.reload()``). It raises ``ConfigError``
            for a bad config.
    """
    expected = token if token is not None else manager.config.api.token
    expected_bytes = expected.encode() if expected and auth else None

    def guarded(handler: Handler) -> Handler:
        async def check(request: Request) -> Response:
            if expected_bytes is not None:
                given = request.headers.get("authorization", "")
                scheme, _, credentials = given.partition(" ")
                ok = scheme.lower() == "bearer" and hmac.compare_digest(
                    credentials.strip().encode(), expected_bytes
                )
                if not ok:
                    return error(
                        401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
                    )
            try:
                return await handler(request)
            except UnknownProcessError as exc:
                return error(404, str(exc))
            except NotRunningError as exc:  # mounted without its lifespan, or shutting down
                return error(503, str(exc))
            except ProcessNotRunningError as exc:
                return error(409, str(exc))

        return check

    async def health(request: Request) -> Response:
        return json_response(Health("ok", len(manager.config.processes)))

    async def list_processes(request: Request) -> Response:
        return json_response(manager.list())

    def known(process_id: str) -> None:
        """404 (UnknownProcessError) unless ``process_id`` names a process or a group."""
        if not manager.is_group(process_id):
            manager.status(process_id)

    async def get_process(request: Request) -> Response:
        process_id = request.path_params["id"]
        if manager.is_group(process_id):
            return json_response(manager.group(process_id))
        return json_response(manager.status(process_id))

    async def start(request: Request) -> Response:
        return json_response(await manager.start(request.path_params["id"]))

    async def stop(request: Request) -> Response:
        return json_response(await manager.stop(request.path_params["id"]))

    async def restart(request: Request) -> Response:
        return json_response(await manager.restart(request.path_params["id"]))

    async def send_signal(request: Request) -> Response:
        process_id = request.path_params["id"]
        known(process_id)  # 404 before 400
        name = request.query_params.get("signal")
        if not name:
            return error(400, "name the signal: ?signal=SIGHUP")
        try:
            return json_response(await manager.signal(process_id, name))
        except ValueError as exc:
            return error(400, str(exc))

    async def wait(request: Request) -> Response:
        process_id = request.path_params["id"]
        known(process_id)  # 404 before 400
        raw = request.query_params.get("timeout", "60s")
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            return error(400, f"timeout: {exc}")
        try:
            statuses = await manager.wait_ready(process_id, timeout=seconds)
        except NotReadyError as exc:
            return error(409, str(exc))
        return json_response(statuses if manager.is_group(process_id) else statuses[0])

    async def reload(request: Request) -> Response:
        try:
            config = await anyio.to_thread.run_sync(read_config) if read_config else None
            plan = await manager.reload(config)
        except ConfigError as exc:
            return error(400, str(exc))
        return json_response(
            ReloadReply(
                added=plan.added,
                removed=plan.removed,
                changed=plan.changed,
                unchanged=plan.unchanged,
                warnings=plan.warnings,
            )
        )

    async def scale(request: Request) -> Response:
        process_id = request.path_params["id"]
        known(process_id)  # 404 before 400
        raw = request.query_params.get("replicas")
        if raw is None:
            return error(400, "give the number of replicas: ?replicas=N")
        if not raw.isascii() or not raw.isdigit():
            return error(400, f"replicas must be an integer of 0 or more, got {raw!r}")
        try:
            return json_response(await manager.scale(process_id, int(raw)))
        except ValueError as exc:
            return error(400, str(exc))

    async def logs(request: Request) -> Response:
        process_id = request.path_params["id"]
        known(process_id)  # 404 before 400
        raw = request.query_params.get("tail", "100")
        if not raw.isascii() or not raw.isdigit():
            return error(400, f"tail must be a non-negative integer, got {raw!r}")
        tail = min(int(raw), manager.config.logs.buffer_lines)
        return json_response(manager.logs(process_id, tail))

    async def stream(request: Request) -> Response:
        subscription = manager.subscribe(request.path_params["id"])  # 404 or 503 here
        return StreamingResponse(
            _events(subscription, keepalive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def events(request: Request) -> Response:
        stream = manager.events()  # 503 here when not running
        return StreamingResponse(
            _status_events(stream, keepalive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def dashboard(request: Request) -> Response:
        # the table as of the page load, for a browser without JavaScript; with a token
        # the page must first ask for it, so it shows nothing before
        rows: list[ProcessStatus] | str = "sign in to see the processes"
        if expected_bytes is None:
            try:
                rows = manager.list()
            except NotRunningError as exc:
                rows = str(exc)
        return Response(
            dashboard_page(rows),
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store", **_PAGE_HEADERS},
        )

    async def asset(request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return Response(
            _asset(name), media_type=_ASSET_TYPES[name.rsplit(".", 1)[-1]], headers=_PAGE_HEADERS
        )

    exposition: list[Any] = []  # made on the first scrape (prometheus_client loads then)

    async def metrics(request: Request) -> Response:
        from processman.adapters import _prometheus

        if not exposition:
            exposition.append(_prometheus.Exposition(manager.metrics))
        body = exposition[0].render()
        headers = {}
        if "gzip" in request.headers.get("accept-encoding", ""):  # as Prometheus asks
            body = gzip.compress(body, compresslevel=1)  # 500 processes: 519 KiB -> 39
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=_prometheus.CONTENT_TYPE, headers=headers)

    async def openapi(request: Request) -> Response:
        ids = [spec.id for spec in manager.config.processes]
        document = openapi_document(secured=expected_bytes is not None, ids=ids)
        # mounted under a prefix (a host app's Mount): generated clients need its paths
        root = request.scope.get("root_path", "")
        if root:
            document["servers"] = [{"url": root}]
        return json_response(document)

    routes = [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/processes", guarded(list_processes), methods=["GET"]),
        Route("/api/processes/{id}", guarded(get_process), methods=["GET"]),
        Route("/api/processes/{id}/start", guarded(start), methods=["POST"]),
        Route("/api/processes/{id}/stop", guarded(stop), methods=["POST"]),
        Route("/api/processes/{id}/restart", guarded(restart), methods=["POST"]),
        Route("/api/processes/{id}/signal", guarded(send_signal), methods=["POST"]),
        Route("/api/processes/{id}/wait", guarded(wait), methods=["POST"]),
        Route("/api/processes/{id}/scale", guarded(scale), methods=["POST"]),
        Route("/api/processes/{id}/logs", guarded(logs), methods=["GET"]),
        Route("/api/processes/{id}/logs/stream", guarded(stream), methods=["GET"]),
        Route("/api/events", guarded(events), methods=["GET"]),
        Route("/api/reload", guarded(reload), methods=["POST"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Route("/dashboard.js", asset, methods=["GET"]),
        Route("/dashboard.css", asset, methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such endpoint", 405: "method not allowed"}.get(
            exc.status_code, exc.detail
        )
        return error(exc.status_code, message, dict(exc.headers or {}))

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.router.redirect_slashes = False  # "/api/processes/../" is a 404, not a redirect
    return app


async def _events(
    subscribing: AbstractContextManager[LogSubscription], keepalive: float
) -> AsyncIterator[bytes]:
    """The SSE body: a ``data:`` record per line, ``event: gap`` when lines were dropped,
    ``event: end`` when the manager has shut down."""
    with subscribing as subscription:
        yield b": connected\n\n"
        while True:
            entries: list[LogEntry] = []
            dropped = 0
            with anyio.move_on_after(keepalive):
                try:
                    entries, dropped = await subscription.receive()
                except anyio.EndOfStream:  # the manager shut down; its last lines are sent
                    yield b'event: end\ndata: {"reason":"processman shut down"}\n\n'
                    return
            if not entries and not dropped:
                yield b": keep-alive\n\n"
                continue
            chunk = b"".join([b"data: " + _encode(entry) + b"\n\n" for entry in entries])
            if dropped:
                chunk += b"event: gap\ndata: " + _encode(Gap(dropped)) + b"\n\n"
            yield chunk


_ASSET_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
#: the page loads nothing but its own files, and no other site may frame it
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@functools.cache
def _asset(name: str) -> bytes:
    """A file of the dashboard, from the package (read once)."""
    return (importlib.resources.files("processman.adapters") / "dashboard" / name).read_bytes()


def dashboard_page(statuses: list[ProcessStatus] | str) -> bytes:
    """The dashboard's page, with the table of ``statuses`` rendered in (or a message in
    its place: the token is needed first, the manager is not running)."""
    if isinstance(statuses, str):
        rows = f'<tr><td colspan="10">{html.escape(statuses)}</td></tr>'
    else:
        rows = "\n".join(_row(status) for status in statuses)
    return _asset("index.html").replace(b"<!--ROWS-->", rows.encode())


def _row(s: ProcessStatus) -> str:
    running = s.status is Status.RUNNING
    cells = [
        s.id,
        s.status.value,
        ("yes" if s.ready else "no") if running else "-",
        "-" if s.pid is None else str(s.pid),
        format_uptime(s.uptime) if running else "-",
        str(s.restart_count),
        "-" if s.cpu_percent is None else f"{s.cpu_percent:.1f}%",
        "-" if s.memory_bytes is None else human_size(s.memory_bytes),
        s.last_error,
        "",
    ]
    classes = ["", f"status status-{s.status.value}", "", "", "", "", "", "", "error-cell"]
    tds = "".join(
        f'<td class="{cls}">{html.escape(text)}</td>' if cls else f"<td>{html.escape(text)}</td>"
        for text, cls in zip(cells, [*classes, ""], strict=True)
    )
    return f'<tr data-id="{html.escape(s.id)}">{tds}</tr>'


class ReloadReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``POST /api/reload`` (SPEC §10): ids in config order."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: list[str]
    warnings: list[str]


class Removed(msgspec.Struct, frozen=True):
    """The ``removed`` event of ``/api/events``: a process that is gone."""

    id: str


async def _status_events(stream: Any, keepalive: float) -> AsyncIterator[bytes]:
    """The SSE body of ``/api/events``: ``event: status`` with a status object per process,
    then one per change; ``event: removed``; ``event: gap`` before a fresh snapshot."""
    async with stream:
        yield b": connected\n\n"
        iterator = stream.__aiter__()
        while True:
            with anyio.move_on_after(keepalive) as idle:
                try:
                    event = await iterator.__anext__()
                except StopAsyncIteration:  # the manager shut down
                    yield b'event: end\ndata: {"reason":"processman shut down"}\n\n'
                    return
            if idle.cancelled_caught:
                yield b": keep-alive\n\n"
                continue
            if event.kind == "status":
                yield b"event: status\ndata: " + _encode(event.status) + b"\n\n"
            elif event.kind == "removed":
                yield b"event: removed\ndata: " + _encode(Removed(event.process_id)) + b"\n\n"
            else:
                yield b"event: gap\ndata: {}\n\n"


def openapi_document(*, secured: bool, ids: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document, its schemas generated from the msgspec types."""
    ref = "#/components/schemas/{name}"
    (status, statuses, health, err, entries, _), components = msgspec.json.schema_components(
        [ProcessStatus, list[ProcessStatus], Health, ErrorBody, list[LogEntry], Gap],
        ref_template=ref,
    )

    # a group id (SPEC §9) answers with its replicas' statuses
    one_or_group: dict[str, Any] = {"anyOf": [status, statuses]}

    def answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    fail = {
        "401": answer(err, "missing or wrong bearer token"),
        "404": answer(err, "unknown process id"),
        "503": answer(err, "the manager is not running (not yet started, or shutting down)"),
    }
    process_id: dict[str, Any] = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    if ids:
        process_id["examples"] = {pid: {"value": pid} for pid in ids}

    def command(summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [process_id],
                "responses": {
                    "200": answer(one_or_group, "the status afterwards (a group: a list)"),
                    **fail,
                },
            }
        }

    paths: dict[str, Any] = {
        "/api/health": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {"200": answer(health, "ok")},
            }
        },
        "/api/processes": {
            "get": {
                "summary": "Every process, in config order",
                "responses": {
                    "200": answer(statuses, "statuses"),
                    "401": fail["401"],
                    "503": fail["503"],
                },
            }
        },
        "/api/processes/{id}": {
            "get": {
                "summary": "One process",
                "parameters": [process_id],
                "responses": {"200": answer(one_or_group, "its status (a group: a list)"), **fail},
            }
        },
        "/api/processes/{id}/start": command("Start; answers once spawned (or failed)"),
        "/api/processes/{id}/stop": command("Stop; answers once the whole tree is gone"),
        "/api/processes/{id}/restart": command("Restart; answers once the new instance is spawned"),
        "/api/processes/{id}/signal": {
            "post": {
                "summary": "Send a signal to the whole tree of a running process",
                "parameters": [
                    process_id,
                    {
                        "name": "signal",
                        "in": "query",
                        "required": True,
                        "schema": {
                            "type": "string",
                            # with or without SIG; lower case is accepted too
                            "enum": sorted({*SIGNAL_NAMES, *(n[3:] for n in SIGNAL_NAMES)}),
                            "examples": ["SIGHUP", "USR1"],
                        },
                    },
                ],
                "responses": {
                    "200": answer(one_or_group, "the status (the signal is sent)"),
                    "400": answer(err, "not a signal name, or one this platform cannot send"),
                    "409": answer(err, "the process is not running"),
                    **fail,
                },
            }
        },
        "/api/processes/{id}/wait": {
            "post": {
                "summary": "Answer once the process is ready (SPEC §8)",
                "parameters": [
                    process_id,
                    {
                        "name": "timeout",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "string",
                            # what the server takes, and no more: a subset of SPEC's
                            # durations that cannot pass their limit
                            "pattern": r"^(\d{1,5}(\.\d{1,3})?(ns|us|ms|s|m|h)){1,4}$|^0$",
                            "default": "60s",
                        },
                    },
                ],
                "responses": {
                    "200": answer(one_or_group, "the status, ready"),
                    "400": answer(err, "timeout is not a duration"),
                    "409": answer(err, "not ready in time, or no longer trying"),
                    **fail,
                },
            }
        },
        "/api/processes/{id}/scale": {
            "post": {
                "summary": "Run N replicas of a group (SPEC §9); answers once the new ones "
                "are spawned and the removed ones' trees are gone",
                "parameters": [
                    process_id,
                    {
                        "name": "replicas",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "responses": {
                    "200": answer(statuses, "the group's statuses"),
                    "400": answer(err, "not a count, or a process without replicas"),
                    **fail,
                },
            }
        },
        "/api/processes/{id}/logs": {
            "get": {
                "summary": "The last buffered lines, oldest first",
                "parameters": [
                    process_id,
                    {
                        "name": "tail",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "default": 100},
                    },
                ],
                "responses": {
                    "200": answer(entries, "lines"),
                    "400": answer(err, "tail is not a non-negative integer"),
                    **fail,
                },
            }
        },
        "/api/events": {
            "get": {
                "summary": "Status changes as Server-Sent Events (SPEC §11)",
                "responses": {
                    "200": {
                        "description": "`event: status` with a ProcessStatus for every process, "
                        "then one per change of status, pid, ready or lastError; `event: "
                        "removed` with {id}; `event: gap` then a fresh snapshot for a reader "
                        "that fell behind; `event: end` when processman shuts down",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": fail["401"],
                    "503": fail["503"],
                },
            }
        },
        "/api/processes/{id}/logs/stream": {
            "get": {
                "summary": "Live lines as Server-Sent Events (data: a LogEntry per line)",
                "parameters": [process_id],
                "responses": {
                    "200": {
                        "description": "an event stream until processman shuts down "
                        "(`event: end`); `event: gap` carries a Gap",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **fail,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Every process's metrics in the Prometheus text format (SPEC §11)",
                "responses": {
                    "200": {
                        "description": "processman_process_* and processman_log_lines_total "
                        "with labels id and group, and the manager's own process_*",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": fail["401"],
                    "503": fail["503"],
                },
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "processman", "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the host (``processman run``) owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Serves an ASGI app with uvicorn on an already bound socket, inside a task group."""

    def __init__(self, app: Any, graceful_shutdown: float = 1.0, *, lifespan: bool = False) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on" if lifespan else "off",
            timeout_graceful_shutdown=max(1, round(graceful_shutdown)),
        )
        self._server = _Server(config)

    async def serve(
        self, sock: socket.socket, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``stop()``; ``task_status.started()`` once requests are accepted."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._server.serve, [sock])
            # uvicorn sets a flag, not an event, once it accepts requests
            while not self._server.started:  # noqa: ASYNC110
                await anyio.sleep(0.005)
            task_status.started()

    def stop(self) -> None:
        """Ask the server to finish: open streams get ``graceful_shutdown`` seconds."""
        self._server.should_exit = True
