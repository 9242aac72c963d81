"""A small client of the control API for the CLI (standard library only: no extra dependency)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
import urllib.parse
from typing import TYPE_CHECKING, Any

from processman.domain.errors import ApiError, ApiUnreachableError
from processman.domain.model import CONTROL_SOCKET

if TYPE_CHECKING:
    from collections.abc import Iterator


def normalise_base_url(value: str) -> str:
    """``127.0.0.1:9876`` -> ``http://127.0.0.1:9876``; no trailing slash.

    A path stays (an API mounted under a prefix). Raises ApiUnreachableError, naming
    the value, for what cannot be an address of the API.
    """
    url = value.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no port
    except ValueError as exc:
        raise ApiUnreachableError(repr(value), f"not a URL ({exc})") from None
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        problem = "it contains spaces or control characters"
    elif parts.scheme not in ("http", "https"):
        problem = f"the API speaks http:// (or https://), not {parts.scheme}://"
    elif not parts.hostname:
        problem = "it names no host"
    elif parts.query or parts.fragment:
        problem = "a query or fragment has no place in it"
    else:
        return url
    raise ApiUnreachableError(repr(value), f"not a URL: {problem}")


#: How long a GET may wait for its answer: the server answers them at once, so this is a
#: server that is stopped (Ctrl-Z) or is not processman at all.
ANSWER_TIMEOUT = 30.0

#: How long a POST may wait: a stop answers once the whole tree is gone, which may take a
#: process's whole ``stopTimeout``.
COMMAND_TIMEOUT = 600.0

#: How long a log stream may stay silent: the server sends a keep-alive comment every
#: 15 s (``KEEPALIVE_SECONDS`` of the HTTP adapter), so three missed ones.
STREAM_SILENCE = 45.0


class ApiClient:
    """Blocking calls to one processman API, over TCP or a unix socket.

    Args:
        base_url: the API's base URL (``normalise_base_url``); ignored with ``socket_path``.
        token: the bearer token sent with every request, if any.
        socket_path: a control socket (``.processman.sock``) to talk to instead.
    """

    def __init__(
        self,
        base_url: str = "",
        token: str | None = None,
        *,
        socket_path: str | None = None,
        answer_timeout: float = ANSWER_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
        stream_silence: float = STREAM_SILENCE,
    ) -> None:
        self.socket_path = socket_path
        if socket_path is not None:
            self.base_url = f"unix:{socket_path}"
            self._scheme, self._netloc, self._prefix = "http", "localhost", ""
        else:
            self.base_url = normalise_base_url(base_url)
            parts = urllib.parse.urlsplit(self.base_url)
            self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path
        self.token = token
        self.answer_timeout = answer_timeout
        self.command_timeout = command_timeout
        self.stream_silence = stream_silence

    def get(self, path: str, **query: object) -> Any:
        """GET ``path`` and decode the JSON answer."""
        return self._json("GET", path, query, self.answer_timeout)

    def post(self, path: str, **query: object) -> Any:
        """POST ``path`` (no body) and decode the JSON answer."""
        return self._json("POST", path, query, self.command_timeout)

    def events(self, path: str) -> Iterator[tuple[str, str]]:
        """Follow a Server-Sent Events stream: ``(event, data)`` pairs, until it ends.

        Raises:
            ApiUnreachableError: the stream was silent for ``stream_silence`` seconds (no
                line, no keep-alive), or the connection failed.
        """
        with self._open("GET", path, {}, timeout=self.stream_silence) as response:
            try:
                yield from _parse_events(response)
            except TimeoutError:
                silent = f"the log stream was silent for {self.stream_silence:g} s"
                raise ApiUnreachableError(self.base_url, silent) from None
            except (OSError, http.client.HTTPException) as exc:
                broke = f"the log stream broke off: {_reason(exc)}"
                raise ApiUnreachableError(self.base_url, broke) from None

    def _json(self, method: str, path: str, query: dict[str, object], timeout: float) -> Any:
        with self._open(method, path, query, timeout=timeout) as response:
            try:
                body = response.read()
            except TimeoutError:
                raise ApiUnreachableError(self.base_url, "timed out") from None
            except (OSError, http.client.HTTPException) as exc:
                raise ApiUnreachableError(self.base_url, _reason(exc)) from None
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(200, f"{self.base_url}{path}: the answer is not JSON") from None

    @contextlib.contextmanager
    def _open(
        self, method: str, path: str, query: dict[str, object], timeout: float
    ) -> Iterator[http.client.HTTPResponse]:
        """The response to one request, its connection closed on the way out.

        Raises:
            ApiError: the server answered with a 4xx or 5xx (its ``error`` message).
            ApiUnreachableError: no answer (refused, timed out, not HTTP).
        """
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        connection = self._connection(timeout)
        try:
            try:
                connection.request(method, target, headers=headers)
                response = connection.getresponse()
            except TimeoutError:
                raise ApiUnreachableError(self.base_url, "timed out") from None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise ApiUnreachableError(self.base_url, _reason(exc)) from None
            try:
                if response.status >= 400:
                    raise ApiError(response.status, _message(response))
                yield response
            finally:
                response.close()  # it holds the socket once the connection lets it go
        finally:
            connection.close()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixConnection(self.socket_path, timeout)
        if self._scheme == "https":  # ssl is imported only here: `run` never needs it
            return http.client.HTTPSConnection(self._netloc, timeout=timeout)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket (the control socket)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def find_control_socket(directory: str) -> str | None:
    """The control socket of ``directory`` or of its nearest parent that has one."""
    current = os.path.abspath(directory)
    while True:
        candidate = os.path.join(current, CONTROL_SOCKET)
        try:
            if stat.S_ISSOCK(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            pass
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _reason(exc: BaseException) -> str:
    """An error of the connection in a few lowercase words."""
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).lower() or type(exc).__name__


def _parse_events(response: Any) -> Iterator[tuple[str, str]]:
    event, data = "message", list[str]()
    for raw in response:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def _message(response: http.client.HTTPResponse) -> str:
    try:
        body = json.loads(response.read())
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])
    except (ValueError, OSError, http.client.HTTPException):
        pass
    return f"HTTP {response.status} {response.reason}"
