"""Listening sockets that processman owns and hands to a process's instances (SPEC §9).

Each is bound and listening before the process's first start and stays open while the
manager runs, so connections wait in its backlog while an instance restarts. The
manager's copies are close-on-exec (Python's default): only the spawn that passes them
on (``SpawnRequest.pass_fds``) gives them to a child.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from processman.domain.errors import SpawnError
from processman.domain.replicas import parse_address

#: The listen backlog: connections that wait while no instance accepts (a restart).
BACKLOG = 1024


class SocketBinder:
    """Opens ``sockets`` addresses; ``close`` closes what it opened."""

    def __init__(self) -> None:
        self._open: dict[int, tuple[socket.socket, str]] = {}

    def open(self, address: str) -> int:
        """Bind and listen on ``address`` (as the config writes it); return its fd.

        Raises:
            SpawnError: it cannot be bound, naming the address and why.
        """
        parsed = parse_address(address)
        try:
            if parsed.path:
                sock = _unix(parsed.path)
            else:
                family = socket.AF_INET6 if ":" in parsed.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((parsed.host, parsed.port))
                except BaseException:
                    sock.close()
                    raise
            sock.listen(BACKLOG)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, socket.gaierror):
                reason = f"unknown host ({exc.strerror})"
            raise SpawnError(address, f"cannot listen: {reason.lower()}") from None
        self._open[sock.fileno()] = (sock, parsed.path)
        return sock.fileno()

    def close(self, fd: int) -> None:
        """Close a socket this opened (a unix socket's file is removed)."""
        sock, path = self._open.pop(fd, (None, ""))
        if sock is None:
            return
        sock.close()
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close_all(self) -> None:
        """Close every socket still open."""
        for fd in list(self._open):
            self.close(fd)


def _unix(path: str) -> socket.socket:
    """A unix stream socket bound at ``path``; a stale socket file there (no one listens)
    is replaced, anything else there is an error."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise FileExistsError(17, "a file that is not a socket is in the way", path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a killed run's: nobody answers
            else:
                raise OSError(98, "Address already in use", path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    return sock
