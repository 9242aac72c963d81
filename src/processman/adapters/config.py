"""Config files -> the domain ``Config``: discovery, parsing, templates, paths.

TOML, YAML and JSON documents decode into the Structs of ``domain.config_schema``;
the legacy ``pb_processes.json`` array and ``Procfile`` have their own small
readers. Every problem becomes one ``ConfigError(file, field, reason)``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import stat
import tomllib
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from processman.domain.config_schema import (
    RawApi,
    RawConfig,
    RawLogs,
    RawProbe,
    RawProcess,
    parse_size,
)
from processman.domain.dotenv import parse_dotenv
from processman.domain.durations import parse_duration
from processman.domain.errors import ConfigError, TemplateError
from processman.domain.model import (
    HEALTH_KINDS,
    READY_KINDS,
    ApiSettings,
    Condition,
    Config,
    LogSettings,
    Probe,
    ProbeKind,
    ProcessSpec,
    RestartPolicy,
    check_id,
    normalise_signal,
)
from processman.domain.ordering import find_cycle
from processman.domain.origin import TOKEN_VARIABLE, Origin, Source
from processman.domain.replicas import deferred, holds_deferred, member_ids, normalise_address
from processman.domain.templating import expand

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Files ``run`` and ``check`` look for, in order, when no CONFIG is given.
DISCOVERY_ORDER = (
    "processman.toml",
    "processman.yaml",
    "processman.yml",
    "processman.json",
    "pb_processes.json",
    "Procfile",
)


def _keys(struct: type[msgspec.Struct]) -> list[str]:
    return sorted(f.encode_name for f in msgspec.structs.fields(struct))


#: The keys a "did you mean" picks from, by the section of the unknown key.
_KEYS_OF = {"api": _keys(RawApi), "logs": _keys(RawLogs), "": _keys(RawConfig)}
_PROCESS_KEYS = _keys(RawProcess)
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\s*:\s*(.*)$")
_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):(\d{1,5})$")


def discover(directory: str | os.PathLike[str] = ".") -> Path:
    """The first config file of ``DISCOVERY_ORDER`` in ``directory``.

    Raises:
        ConfigError: when there is none.
    """
    base = Path(directory)
    for name in DISCOVERY_ORDER:
        candidate = base / name
        if candidate.is_file():
            return candidate
    raise ConfigError(
        str(base.resolve()), "", "no config file found; looked for " + ", ".join(DISCOVERY_ORDER)
    )


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    api_listen: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, validate and resolve a config file.

    Args:
        path: the file; None looks in the current directory (``DISCOVERY_ORDER``).
        api_listen: ``HOST:PORT`` that overrides ``api.listen`` (the CLI's ``--api``).
        environ: the environment templates read; the process environment by default.

    Raises:
        ConfigError: naming the file, the field and the reason.
    """
    file = Path(path) if path is not None else discover()
    env = dict(os.environ if environ is None else environ)
    return parse_config(_read_config(file), file, api_listen=api_listen, environ=env)


