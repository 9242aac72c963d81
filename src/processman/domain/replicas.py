"""Replicas (SPEC §9): the instances of a process, as pure functions of its spec.

A process with ``replicas`` is a *group*; its spec, as the config holds it, is the
template of its instances ``ID-0`` ... ``ID-(N-1)``. The templates of the config that
differ per instance (``${PROCESSMAN_ID}``, ``${PROCESSMAN_REPLICA}``, ``${PORT}``) are
left in the template as markers (``deferred``) and filled in by ``instance``, so that
a replica made by a later scale gets the same values as one made at load.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from processman.domain.model import Probe, ProcessSpec

#: The variables whose value differs per replica.
PER_REPLICA = ("PROCESSMAN_ID", "PROCESSMAN_REPLICA", "PORT")

# Private-use characters: no config value is expected to hold them.
_OPEN, _CLOSE = "\ue000", "\ue001"


def deferred(name: str) -> str:
    """The marker a template of ``name`` (one of ``PER_REPLICA``) leaves in a group's spec."""
    return f"{_OPEN}{name}{_CLOSE}"


def holds_deferred(text: str) -> bool:
    """Whether ``text`` still holds a per-replica value to fill in."""
    return _OPEN in text


def instance_id(group: str, index: int) -> str:
    """``web-0``: the id of replica ``index`` of ``group``."""
    return f"{group}-{index}"


def port_of(spec: ProcessSpec, index: int | None) -> int | None:
    """The ``PORT`` of an instance: the group's ``port`` plus its replica index."""
    if spec.port is None:
        return None
    return spec.port + (index or 0)


def instance(spec: ProcessSpec, index: int) -> ProcessSpec:
    """Replica ``index`` of the group ``spec``: its id, index and per-replica values."""
    values = {
        "PROCESSMAN_ID": instance_id(spec.id, index),
        "PROCESSMAN_REPLICA": str(index),
        "PORT": str(port_of(spec, index)) if spec.port is not None else "",
    }

    def fill(text: str) -> str:
        if _OPEN not in text:
            return text
        for name, value in values.items():
            text = text.replace(deferred(name), value)
        return text

    def fill_all(texts: Iterable[str]) -> tuple[str, ...]:
        return tuple(fill(text) for text in texts)

    def fill_probe(probe: Probe | None) -> Probe | None:
        if probe is None:
            return None
        return msgspec.structs.replace(
            probe, target=fill(probe.target), command=fill_all(probe.command)
        )

    return msgspec.structs.replace(
        spec,
        id=instance_id(spec.id, index),
        group=spec.id,
        replica=index,
        cwd=fill(spec.cwd),
        script=fill(spec.script) if spec.script is not None else None,
        command=fill_all(spec.command) if spec.command is not None else None,
        args=fill_all(spec.args),
        env={key: fill(value) for key, value in spec.env.items()},
        watch_paths=fill_all(spec.watch_paths),
        ready=fill_probe(spec.ready),
        health=fill_probe(spec.health),
    )


def instances(spec: ProcessSpec, count: int | None = None) -> list[ProcessSpec]:
    """Every instance of ``spec``: itself without ``replicas``, else ``count`` replicas
    (its own ``replicas`` by default)."""
    if spec.replicas is None:
        return [spec]
    return [instance(spec, index) for index in range(spec.replicas if count is None else count)]


def member_ids(spec: ProcessSpec) -> list[str]:
    """The ids of the instances of ``spec``, as its config gives them."""
    if spec.replicas is None:
        return [spec.id]
    return [instance_id(spec.id, index) for index in range(spec.replicas)]


class Address(msgspec.Struct, frozen=True):
    """A listening address of ``sockets``: TCP (``host``, ``port``) or a unix ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def text(self) -> str:
        """As ``sockets`` writes it: ``127.0.0.1:8000``, ``[::1]:8000``, ``unix:/run/a.sock``."""
        if self.path:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, cwd: str = "/") -> Address:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:PATH`` (relative to ``cwd``).

    Raises:
        ValueError: anything else, saying what is expected.
    """
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a path (unix:/run/app.sock)")
        return Address(path=posixpath.normpath(posixpath.join(cwd, path)))
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"{text!r}: only an IPv6 address goes in brackets")
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, as [::1]:8000")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"expected HOST:PORT (a port 1-65535), [IPv6]:PORT or unix:PATH, got {text!r}"
        )
    return Address(host=host, port=int(port))


def normalise_address(text: str, cwd: str) -> str:
    """``parse_address``, written back in its one spelling."""
    return parse_address(text, cwd).text


def listen_environment(addresses: Iterable[str]) -> dict[str, str]:
    """``LISTEN_FDS`` and ``LISTEN_FDNAMES`` for sockets passed as fds 3, 4, ... (systemd's
    socket activation; ``LISTEN_PID`` is the child's own, set after the fork).

    The names are the addresses, each ``:`` of theirs written ``_``: the names are
    ``:``-separated, and ``sd_listen_fds_with_names()`` refuses a count that differs.
    """
    names = [address.replace(":", "_") for address in addresses]
    return {"LISTEN_FDS": str(len(names)), "LISTEN_FDNAMES": ":".join(names)}
