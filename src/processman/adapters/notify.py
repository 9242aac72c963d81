"""The sd_notify receiver (``man sd_notify``): one ``NOTIFY_SOCKET`` for every instance
whose ``ready`` probe is ``notify``.

An ``AF_UNIX`` datagram socket in a directory of its own (mode 0700), with
``SO_PASSCRED``: each datagram carries the sender's pid from the kernel
(``SCM_CREDENTIALS``), by which the manager finds the instance whose tree holds the
sender. Datagrams are newline-separated ``KEY=VALUE`` lines; one over 4096 bytes is
ignored. File descriptors sent with a datagram are closed once it is handled: that is
how ``BARRIER=1`` is answered, as systemd does (``systemd-notify`` waits for it).
Linux only (credentials passing as systemd uses it).
"""

from __future__ import annotations

import array
import os
import shutil
import socket
import struct
import tempfile
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

#: The largest datagram taken; a longer one is ignored (SPEC §8).
MAX_DATAGRAM = 4096
_UCRED = struct.Struct("3i")
_MAX_FDS = 16


class NotifySocket:
    """Receives sd_notify datagrams until closed; ``path`` goes to the children as
    ``NOTIFY_SOCKET``."""

    def __init__(self) -> None:
        self._directory = tempfile.mkdtemp(prefix="processman-notify-")  # mode 0700
        self.path = os.path.join(self._directory, "notify")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.bind(self.path)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self._socket.setblocking(False)
        except BaseException:
            self.close()
            raise

    async def serve(self, on_message: Callable[[list[int], dict[str, str]], None]) -> None:
        """Hand each datagram's fields to ``on_message`` with the sender's pid and its
        ancestors' (while the sender lives; a barrier keeps it waiting), until cancelled."""
        ancillary = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_MAX_FDS * 4)
        while True:
            await anyio.wait_readable(self._socket)
            try:
                data, cmsgs, flags, _ = self._socket.recvmsg(MAX_DATAGRAM + 1, ancillary)
            except (BlockingIOError, InterruptedError):
                continue
            pid, fds = None, array.array("i")
            for level, kind, payload in cmsgs:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            try:
                if pid and len(data) <= MAX_DATAGRAM and not flags & socket.MSG_TRUNC:
                    on_message(ancestors(pid), parse_notify(data))
            finally:
                for fd in fds:  # BARRIER=1's, or any sent: closing answers the barrier
                    os.close(fd)

    def close(self) -> None:
        """Stop receiving; remove the socket and its directory."""
        self._socket.close()
        shutil.rmtree(self._directory, ignore_errors=True)


def parse_notify(data: bytes) -> dict[str, str]:
    """``READY=1\\nSTATUS=up`` -> ``{"READY": "1", "STATUS": "up"}``; lines without ``=``
    are skipped, a repeated key keeps its last value."""
    fields = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def ancestors(pid: int, limit: int = 64) -> list[int]:
    """``pid`` and its parents, from ``/proc`` (the sender's place in a process tree)."""
    chain: list[int] = []
    while pid > 1 and len(chain) < limit:
        chain.append(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            break
        pid = int(stat[stat.rindex(b")") + 2 :].split()[1])  # after "(comm) state"
    return chain
