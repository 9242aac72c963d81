"""The TCP socket the HTTP control API listens on (``api.listen``), bound up front.

Shared by ``processman run`` and ``processman.testing``, so that both keep SPEC §1's
rule (a non-loopback address needs a token); standard library only, so that binding
early (a busy port is a clear error before anything is spawned) loads nothing of the
HTTP stack.
"""

from __future__ import annotations

import ipaddress
import socket


class ApiSocketError(Exception):
    """Why the API cannot be served on ``api.listen``, in one line."""


def api_socket(listen: str, token: str | None) -> socket.socket:
    """The listening socket of ``listen`` (``host:port``), refused without a ``token``
    unless only this machine can reach it.

    Raises:
        ApiSocketError: refused, or the address is in use or cannot be bound.
    """
    host, port = split_listen(listen)
    if token is None and not is_loopback(host):
        raise ApiSocketError(
            f"refusing to serve the API on {listen} without a token: a non-loopback "
            "address needs api.token or PROCESSMAN_TOKEN"
        )
    try:
        return bind(host, port)
    except OSError as exc:
        raise ApiSocketError(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def split_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:9876`` -> ``("127.0.0.1", 9876)``; ``[::1]:9876`` -> ``("::1", 9876)``."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (no token needed there, SPEC §1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on ``host:port`` (all addresses for ``""``).

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on connections of an IPPROTO_TCP socket,
    # and without it a small answer sent in two writes (gzipped /metrics) waited 40 ms
    # for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