def _read_config(file: Path) -> bytes:
    name = str(file)
    try:
        return read_small_file(file)
    except FileNotFoundError:
        raise ConfigError(name, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(name, "", "is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read: {exc.strerror or exc}") from None


#: Config and dotenv files larger than this are refused (they are typos: /dev/zero, a log).
MAX_FILE_BYTES = 4 * 1024 * 1024


def read_small_file(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_FILE_BYTES``.

    Raises:
        OSError: with a ``strerror`` fit for a message (a FIFO or device would block or
            never end, so anything but a regular file is refused).
    """
    # O_NONBLOCK: opening a FIFO that no one writes to would otherwise wait forever
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as file:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES // 2**20} MiB")
    return data


def parse_config(
    data: bytes,
    file: Path,
    *,
    api_listen: str | None = None,
    environ: Mapping[str, str],
) -> Config:
    """Parse the bytes of a config file named ``file`` (its name picks the format)."""
    return _parse(data, file, api_listen, environ)[0]


def load_export_source(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Source:
    """``load_config``, with what ``export`` needs beyond the specs: each process's
    ``envFile`` and the template values taken from ``environ`` (SPEC §12).

    Raises:
        ConfigError: as ``load_config``.
    """
    file = Path(path) if path is not None else discover()
    data = _read_config(file)
    env = dict(os.environ if environ is None else environ)
    if TOKEN_VARIABLE in env:  # a template that asks for the token gets "" (and a warning)
        env[TOKEN_VARIABLE] = ""
    config, builder = _parse(data, file, None, env)
    return Source(
        config=msgspec.structs.replace(config, source=str(file.resolve())),
        origins=builder.origins,
        from_environment=tuple(
            (field, name)
            for field, name in builder.reads
            if field == "PORT" or field.startswith(("api.", "logs."))
        ),
    )


def _parse(
    data: bytes, file: Path, api_listen: str | None, environ: Mapping[str, str]
) -> tuple[Config, _Builder]:
    name = str(file)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ConfigError(name, "", "the file is empty")
    base_dir = str(file.resolve().parent)
    builder = _Builder(name, base_dir, environ)
    if file.name == "Procfile" or file.name.startswith("Procfile."):
        return builder.procfile(text), builder
    try:
        document = _parse_document(name, file.suffix.lower(), text)
    except RecursionError:  # tomllib, json and PyYAML all recurse per level of nesting
        raise ConfigError(name, "", "nested too deeply to be a config file") from None
    if isinstance(document, list) and file.suffix.lower() == ".json":
        processes = _convert(name, _legacy_unset(document), list[RawProcess], prefix="")
        return builder.build(RawConfig(processes=processes), api_listen, legacy=True), builder
    if not isinstance(document, dict):
        expected = "an object with a `processes` list"
        if file.suffix.lower() == ".json":
            expected += " (or, for pb_processes.json, a list of processes)"
        raise ConfigError(name, "", f"expected {expected}, got {_type_name(document)}")
    raw = _convert(name, document, RawConfig, prefix="")
    return builder.build(raw, api_listen, legacy=False), builder


def _parse_document(name: str, suffix: str, text: str) -> Any:
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(name, "", f"invalid TOML: {exc}") from None
    if suffix in (".yaml", ".yml"):
        import yaml  # only YAML configs pay for it

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(name, "", f"invalid YAML{where}: {problem}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                name, "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    raise ConfigError(
        name,
        "",
        f"unknown config format {suffix or '(no extension)'!r}: "
        "use .toml, .yaml, .yml, .json or a Procfile",
    )


def _legacy_unset(document: list[Any]) -> list[Any]:
    """The legacy array with what other writers put for "unset" left out: ``null`` for any
    key but ``id`` (a Go writer without ``omitempty`` writes it for an empty slice or
    map), and ``""`` for ``command`` or ``script`` (as for ``cwd``: a string field)."""
    return [
        {
            key: value
            for key, value in entry.items()
            if key == "id" or not (value is None or (value == "" and key in _EITHER))
        }
        if isinstance(entry, dict)
        else entry
        for entry in document
    ]


_EITHER = ("command", "script")


def _type_name(value: object) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)


_UNKNOWN = re.compile(r"^Object contains unknown field `(.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(.*)`$", re.DOTALL)
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _join(path: str, key: str) -> str:
    """``processes[0]`` + ``backof`` -> ``processes[0].backof``; odd keys are quoted."""
    if _SIMPLE_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _convert(name: str, document: Any, kind: Any, prefix: str) -> Any:
    try:
        return msgspec.convert(document, kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = message.rfind(" - at `$")
        path = (prefix + message[at + len(" - at `$") : -1]) if at >= 0 else prefix
        reason = message[:at] if at >= 0 else message
        path = path.lstrip(".")
        if unknown := _UNKNOWN.match(reason):
            key = unknown.group(1)
            path = _join(path, key)
            reason = f"unknown key {key!r}"
            import difflib  # only a mistyped key pays for it

            section = path.rpartition(".")[0] if "." in path else ""
            keys = _KEYS_OF.get(section, _PROCESS_KEYS)
            close = difflib.get_close_matches(key, keys, n=1)
            if close and key != close[0]:
                reason += f" (did you mean {close[0]!r}?)"
        elif missing := _MISSING.match(reason):
            key = missing.group(1)
            path = _join(path, key)
            reason = f"required key {key!r} is missing"
        elif path.endswith("[...]") and (key := _bad_value_key(document, path)) is not None:
            # msgspec does not say which key of a map holds the wrong value: find it
            path = _join(path[: -len("[...]")], key)
            got = _WRONG_TYPE.search(reason)
            reason = "expected a string, number or boolean"
            if got:
                reason += f", got {_KIND_NAMES.get(got.group(1), got.group(1))}"
        else:
            reason = reason.replace("`", "")
            if reason.startswith("Invalid enum value") and path.endswith(".restart"):
                reason += " (expected 'always', 'on-failure' or 'never')"
        raise ConfigError(name, path, reason) from None


_WRONG_TYPE = re.compile(r"got `(\w+)`")
_KIND_NAMES = {"array": "an array", "object": "a table", "null": "null"}
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _bad_value_key(document: Any, path: str) -> str | None:
    """The first key of the map at ``path`` (``processes[0].env[...]``) whose value is no
    string, number or boolean (env maps are the only maps of a config)."""
    node = document
    for name, index in _PATH_PART.findall("." + path[: -len("[...]")]):
        try:
            node = node[int(index)] if index else node[name]
        except (KeyError, IndexError, TypeError):
            return None
    if not isinstance(node, dict):
        return None
    return next((str(k) for k, v in node.items() if not isinstance(v, str | int | float)), None)


def _env_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class _Builder:
    """Turns raw file values into resolved ``ProcessSpec``s, one field at a time."""

    def __init__(self, file: str, base_dir: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.base_dir = base_dir
        self.environ = environ
        #: what ``export`` needs to know: the fields whose templates read the environment
        #: (and which name), and each process's ``Origin``
        self.field = ""
        self.reads: list[tuple[str, str]] = []
        self.api_reads: list[str] = []
        self.origins: dict[str, Origin] = {}

    def from_environment(self, name: str) -> str | None:
        """``environ[name]``, noted as read by the field being expanded."""
        value = self.environ.get(name)
        if value is not None:
            self.reads.append((self.field, name))
        return value

    def error(self, field: str, reason: str) -> ConfigError:
        return ConfigError(self.file, field, reason)

    def expand(self, text: str, field: str, lookup: Callable[[str], str | None]) -> str:
        self.field = field
        try:
            value = expand(text, lookup)
        except TemplateError as exc:
            raise self.error(field, exc.reason) from None
        if "\0" in value:
            raise self.error(field, "contains a NUL character, which no program can receive")
        return value

    def build(self, raw: RawConfig, api_listen: str | None, *, legacy: bool) -> Config:
        api = self.api(raw.api, api_listen)
        logs = self.logs(raw.logs)
        prefix = "" if legacy else "processes"
        specs: list[ProcessSpec] = []
        first_seen: dict[str, str] = {}
        for index, process in enumerate(raw.processes):
            field = f"{prefix}[{index}]"
            if process.id in first_seen:
                raise self.error(
                    f"{field}.id", f"duplicate id {process.id!r} (also {first_seen[process.id]})"
                )
            first_seen[process.id] = field
            specs.append(self.process(process, field, api))
        group_of: dict[str, str] = {spec.id: spec.id for spec in specs}  # instance -> group
        for index, spec in enumerate(specs):
            for member in member_ids(spec) if spec.replicas is not None else ():
                if member in group_of:
                    raise self.error(
                        f"{prefix}[{index}].replicas",
                        f"replica id {member!r} is taken by {first_seen.get(member, member)}",
                    )
                group_of[member] = spec.id
        for index, spec in enumerate(specs):
            for dep in spec.depends_on:
                if dep not in group_of:
                    known = ", ".join(sorted(group_of))
                    raise self.error(
                        f"{prefix}[{index}].dependsOn",
                        f"unknown process {dep!r} (known: {known})",
                    )
                if group_of[dep] == spec.id:
                    raise self.error(
                        f"{prefix}[{index}].dependsOn", f"{dep!r} is a replica of this process"
                    )
        # a cycle through replicas is one through their groups
        cycle = find_cycle(
            {spec.id: {group_of[dep]: None for dep in spec.depends_on} for spec in specs}
        )
        if cycle:
            field = first_seen[cycle[0]]
            raise self.error(f"{field}.dependsOn", "cycle " + " -> ".join(cycle))
        return Config(processes=tuple(specs), api=api, logs=logs, source=self.file)

    def api(self, raw: RawApi, override: str | None) -> ApiSettings:
        lookup = self.from_environment
        listen = override if override is not None else raw.listen
        field = "--api" if override is not None else "api.listen"
        if listen is not None:
            listen = self.expand(listen, field, lookup)
            if not _LISTEN.match(listen):
                raise self.error(field, f"expected HOST:PORT, got {listen!r}")
            if not 0 < int(listen.rsplit(":", 1)[1]) < 65536:
                raise self.error(field, f"port out of range in {listen!r}")
        token = self.expand(raw.token, "api.token", lookup) if raw.token is not None else None
        return ApiSettings(listen=listen or None, token=token or None)

    def logs(self, raw: RawLogs) -> LogSettings:
        directory = None
        if raw.dir:
            directory = self.path(
                self.expand(raw.dir, "logs.dir", self.from_environment), self.base_dir
            )
        try:
            rotation = parse_size(raw.rotation)
        except ValueError as exc:
            raise self.error("logs.rotation", str(exc)) from None
        return LogSettings(
            dir=directory,
            rotation_bytes=rotation,
            retention=raw.retention,
            buffer_lines=raw.buffer_lines,
            console=raw.console,
        )

    @staticmethod
    def path(value: str, base: str) -> str:
        return os.path.normpath(os.path.join(base, os.path.expanduser(value)))

    def process(self, raw: RawProcess, field: str, api: ApiSettings) -> ProcessSpec:
        try:
            check_id(raw.id)
        except ValueError as exc:
            raise self.error(f"{field}.id", str(exc)) from None
        if raw.script is not None and raw.command is not None:
            raise self.error(f"{field}.command", "give either `script` or `command`, not both")
        if raw.script is None and raw.command is None:
            raise self.error(field, "needs `script` or `command`")
        interpreter = raw.interpreter or None
        if interpreter is not None and raw.command is not None:
            raise self.error(
                f"{field}.interpreter", "`interpreter` applies to `script`, not to `command`"
            )

        if raw.port is not None and not 0 < raw.port < 65536:
            raise self.error(f"{field}.port", f"must be a port 1-65535, got {raw.port}")
        builtins = {
            "PROCESSMAN_ID": raw.id,
            "PROCESSMAN_GROUP": raw.id,
            "PROCESSMAN_API": api.base_url,
        }
        if raw.port is not None:
            builtins["PORT"] = str(raw.port)
        if raw.replicas is not None:  # filled in per replica (replicas.instance)
            builtins["PROCESSMAN_ID"] = deferred("PROCESSMAN_ID")
            builtins["PROCESSMAN_REPLICA"] = deferred("PROCESSMAN_REPLICA")
            if raw.port is not None:
                builtins["PORT"] = deferred("PORT")

        reads_before, api_reads_before = len(self.reads), len(self.api_reads)
        file_env: dict[str, str] = {}  # filled once cwd is known: cwd cannot use it

        def lookup(name: str) -> str | None:
            if name in builtins:
                if name == "PROCESSMAN_API":
                    self.api_reads.append(self.field)
                return builtins[name]
            if name in file_env:
                return file_env[name]
            return self.from_environment(name)

        cwd = self.base_dir
        if raw.cwd:
            cwd = self.path(self.expand(raw.cwd, f"{field}.cwd", lookup), self.base_dir)
        if raw.env_file:
            file_env.update(self.dotenv(Path(self.path(raw.env_file, cwd)), f"{field}.envFile"))

        env = dict(file_env)
        for key, value in raw.env.items():
            if not key or "=" in key or "\0" in key:
                raise self.error(f"{field}.env", f"invalid variable name {key!r}")
            env[key] = self.expand(_env_text(value), f"{field}.env.{key}", lookup)

        command: tuple[str, ...] | None = None
        if raw.command is not None:
            command = self.command(raw.command, f"{field}.command", lookup, cwd)
        args = tuple(
            self.expand(arg, f"{field}.args[{i}]", lookup) for i, arg in enumerate(raw.args)
        )
        script = self.path(raw.script, cwd) if raw.script is not None else None
        if interpreter is not None and interpreter != "auto" and "/" in interpreter:
            interpreter = self.path(interpreter, cwd)

        seconds: dict[str, Any] = {
            name: self.duration(getattr(raw, name), f"{field}.{camel}")
            for name, camel in (
                ("backoff", "backoff"),
                ("max_backoff", "maxBackoff"),
                ("healthy_after", "healthyAfter"),
                ("stop_timeout", "stopTimeout"),
                ("watch_debounce", "watchDebounce"),
                ("ready_timeout", "readyTimeout"),
            )
        }
        if seconds["max_backoff"] < seconds["backoff"]:
            raise self.error(
                f"{field}.maxBackoff", f"{raw.max_backoff!r} is below backoff {raw.backoff!r}"
            )
        try:
            stop_signal = normalise_signal(raw.stop_signal)
        except ValueError as exc:
            raise self.error(f"{field}.stopSignal", str(exc)) from None

        watch_paths: tuple[str, ...] = ()
        if raw.watch_paths is not None:
            watch_paths = tuple(
                self.path(self.expand(p, f"{field}.watchPaths[{i}]", lookup), cwd)
                for i, p in enumerate(raw.watch_paths)
            )
        elif raw.dev_mode:
            watch_paths = (cwd,)

        ready = self.probe(raw.ready, f"{field}.ready", lookup, cwd, health=False)
        health = self.probe(raw.health, f"{field}.health", lookup, cwd, health=True)
        sockets = tuple(
            self.socket(address, f"{field}.sockets[{i}]", lookup, cwd)
            for i, address in enumerate(raw.sockets)
        )
        max_memory = None
        if raw.max_memory is not None:
            try:
                max_memory = parse_size(raw.max_memory)
            except ValueError as exc:
                raise self.error(f"{field}.maxMemory", str(exc)) from None
        self.origins[raw.id] = Origin(
            field=field,
            env_file=self.path(raw.env_file, cwd) if raw.env_file else None,
            env_keys=tuple(raw.env),
            env_file_keys=tuple(file_env),
            from_environment=tuple(self.reads[reads_before:]),
            uses_api=tuple(dict.fromkeys(self.api_reads[api_reads_before:])),
        )
        return ProcessSpec(
            max_memory=max_memory,
            replicas=raw.replicas,
            port=raw.port,
            sockets=sockets,
            ready=ready,
            health=health,
            depends_on=self.depends_on(raw.depends_on, f"{field}.dependsOn", raw.id),
            id=raw.id,
            cwd=cwd,
            script=script,
            command=command,
            args=args,
            env=env,
            interpreter=interpreter,
            restart=RestartPolicy(raw.restart),
            max_retries=raw.max_retries,
            stop_signal=stop_signal,
            autostart=raw.autostart,
            dev_mode=raw.dev_mode,
            watch_paths=watch_paths,
            watch_ignore=tuple(raw.watch_ignore),
            **seconds,
        )

    def command(
        self,
        value: str | list[str],
        field: str,
        lookup: Callable[[str], str | None],
        cwd: str,
    ) -> tuple[str, ...]:
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise self.error(field, f"cannot split {value!r}: {exc}") from None
        else:
            words = list(value)
        argv = [self.expand(word, field, lookup) for word in words]
        if not argv or not argv[0]:
            raise self.error(field, "the command is empty")
        if "/" in argv[0]:
            argv[0] = self.path(argv[0], cwd)
        return tuple(argv)

    def probe(
        self,
        raw: RawProbe | None,
        field: str,
        lookup: Callable[[str], str | None],
        cwd: str,
        *,
        health: bool,
    ) -> Probe | None:
        """A ``ready`` or ``health`` table, checked: one kind that fits, a usable target."""
        if raw is None:
            return None
        given = [
            (kind, value)
            for kind, value in (
                (ProbeKind.HTTP, raw.http),
                (ProbeKind.TCP, raw.tcp),
                (ProbeKind.EXEC, raw.exec),
                (ProbeKind.LOG_LINE, raw.log_line),
                (ProbeKind.NOTIFY, raw.notify),
                (ProbeKind.WATCHDOG, raw.watchdog),
            )
            if value is not None
        ]
        allowed = HEALTH_KINDS if health else READY_KINDS
        names = ", ".join(k.value for k in ProbeKind if k in allowed)
        if not given:
            raise self.error(field, f"no probe: give one of {names}")
        if len(given) > 1:
            both = " and ".join(k.value for k, _ in given)
            raise self.error(field, f"give one probe, not {both}")
        kind, value = given[0]
        where = f"{field}.{kind.value}"
        if kind not in allowed:
            other = "ready" if health else "health"
            raise self.error(where, f"a {kind.value} probe is for {other} only (here: {names})")
        target = ""
        command: tuple[str, ...] = ()
        if kind is ProbeKind.HTTP:
            assert isinstance(value, str)
            target = self.expand(value, where, lookup)
            parts = urllib.parse.urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.error(where, f"expected an http:// or https:// URL, got {target!r}")
        elif kind is ProbeKind.TCP:
            assert isinstance(value, str)
            target = self.expand(value, where, lookup)
            match = _LISTEN.match(target)
            if not match or not 0 < int(match.group(2)) < 65536:
                raise self.error(where, f"expected HOST:PORT (a port 1-65535), got {target!r}")
        elif kind is ProbeKind.EXEC:
            assert isinstance(value, (str, list))
            command = self.command(value, where, lookup, cwd)
        elif kind is ProbeKind.LOG_LINE:
            assert isinstance(value, str)
            try:
                re.compile(value)
            except re.error as exc:
                raise self.error(where, f"invalid regular expression {value!r}: {exc}") from None
            target = value
        elif kind is ProbeKind.NOTIFY and value is not True:
            raise self.error(where, "notify = false is no probe: leave ready out instead")
        period = raw.period
        if kind is ProbeKind.WATCHDOG:
            assert isinstance(value, (str, int))
            if raw.period is not None:
                raise self.error(f"{field}.period", "a watchdog's period is its own value")
            period = value
        seconds = {
            name: self.duration(given_value, f"{field}.{camel}")
            for name, camel, given_value in (
                (
                    "period",
                    "period" if kind is not ProbeKind.WATCHDOG else kind.value,
                    period if period is not None else ("10s" if health else "1s"),
                ),
                ("timeout", "timeout", raw.timeout),
                ("initial_delay", "initialDelay", raw.initial_delay),
            )
        }
        for name, camel in (("period", "period"), ("timeout", "timeout")):
            if seconds[name] <= 0:
                key = kind.value if name == "period" and kind is ProbeKind.WATCHDOG else camel
                raise self.error(f"{field}.{key}", "must be above 0s")
        if raw.failures is not None and not health:
            raise self.error(f"{field}.failures", "failures applies to health probes only")
        failures = (
            raw.failures if raw.failures is not None else (1 if kind is ProbeKind.WATCHDOG else 3)
        )
        if failures < 1:
            raise self.error(f"{field}.failures", f"must be 1 or more, got {failures}")
        return Probe(kind=kind, target=target, command=command, failures=failures, **seconds)

    def socket(
        self, address: str, field: str, lookup: Callable[[str], str | None], cwd: str
    ) -> str:
        """``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:PATH`` (made absolute), checked."""
        value = self.expand(address, field, lookup)
        if holds_deferred(value):
            raise self.error(
                field, "a socket is shared by every replica: it cannot use a per-replica value"
            )
        try:
            return normalise_address(value, cwd)
        except ValueError as exc:
            raise self.error(field, str(exc)) from None

    def depends_on(
        self, raw: list[str] | dict[str, str], field: str, own_id: str
    ) -> dict[str, Condition]:
        """``["db"]`` or ``{db = "ready"}``; the ids are checked once every process is known."""
        items = [(dep, "ready") for dep in raw] if isinstance(raw, list) else list(raw.items())
        resolved: dict[str, Condition] = {}
        for dep, condition in items:
            where = f"{field}[{dep!r}]" if isinstance(raw, list) else _join(field, dep)
            if dep == own_id:
                raise self.error(field, f"{own_id!r} cannot depend on itself")
            try:
                resolved[dep] = Condition(condition)
            except ValueError:
                known = ", ".join(repr(c.value) for c in Condition)
                raise self.error(
                    where, f"unknown condition {condition!r} (expected {known})"
                ) from None
        return resolved

    def duration(self, value: str | int, field: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(field, str(exc)) from None

    def procfile(self, text: str) -> Config:
        # As honcho and foreman do: the .env beside the Procfile goes to every process,
        # and PORT is 5000, 5100, ... in file order, from .env's or the environment's PORT
        dotenv = self.procfile_dotenv()
        self.field = "PORT"
        base = dotenv.get("PORT") or self.from_environment("PORT") or "5000"
        if not base.isascii() or not base.isdigit():
            where = ".env" if "PORT" in dotenv else "the environment"
            raise self.error("", f"PORT in {where} must be a port number, got {base!r}")
        specs: list[ProcessSpec] = []
        seen: dict[str, int] = {}
        for number, raw_line in enumerate(text.splitlines(), start=1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            field = f"line {number}"
            match = _PROCFILE_LINE.match(line)
            if not match:
                raise self.error(field, f"expected `name: command`, got {line!r}")
            name, command = match.group(1), match.group(2).strip()
            if not command:
                raise self.error(field, f"process {name!r} has no command")
            if name in seen:
                raise self.error(field, f"duplicate id {name!r} (also line {seen[name]})")
            seen[name] = number
            self.origins[name] = Origin(field=field)
            port = str(int(base) + 100 * len(specs))
            specs.append(
                ProcessSpec(
                    id=name,
                    cwd=self.base_dir,
                    command=("/bin/sh", "-c", command),
                    env={**dotenv, "PORT": port},
                )
            )
        if not specs:
            raise self.error("", "no processes: expected `name: command` lines")
        return Config(processes=tuple(specs), source=self.file)

    def procfile_dotenv(self) -> dict[str, str]:
        path = Path(self.base_dir, ".env")
        return self.dotenv(path, "") if path.exists() else {}

    def dotenv(self, path: Path, field: str) -> dict[str, str]:
        try:
            return parse_dotenv(read_small_file(path).decode("utf-8"))
        except OSError as exc:
            raise self.error(field, f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.error(field, f"{path}: {exc}") from None
