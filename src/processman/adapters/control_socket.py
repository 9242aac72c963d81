"""The control socket of ``processman run`` (SPEC §6): its API on ``.processman.sock``.

The socket lives in the config file's directory, mode 0600, so that only its owner can
connect and no token is needed; a client command run in that directory (or below it)
finds it. A socket that answers there means that config is already supervised; one
that refuses is a killed run's, and is replaced.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import sys

from processman.domain.errors import AlreadySupervisedError
from processman.domain.model import CONTROL_SOCKET

__all__ = ["CONTROL_SOCKET", "ControlSocket"]


class ControlSocket:
    """A listening unix socket at ``<directory>/.processman.sock``, removed by ``close``.

    Raises (from ``open``):
        AlreadySupervisedError: a live ``processman run`` answers there.
        OSError: the socket cannot be made there (a read-only directory, a path longer
            than a unix socket allows, another user's socket); ``run`` says so and goes on.
    """

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.socket = sock
        self.path = path
        self._inode = os.stat(path).st_ino

    @classmethod
    def open(cls, directory: str) -> ControlSocket:
        """Bind and listen (not accepting yet: connections wait in the backlog)."""
        path = os.path.join(os.path.abspath(directory), CONTROL_SOCKET)
        _take_over_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            mask = os.umask(0o177)  # born 0600: nobody else connects, even for a moment
            try:
                sock.bind(path)
            finally:
                os.umask(mask)
            sock.listen(128)
            sock.setblocking(False)
            return cls(sock, path)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        """Stop listening and remove the file, unless another run has replaced it."""
        self.socket.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)


def _take_over_stale(path: str) -> None:
    """Remove a socket at ``path`` that nobody answers on; refuse one that answers."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a killed run's: nobody listens
            return
        except TimeoutError:  # its backlog is full: somebody listens, and is busy
            raise AlreadySupervisedError(path, None) from None
        raise AlreadySupervisedError(path, _peer_pid(probe))
    finally:
        probe.close()


def _peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process that listens on the other end (Linux's ``SO_PEERCRED``)."""
    if not sys.platform.startswith("linux"):
        return None
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _, _ = struct.unpack("3i", credentials)
    return pid or None
