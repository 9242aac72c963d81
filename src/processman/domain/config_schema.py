"""The shape of a config file as msgspec Structs: what a TOML, YAML or JSON document decodes to.

These are the file's raw values (durations as strings, relative paths, templates not
expanded); ``adapters/config.py`` turns them into the resolved ``model.Config``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

Duration = str | int


class _Raw(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True, kw_only=True):
    """Base of the file structs: camelCase keys, unknown keys are errors."""


class RawProbe(_Raw, frozen=True):
    """A ``ready`` or ``health`` table: one kind, and its timing."""

    http: str | None = None
    tcp: str | None = None
    exec: str | list[str] | None = None
    log_line: str | None = None
    notify: bool | None = None
    watchdog: Duration | None = None
    period: Duration | None = None
    timeout: Duration = "1s"
    initial_delay: Duration = "0s"
    failures: int | None = None


class RawProcess(_Raw, frozen=True):
    """One entry of ``processes`` (or of the legacy ``pb_processes.json`` array)."""

    id: str
    script: str | None = None
    command: str | list[str] | None = None
    args: list[str] = []
    cwd: str = ""
    env: dict[str, str | int | float | bool] = {}  # numbers become strings, as in compose
    env_file: str = ""
    interpreter: str | None = None
    restart: Literal["always", "on-failure", "never"] = "always"
    max_retries: Annotated[int, msgspec.Meta(ge=-1)] = -1
    backoff: Duration = "1s"
    max_backoff: Duration = "30s"
    healthy_after: Duration = "10s"
    stop_signal: str = "SIGTERM"
    stop_timeout: Duration = "10s"
    autostart: bool = True
    dev_mode: bool = False
    watch_paths: list[str] | None = None
    watch_ignore: list[str] = []
    watch_debounce: Duration = "50ms"
    ready: RawProbe | None = None
    ready_timeout: Duration = "60s"
    health: RawProbe | None = None
    depends_on: list[str] | dict[str, str] = []
    replicas: Annotated[int, msgspec.Meta(ge=0)] | None = None
    port: int | None = None
    sockets: list[str] = []
    max_memory: str | Annotated[int, msgspec.Meta(gt=0)] | None = None


class RawApi(_Raw, frozen=True):
    """The ``[api]`` section."""

    listen: str | None = None
    token: str | None = None


class RawLogs(_Raw, frozen=True):
    """The ``[logs]`` section."""

    dir: str | None = None
    rotation: str | Annotated[int, msgspec.Meta(gt=0)] = "10 MB"
    retention: Annotated[int, msgspec.Meta(ge=0)] = 5
    buffer_lines: Annotated[int, msgspec.Meta(ge=0)] = 1000
    console: bool = True


class RawConfig(_Raw, frozen=True):
    """A whole TOML / YAML / JSON config file."""

    processes: list[RawProcess]
    api: RawApi = RawApi()
    logs: RawLogs = RawLogs()


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KIB|MIB|GIB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
}


def parse_size(value: str | int) -> int:
    """``"10 MB"`` -> 10_000_000 bytes; an int is a number of bytes.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f'invalid size {value!r}: use e.g. "10 MB", "512 KiB"')
    number = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "B").upper()]
    if number < 1:
        raise ValueError(f"size {value!r} is too small")
    return int(number)
