"""A small client of the control API for the CLI (standard library only: no extra dependency)."""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from processman.domain.errors import ApiError, ApiUnreachableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from urllib.error import HTTPError

#: Where the CLI looks when neither ``--api`` nor ``PROCESSMAN_API`` is given.
DEFAULT_API = "http://127.0.0.1:9876"


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
    """Blocking calls to one processman API."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        answer_timeout: float = ANSWER_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
        stream_silence: float = STREAM_SILENCE,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.token = token
        self.answer_timeout = answer_timeout
        self.command_timeout = command_timeout
        self.stream_silence = stream_silence

    def get(self, path: str, **query: object) -> Any:
        """GET ``path`` and decode the JSON answer."""
        return self._json("GET", path, query, self.answer_timeout)

    def post(self, path: str) -> Any:
        """POST ``path`` (no body) and decode the JSON answer."""
        return self._json("POST", path, {}, self.command_timeout)

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
            except OSError as exc:
                broke = f"the log stream broke off: {exc.strerror or exc}"
                raise ApiUnreachableError(self.base_url, broke) from None

    def _json(self, method: str, path: str, query: dict[str, object], timeout: float) -> Any:
        with self._open(method, path, query, timeout=timeout) as response:
            try:
                body = response.read()
            except TimeoutError:
                raise ApiUnreachableError(self.base_url, "timed out") from None
            except OSError as exc:
                raise ApiUnreachableError(self.base_url, str(exc.strerror or exc)) from None
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(200, f"{self.base_url}{path}: the answer is not JSON") from None

    def _open(self, method: str, path: str, query: dict[str, object], timeout: float) -> Any:
        import urllib.error  # not at import: urllib.request loads ssl, which `run` never needs
        import urllib.request

        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URL from the user
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _message(exc)) from None
        except urllib.error.URLError as exc:
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
            raise ApiUnreachableError(self.base_url, str(reason or exc).lower()) from None
        except TimeoutError:
            raise ApiUnreachableError(self.base_url, "timed out") from None
        except (ConnectionError, ValueError) as exc:
            raise ApiUnreachableError(self.base_url, str(exc)) from None


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


def _message(exc: HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])
    except (ValueError, OSError):
        pass
    return f"HTTP {exc.code} {exc.reason}"
