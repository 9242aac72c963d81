"""Network probes (SPEC §8): ``http`` (a GET, no redirects followed, 200-399 passes) with
httpx, and ``tcp`` (a connection accepted) with anyio; both on asyncio and trio.

httpx is imported on the first ``http`` try: a config without one never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from processman.domain.model import ProbeKind

if TYPE_CHECKING:
    from processman.domain.model import Probe


class NetworkProber:
    """``Prober``: one shared HTTP client for every ``http`` probe, made when first used."""

    def __init__(self) -> None:
        self._client: Any = None

    async def check(self, probe: Probe) -> str | None:
        """One try within ``probe.timeout``; None when it passed, else what went wrong."""
        try:
            with anyio.fail_after(probe.timeout):
                if probe.kind is ProbeKind.TCP:
                    return await _tcp(probe.target)
                return await self._http(probe.target, seconds=probe.timeout)
        except TimeoutError:
            return f"timed out after {probe.timeout:g}s"
        except OSError as exc:
            return _os_reason(exc)

    async def _http(self, url: str, *, seconds: float) -> str | None:
        import httpx

        if self._client is None:
            # a fresh connection each try: a server that accepts no new one is not ready
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                limits=httpx.Limits(max_keepalive_connections=0),
                trust_env=False,  # a proxy of the environment must not answer for the child
            )
        try:
            response = await self._client.get(url, timeout=seconds)
        except httpx.ConnectError as exc:
            return _os_reason(exc)
        except httpx.TimeoutException:
            return f"timed out after {seconds:g}s"
        except httpx.HTTPError as exc:
            return f"GET {url}: {exc or type(exc).__name__}"
        if 200 <= response.status_code < 400:
            return None
        return f"GET {url}: {response.status_code}"

    async def aclose(self) -> None:
        """Close the HTTP client, if one was made."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()


async def _tcp(address: str) -> str | None:
    host, _, port = address.rpartition(":")
    stream = await anyio.connect_tcp(host.strip("[]"), int(port))
    await stream.aclose()
    return None


def _os_reason(exc: BaseException) -> str:
    """The first real cause in a connection error's chain, in a few words (anyio says
    "All connection attempts failed" with the attempts' errors as its cause)."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop(0)
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None and linked not in seen:
                seen.append(linked)
    return str(exc).lower() or type(exc).__name__
