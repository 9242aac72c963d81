"""Exports (SPEC §12): a config rendered for systemd, Kubernetes or a Procfile, as pure
functions of the resolved specs and what the loader recorded of their origin.

Every renderer returns what it would write and a warning for each thing the target
cannot express, so that nothing is dropped silently. Nothing of the exporting shell's
environment is written unless the config took it through a template, and each such
value is named in a warning; ``PROCESSMAN_TOKEN`` is never written.
"""

from __future__ import annotations

import math
import posixpath
import re
import shlex
from typing import TYPE_CHECKING, Any

import msgspec

from processman.domain.errors import InterpreterNotFoundError
from processman.domain.interpreter import is_python, resolve_argv
from processman.domain.model import Condition, ProbeKind, ProcessSpec, RestartPolicy
from processman.domain.origin import TOKEN_VARIABLE, Origin, Source
from processman.domain.replicas import (
    deferred,
    holds_deferred,
    instance,
    member_ids,
    parse_address,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from processman.domain.model import Config, Probe


_DEFAULTS = ProcessSpec(id="x", cwd="/", command=("x",))


class Export(msgspec.Struct, kw_only=True):
    """What an export writes: file names and texts (or YAML documents), and warnings."""

    files: dict[str, str] = msgspec.field(default_factory=dict)
    documents: list[dict[str, Any]] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)


class ExportError(ValueError):
    """A config that this format cannot be written for at all (one line for the user)."""


def common_warnings(source: Source, target: str) -> list[str]:
    """What every format says: values the templates took from the exporting environment,
    a token that is left out, and the API's URL that the target has no API for."""
    warnings = [  # a Procfile's PORT (the api and logs sections are not exported)
        f"{field}: ${{{name}}} was taken from this shell's environment and is written as its value"
        for field, name in source.from_environment
        if field == "PORT"
    ]
    for spec in source.config.processes:
        before = len(warnings)
        _warn_of_origin(source, spec, target, warnings)
        _name(warnings, before, spec)
    return warnings


def _name(warnings: list[str], since: int, spec: ProcessSpec) -> None:
    """Put the process's id before each warning from ``since`` on."""
    warnings[since:] = [f"{spec.id}: {warning}" for warning in warnings[since:]]


def _warn_of_origin(source: Source, spec: ProcessSpec, target: str, warnings: list[str]) -> None:
    """The warnings every format gives of one process."""
    origin = source.origin(spec)
    for field, name in origin.from_environment:
        if name != TOKEN_VARIABLE:
            warnings.append(
                f"{field}: ${{{name}}} was taken from this shell's environment and is "
                "written as its value"
            )
        elif field != f"{origin.field}.env.{TOKEN_VARIABLE}":
            warnings.append(
                f"{field}: ${{{TOKEN_VARIABLE}}} is written empty (an export never holds the token)"
            )
    if TOKEN_VARIABLE in spec.env:
        warnings.append(
            f"{origin.field}.env.{TOKEN_VARIABLE}: left out (an export never holds the token)"
        )
    warnings += [
        f"{field}: ${{PROCESSMAN_API}} has no API under {target}: written as "
        f"{source.config.api.base_url or 'empty'}"
        for field in origin.uses_api
    ]
    if spec.dev_mode:
        warnings.append(f"{origin.field}.devMode: {target} does not restart on file changes")


def _argv(
    spec: ProcessSpec, exists: Callable[[str], bool], which: Callable[[str], str | None]
) -> tuple[tuple[str, ...], str | None]:
    """The argv of ``spec`` and a warning when its interpreter is not found here."""
    try:
        argv, _ = resolve_argv(spec, exists=exists, which=which)
    except InterpreterNotFoundError as exc:
        fallback = "python3" if is_python(spec) else None
        assert spec.script is not None
        argv = (*((fallback,) if fallback else ()), spec.script, *spec.args)
        return argv, f"{exc.reason}: written as {shlex.join(argv)}"
    if spec.command is not None and "/" not in argv[0]:
        found = which(argv[0])
        if found is None:
            return argv, f"program {argv[0]!r} is not on this PATH: written as it is"
        argv = (found, *argv[1:])
    return argv, None


# --- systemd -----------------------------------------------------------------------------

# a word that needs no quotes (the private-use characters are the replica markers)
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9_@%+=:,./\ue000\ue001-]+$")


def systemd_seconds(seconds: float) -> str:
    """``0``, ``250ms``, ``1.5s``, ``90s``: a time span as systemd reads it (to the ms)."""
    milliseconds = round(seconds * 1000)
    if milliseconds == 0:
        return "0"
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    whole, rest = divmod(milliseconds, 1000)  # digits, never an exponent (1e+06s)
    return f"{whole}.{rest:03d}".rstrip("0").rstrip(".") + "s"


def _specifiers(text: str) -> str:
    """``%`` written ``%%``: systemd expands specifiers in nearly every setting."""
    return text.replace("%", "%%")


def _exec_word(word: str) -> str:
    """One argument of ``ExecStart=``: ``$`` and ``%`` taken literally, quoted if needed."""
    word = _specifiers(word).replace("$", "$$")
    if word and _PLAIN_WORD.match(word) and word != ";":
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _quoted(text: str) -> str:
    """A double-quoted systemd string (``Environment=``) with ``%`` taken literally."""
    escaped = _specifiers(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _replica_specifiers(text: str, group: str, *, exec_line: bool) -> str:
    """A template unit's value: a replica's id and index as ``%i`` specifiers; ``PORT`` as
    ``${PORT}``, which only command lines expand (elsewhere the caller writes it per
    instance)."""
    text = text.replace(deferred("PROCESSMAN_ID"), f"{group}-%i")
    text = text.replace(deferred("PROCESSMAN_REPLICA"), "%i")
    if exec_line:
        text = text.replace(deferred("PORT"), "${PORT}")
    return text


def unit_name(spec: ProcessSpec, replica: int | str | None = None) -> str:
    """``processman-web.service``; ``processman-web@.service`` (a template) or
    ``processman-web@0.service`` for replicas."""
    if spec.replicas is None:
        return f"processman-{spec.id}.service"
    return f"processman-{spec.id}@{'' if replica is None else replica}.service"


def _units_of(config: Config, process_id: str) -> list[str]:
    """The units a dependency on ``process_id`` (a process, a group or a replica) names."""
    for spec in config.processes:
        if spec.id == process_id:
            if spec.replicas is None:
                return [unit_name(spec)]
            return [unit_name(spec, index) for index in range(spec.replicas)]
        if spec.replicas is not None and process_id in member_ids(spec):
            return [unit_name(spec, int(process_id.rsplit("-", 1)[1]))]
    return []


def _waited_for(config: Config) -> dict[str, Condition]:
    """The processes others wait to complete or succeed: they become ``Type=oneshot``."""
    result: dict[str, Condition] = {}
    group_of = {member: spec.id for spec in config.processes for member in member_ids(spec)}
    for spec in config.processes:
        for dep, condition in spec.depends_on.items():
            if condition in (Condition.COMPLETED, Condition.SUCCEEDED):
                result[group_of.get(dep, dep)] = condition
    return result


def systemd(
    source: Source,
    *,
    exists: Callable[[str], bool],
    which: Callable[[str], str | None],
    python: str | None = None,
) -> Export:
    """One unit per process (a template for replicas), ``.socket`` units for ``sockets``,
    per-instance drop-ins for what differs per replica, and ``processman.target``.

    ``python`` runs the wait of a ``tcp`` or ``http`` ready probe (``ExecStartPost=``);
    without it such a probe is a warning."""
    config = source.config
    export = Export(warnings=common_warnings(source, "systemd"))
    oneshots = _waited_for(config)
    wanted: list[str] = []
    for spec in config.processes:
        before = len(export.warnings)
        wanted += _service_unit(source, spec, oneshots, export, exists, which, python)
        _name(export.warnings, before, spec)
    export.files["processman.target"] = _unit_text(
        f"processman.target: written by `processman export systemd` from {config.source}",
        [
            (
                "Unit",
                [("Description", f"processman: the processes of {config.source}")]
                + ([("Wants", " ".join(wanted))] if wanted else []),
            ),
            ("Install", [("WantedBy", "default.target")]),
        ],
    )
    return export


def _service_unit(
    source: Source,
    spec: ProcessSpec,
    oneshots: dict[str, Condition],
    export: Export,
    exists: Callable[[str], bool],
    which: Callable[[str], str | None],
    python: str | None,
) -> list[str]:
    """Write the units of ``spec`` into ``export``; return those the target wants."""
    config = source.config
    origin = source.origin(spec)
    field = origin.field
    group = spec.replicas is not None
    lines: list[tuple[str, str]] = []  # the [Service] section
    per_instance: list[tuple[str, str]] = []  # settings a template writes per replica
    argv, problem = _argv(spec, exists, which)
    if problem:
        export.warnings.append(f"{field}: {problem}")

    def setting(key: str, value: str, *, exec_line: bool = False) -> None:
        if holds_deferred(value):
            value = _replica_specifiers(value, spec.id, exec_line=exec_line)
        if holds_deferred(value):
            per_instance.append((key, value))
        else:
            lines.append((key, value))

    oneshot = spec.id in oneshots
    notify = spec.ready is not None and spec.ready.kind is ProbeKind.NOTIFY
    unit_type = "oneshot" if oneshot else "notify" if notify else "exec"
    if oneshot and notify:
        export.warnings.append(
            f"{field}.ready.notify: others wait for it to complete, so it is written "
            "Type=oneshot, which waits for the exit, not READY=1"
        )
    lines.append(("Type", unit_type))
    if spec.notifies:
        lines.append(("NotifyAccess", "all"))  # processman takes READY=1 from the tree
    setting("ExecStart", " ".join(_exec_word(word) for word in argv), exec_line=True)
    setting("WorkingDirectory", _specifiers(spec.cwd))
    if origin.env_file is not None:
        lines.append(("EnvironmentFile", _specifiers(origin.env_file)))
    for key, value in _child_environment(spec, origin).items():
        setting("Environment", _quoted(f"{key}={value}"))
    for key in origin.env_keys:
        if key in origin.env_file_keys:
            export.warnings.append(
                f"{field}.env.{key}: also set by envFile; under systemd EnvironmentFile= "
                "wins over Environment=, so the file's value will be used"
            )
    restart = {
        RestartPolicy.ALWAYS: "always",
        RestartPolicy.ON_FAILURE: "on-failure",
        RestartPolicy.NEVER: "no",
    }[spec.restart]
    if oneshot and restart == "always":
        export.warnings.append(
            f"{field}.restart: others wait for it to complete, and a Type=oneshot unit "
            'cannot be Restart=always: written as "on-failure"'
        )
        restart = "on-failure"
    lines.append(("Restart", restart))
    if oneshot:
        lines += [("RemainAfterExit", "yes"), ("TimeoutStartSec", "infinity")]
    lines.append(("RestartSec", systemd_seconds(spec.backoff)))
    if spec.backoff > 0 and spec.max_backoff > spec.backoff:
        steps = math.ceil(math.log2(spec.max_backoff / spec.backoff))
        lines.append(("RestartSteps", str(steps)))
        lines.append(("RestartMaxDelaySec", systemd_seconds(spec.max_backoff)))
    lines += [
        ("KillMode", "control-group"),
        ("KillSignal", spec.stop_signal),
        ("TimeoutStopSec", systemd_seconds(spec.stop_timeout)),
    ]
    _systemd_probes(spec, field, setting, lines, export.warnings, python)
    if spec.max_memory is not None:
        lines.append(("MemoryMax", str(spec.max_memory)))
    socket_unit = f"processman-{spec.id}.socket" if spec.sockets else None
    if socket_unit is not None:
        lines.append(("Sockets", socket_unit))
        export.files[socket_unit] = _socket_unit(spec, field, export.warnings)

    unit_section = [
        ("Description", f"processman: {spec.id}" + ("-%i" if group else "")),
        ("PartOf", "processman.target"),
    ]
    requires: list[str] = [socket_unit] if socket_unit else []
    after: list[str] = list(requires)
    wants: list[str] = []
    for dep, condition in spec.depends_on.items():
        units = _units_of(config, dep)
        (wants if condition is Condition.COMPLETED else requires).extend(units)
        after.extend(units)
        if condition is Condition.READY:
            target = next(s for s in config.processes if dep in member_ids(s) or s.id == dep)
            waits = {ProbeKind.NOTIFY, ProbeKind.EXEC}
            if python:
                waits |= {ProbeKind.TCP, ProbeKind.HTTP}
            if target.ready is not None and target.ready.kind not in waits:
                export.warnings.append(
                    f"{field}.dependsOn.{dep}: systemd orders it after {dep} is spawned; "
                    f"it cannot wait for {dep}'s {target.ready.kind} probe"
                )
    for key, units in (("Requires", requires), ("Wants", wants), ("After", after)):
        if units:
            unit_section.append((key, " ".join(units)))
    if spec.max_retries >= 0:
        unit_section += _start_limit(spec)
    else:
        unit_section.append(("StartLimitIntervalSec", "0"))
    text = _unit_text(
        f"{unit_name(spec)}: written by `processman export systemd` from {config.source}",
        [
            ("Unit", unit_section),
            ("Service", lines),
            ("Install", [("WantedBy", "processman.target")]),
        ],
    )
    export.files[unit_name(spec)] = text
    if group:
        for index in range(spec.replicas or 0):
            resolved = instance(spec, index)
            values = {
                deferred("PROCESSMAN_ID"): resolved.id,
                deferred("PROCESSMAN_REPLICA"): str(index),
                deferred("PORT"): str(spec.port + index) if spec.port is not None else "",
            }
            drop_in = (
                [("Environment", _quoted(f"PORT={values[deferred('PORT')]}"))]
                if spec.port is not None
                else []
            )
            for key, value in per_instance:
                for marker, filled in values.items():
                    value = value.replace(marker, filled)
                drop_in.append((key, value))
            if drop_in:
                export.files[f"{unit_name(spec, index)}.d/processman.conf"] = _unit_text(
                    f"what replica {index} of {spec.id} has of its own",
                    [("Service", drop_in)],
                )
    if spec.autostart:
        return _units_of(config, spec.id)
    if not group or spec.replicas:
        export.warnings.append(
            f"{field}.autostart: false: processman.target does not want it; "
            f"start it with systemctl start {unit_name(spec, 0 if group else None)}"
        )
    return []


def _own_env(spec: ProcessSpec, origin: Origin) -> dict[str, str]:
    """``spec.env`` less the token and what only ``envFile`` set (the target reads that
    file itself)."""
    return {
        key: value
        for key, value in spec.env.items()
        if key != TOKEN_VARIABLE and (origin.env_file is None or key in origin.env_keys)
    }


def _child_environment(spec: ProcessSpec, origin: Origin) -> dict[str, str]:
    """What processman would add to a child's environment, less the ``envFile``'s values
    (written as ``EnvironmentFile=``) and the token."""
    env = _own_env(spec, origin)
    env["PROCESSMAN_ID"] = deferred("PROCESSMAN_ID") if spec.replicas is not None else spec.id
    env["PROCESSMAN_GROUP"] = spec.id
    if spec.replicas is not None:
        env["PROCESSMAN_REPLICA"] = deferred("PROCESSMAN_REPLICA")
    if spec.port is not None and spec.replicas is None:
        env["PORT"] = str(spec.port)
    if is_python(spec) and "PYTHONUNBUFFERED" not in spec.env:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def _start_limit(spec: ProcessSpec) -> list[tuple[str, str]]:
    """``maxRetries`` as a start limit: ``maxRetries + 1`` starts within the time that
    many quick failures take (each run shorter than ``healthyAfter``, then its backoff)."""
    from processman.domain.backoff import backoff_delay

    window = (spec.max_retries + 1) * spec.healthy_after + sum(
        backoff_delay(k, spec.backoff, spec.max_backoff) for k in range(1, spec.max_retries + 1)
    )
    return [
        ("StartLimitIntervalSec", systemd_seconds(max(window, 1.0))),
        ("StartLimitBurst", str(spec.max_retries + 1)),
    ]


def _systemd_probes(
    spec: ProcessSpec,
    field: str,
    setting: Callable[..., None],
    lines: list[tuple[str, str]],
    warnings: list[str],
    python: str | None,
) -> None:
    ready, health = spec.ready, spec.health
    if ready is not None and ready.kind is ProbeKind.EXEC:
        # the start job ends once the probe passes: units After= this one wait for it
        check = " ".join(shlex.quote(word) for word in ready.command)
        loop = f"until {check}; do sleep {ready.period:g}; done"
        if ready.initial_delay:
            loop = f"sleep {ready.initial_delay:g}; {loop}"
        setting("ExecStartPost", f"/bin/sh -c {_exec_word(loop)}", exec_line=True)
        lines.append(("TimeoutStartSec", systemd_seconds(spec.ready_timeout)))
    elif ready is not None and ready.kind is ProbeKind.NOTIFY:
        lines.append(("TimeoutStartSec", systemd_seconds(spec.ready_timeout)))
    elif ready is not None and ready.kind in (ProbeKind.TCP, ProbeKind.HTTP) and python:
        setting(
            "ExecStartPost",
            f"{_exec_word(python)} -c {_exec_word(_wait_program(ready))}",
            exec_line=True,
        )
        lines.append(("TimeoutStartSec", systemd_seconds(spec.ready_timeout)))
    elif ready is not None:
        warnings.append(
            f"{field}.ready.{ready.kind}: systemd has no {ready.kind} readiness probe; "
            "the unit counts as started once spawned"
        )
    if health is not None and health.kind is ProbeKind.WATCHDOG:
        lines.append(("WatchdogSec", systemd_seconds(health.period)))
        if health.failures != 1:
            warnings.append(
                f"{field}.health.failures: systemd's watchdog acts on the first missed ping"
            )
    elif health is not None:
        warnings.append(
            f"{field}.health.{health.kind}: systemd has no {health.kind} health check; "
            "only a watchdog maps (WatchdogSec=)"
        )


def _wait_program(probe: Probe) -> str:
    """A Python program that returns once a tcp or http probe passes (``ExecStartPost=``:
    the unit's start, and so every unit ordered after it, waits for it)."""
    if probe.kind is ProbeKind.TCP:
        imports = "import socket, time"
        check = [
            f"host, _, port = {probe.target!r}.rpartition(':')",
            "address = (host.strip('[]'), int(port))",
            f"socket.create_connection(address, {probe.timeout!r}).close()",
            "break",
        ]
    else:
        imports = "import time, urllib.request"
        check = [
            f"answer = urllib.request.urlopen({probe.target!r}, timeout={probe.timeout!r})",
            "if answer.status < 400:",
            "    break",
        ]
    return "\n".join(
        [imports, f"time.sleep({probe.initial_delay!r})", "while True:", "    try:"]
        + [f"        {line}" for line in check]
        + ["    except Exception:", "        pass", f"    time.sleep({probe.period!r})"]
    )


def _socket_unit(spec: ProcessSpec, field: str, warnings: list[str]) -> str:
    listens = [("ListenStream", _specifiers(_listen_of(address))) for address in spec.sockets]
    if len(spec.sockets) == 1:
        names = [("FileDescriptorName", spec.sockets[0].replace(":", "_"))]
    else:
        names = [("FileDescriptorName", spec.id)]
        warnings.append(
            f"{field}.sockets: one systemd socket unit names all its descriptors alike: "
            f"LISTEN_FDNAMES is {spec.id} for each, not its address"
        )
    service = [("Service", unit_name(spec, 0))] if spec.replicas is not None else []
    return _unit_text(
        f"processman-{spec.id}.socket: the listening sockets processman hands {spec.id}",
        [
            (
                "Unit",
                [
                    ("Description", f"processman: sockets of {spec.id}"),
                    ("PartOf", "processman.target"),
                ],
            ),
            ("Socket", listens + names + service),
            ("Install", [("WantedBy", "processman.target")]),
        ],
    )


def _listen_of(address: str) -> str:
    parsed = parse_address(address)
    return parsed.path if parsed.path else parsed.text


def _unit_text(comment: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    out = [f"# {comment}"]
    for name, entries in sections:
        out.append(f"\n[{name}]")
        out += [f"{key}={value}" for key, value in entries]
    return "\n".join(out) + "\n"


# --- Kubernetes --------------------------------------------------------------------------

_NAME_OK = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def kubernetes_name(process_id: str) -> str:
    """A DNS-1035 label for ``process_id``: lowercase, ``_`` and ``.`` as ``-``, a leading
    letter."""
    name = re.sub(r"[^a-z0-9-]", "-", process_id.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "p-" + name
    return name[:63].rstrip("-")


def _seconds(seconds: float, minimum: int = 1) -> int:
    return max(minimum, math.ceil(seconds))


def kubernetes(source: Source, *, image: str, exists: Callable[[str], bool]) -> Export:
    """A ``Deployment`` per process, a ``Service`` for one with ``port`` or TCP ``sockets``;
    a dependency is an init container that waits for its Service."""
    config = source.config
    export = Export(warnings=common_warnings(source, "Kubernetes"))
    names: dict[str, str] = {}
    for spec in config.processes:
        name = kubernetes_name(spec.id)
        if name in names.values():
            taken = next(k for k, v in names.items() if v == name)
            raise ExportError(
                f"{source.origin(spec).field}.id: {spec.id!r} and {taken!r} are both "
                f"{name!r} in Kubernetes (names are lowercase, with '-' for '_' and '.')"
            )
        names[spec.id] = name
        if name != spec.id:
            export.warnings.append(
                f"{spec.id}: {source.origin(spec).field}.id: named {name!r} in Kubernetes "
                "(lowercase letters, digits and '-')"
            )
    service_ports = {spec.id: _service_ports(spec) for spec in config.processes}
    for spec in config.processes:
        before = len(export.warnings)
        _deployment(source, spec, image, names, service_ports, export, exists)
        _name(export.warnings, before, spec)
    return export


def _deployment(
    source: Source,
    spec: ProcessSpec,
    image: str,
    names: dict[str, str],
    service_ports: dict[str, list[int]],
    export: Export,
    exists: Callable[[str], bool],
) -> None:
    """Add the Deployment of ``spec`` (and its Service) to ``export``."""
    config = source.config
    origin = source.origin(spec)
    field = origin.field
    name = names[spec.id]
    warn = export.warnings.append
    argv, problem = _argv(spec, exists, lambda program: program)  # the image's PATH decides
    if problem:
        warn(f"{field}: {problem}")
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": [_k8s_text(word, spec.port) for word in argv],
        "workingDir": spec.cwd,
    }
    env = _k8s_env(spec, origin)
    container["env"] = env
    if origin.env_file is not None:
        container["envFrom"] = [{"secretRef": {"name": f"{name}-env"}}]
        warn(
            f"{field}.envFile: read from the Secret {name}-env: create it with "
            f"kubectl create secret generic {name}-env --from-env-file={origin.env_file}"
        )
    ports = service_ports[spec.id]
    if ports:
        container["ports"] = [{"containerPort": port, "protocol": "TCP"} for port in ports]
    probes = _k8s_probes(spec, field, warn)
    container.update(probes)
    if spec.max_memory is not None:
        container["resources"] = {"limits": {"memory": _quantity(spec.max_memory)}}
    if spec.stop_signal != "SIGTERM":
        warn(f"{field}.stopSignal: Kubernetes stops a container with SIGTERM")
    for key in ("backoff", "max_backoff", "max_retries", "healthy_after"):
        if getattr(spec, key) != getattr(_DEFAULTS, key):
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), key)
            warn(f"{field}.{camel}: Kubernetes restarts with its own backoff (10s to 5min)")
    if spec.restart is not RestartPolicy.ALWAYS:
        warn(
            f"{field}.restart: {spec.restart}: a Deployment always restarts its pods "
            "(a Job runs to completion)"
        )
    if spec.sockets:
        warn(
            f"{field}.sockets: Kubernetes cannot hand a listening socket to a container: "
            "the program must listen itself (not on fd 3)"
        )
    if spec.replicas is not None and _uses(spec, "PROCESSMAN_REPLICA"):
        warn(f"{field}: PROCESSMAN_REPLICA has no per-pod value in a Deployment: every pod gets 0")
    if spec.port is not None and spec.replicas:
        warn(
            f"{field}.port: every pod gets PORT={spec.port} (each has an address of "
            "its own), not port plus its replica index"
        )
    init = []
    for dep, condition in spec.depends_on.items():
        group = next(s for s in config.processes if dep in member_ids(s) or s.id == dep)
        dep_ports = service_ports[group.id]
        if condition in (Condition.COMPLETED, Condition.SUCCEEDED):
            warn(
                f"{field}.dependsOn.{dep}: Kubernetes cannot wait for a pod to "
                f"{'complete' if condition is Condition.COMPLETED else 'succeed'} "
                "(run it as a Job)"
            )
            continue
        if not dep_ports:
            warn(
                f"{field}.dependsOn.{dep}: {dep} has no Service (no port or TCP socket) "
                "to wait for: not waited for"
            )
            continue
        service = names[group.id]
        init.append(
            {
                "name": f"wait-for-{service}"[:63].rstrip("-"),
                "image": "busybox:1.36",
                "command": [
                    "sh",
                    "-c",
                    f"until nc -z -w 1 {service} {dep_ports[0]}; do sleep 1; done",
                ],
            }
        )
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "processman"}
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": _seconds(spec.stop_timeout, 0),
        "containers": [container],
    }
    if init:
        pod["initContainers"] = init
    export.documents.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "replicas": spec.replicas if spec.replicas is not None else 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
            },
        }
    )
    if ports:
        export.documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {
                    "selector": {"app.kubernetes.io/name": name},
                    "ports": [
                        {
                            "name": f"tcp-{port}",
                            "port": port,
                            "targetPort": port,
                            "protocol": "TCP",
                        }
                        for port in ports
                    ],
                },
            }
        )


def _uses(spec: ProcessSpec, name: str) -> bool:
    marker = deferred(name)
    texts = [*(spec.command or ()), *spec.args, spec.cwd, *spec.env.values()]
    for probe in (spec.ready, spec.health):
        if probe is not None:
            texts += [probe.target, *probe.command]
    return any(marker in text for text in texts)


def _k8s_text(text: str, port: int | None) -> str:
    """A value Kubernetes reads literally (``$(`` would expand a variable) with a replica's
    id as the pod's ``$(PROCESSMAN_ID)``, its index 0, its ``PORT`` the group's."""
    text = text.replace("$(", "$$(")
    text = text.replace(deferred("PORT"), "" if port is None else str(port))
    text = text.replace(deferred("PROCESSMAN_ID"), "$(PROCESSMAN_ID)")
    text = text.replace(deferred("PROCESSMAN_REPLICA"), "0")
    return text


def _k8s_env(spec: ProcessSpec, origin: Origin) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    port = "" if spec.port is None else str(spec.port)
    for key, value in _own_env(spec, origin).items():
        env.append({"name": key, "value": _k8s_text(value, spec.port)})
    if spec.replicas is not None:
        env.insert(
            0, {"name": "PROCESSMAN_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        )
        env.append({"name": "PROCESSMAN_REPLICA", "value": "0"})
    else:
        env.insert(0, {"name": "PROCESSMAN_ID", "value": spec.id})
    env.append({"name": "PROCESSMAN_GROUP", "value": spec.id})
    if spec.port is not None:
        env.append({"name": "PORT", "value": port})
    if is_python(spec) and "PYTHONUNBUFFERED" not in spec.env:
        env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    return env


def _service_ports(spec: ProcessSpec) -> list[int]:
    ports = [] if spec.port is None else [spec.port]
    for address in spec.sockets:
        parsed = parse_address(address)
        if not parsed.path and parsed.port not in ports:
            ports.append(parsed.port)
    return ports


def _quantity(size: int) -> str:
    for unit, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _k8s_probes(spec: ProcessSpec, field: str, warn: Callable[[str], None]) -> dict[str, Any]:
    probes: dict[str, Any] = {}
    port = spec.port
    ready, health = spec.ready, spec.health
    if ready is not None:
        check = _k8s_check(ready, port)
        if check is None:
            warn(
                f"{field}.ready.{ready.kind}: Kubernetes has no {ready.kind} probe: "
                "the pod is ready once it runs"
            )
        else:
            timing = _k8s_timing(ready)
            probes["readinessProbe"] = {**check, **timing}
            # readyTimeout: a pod that is not ready in time is restarted, as processman does
            probes["startupProbe"] = {
                **check,
                **timing,
                "failureThreshold": max(1, math.ceil(spec.ready_timeout / timing["periodSeconds"])),
            }
    if health is not None:
        check = _k8s_check(health, port)
        if check is None:
            warn(f"{field}.health.{health.kind}: Kubernetes has no {health.kind} probe")
        else:
            probes["livenessProbe"] = {
                **check,
                **_k8s_timing(health),
                "failureThreshold": health.failures,
            }
    return probes


def _k8s_timing(probe: Probe) -> dict[str, int]:
    return {
        "periodSeconds": _seconds(probe.period),
        "timeoutSeconds": _seconds(probe.timeout),
        "initialDelaySeconds": _seconds(probe.initial_delay, 0),
    }


def _k8s_check(probe: Probe, port: int | None) -> dict[str, Any] | None:
    target = probe.target.replace(deferred("PORT"), "" if port is None else str(port))
    if probe.kind is ProbeKind.HTTP:
        url = _URL.match(target)
        assert url is not None, target  # the loader checked it
        scheme, host, port_text, path = url.groups()
        host = host.strip("[]")
        check: dict[str, Any] = {
            "path": path or "/",
            "port": int(port_text) if port_text else 443 if scheme.lower() == "https" else 80,
            "scheme": scheme.upper(),
        }
        if not _loopback(host):
            check["host"] = host
        return {"httpGet": check}
    if probe.kind is ProbeKind.TCP:
        address = parse_address(target)
        check = {"port": address.port}
        if not _loopback(address.host):
            check["host"] = address.host
        return {"tcpSocket": check}
    if probe.kind is ProbeKind.EXEC:
        return {"exec": {"command": [_k8s_text(word, port) for word in probe.command]}}
    return None


# scheme, host, port, path and query (a fragment is not sent)
_URL = re.compile(r"^(https?)://(?:[^@/]*@)?(\[[^\]]*\]|[^/:?#]*)(?::(\d+))?([^#]*)", re.IGNORECASE)


def _loopback(host: str) -> bool:
    """The kubelet probes the pod's own address: a loopback host means "the pod"."""
    return host in ("localhost", "::1", "0.0.0.0", "::") or host.startswith("127.")


# --- Procfile ----------------------------------------------------------------------------

#: Keys a Procfile line cannot hold, by the ``ProcessSpec`` attribute.
_PROCFILE_DROPS = {
    "restart": "restart",
    "max_retries": "maxRetries",
    "backoff": "backoff",
    "max_backoff": "maxBackoff",
    "healthy_after": "healthyAfter",
    "stop_signal": "stopSignal",
    "stop_timeout": "stopTimeout",
    "autostart": "autostart",
    "ready": "ready",
    "health": "health",
    "depends_on": "dependsOn",
    "sockets": "sockets",
    "max_memory": "maxMemory",
    "ready_timeout": "readyTimeout",
}


def procfile(
    source: Source,
    *,
    exists: Callable[[str], bool],
    which: Callable[[str], str | None],
) -> Export:
    """``id: command`` lines; the command, split as a shell splits it, is the argv."""
    config = source.config
    export = Export(warnings=common_warnings(source, "a Procfile"))
    base = posixpath.dirname(config.source) if config.source.startswith("/") else None
    lines = [f"# written by `processman export procfile` from {config.source}"]
    for spec in config.processes:
        before = len(export.warnings)
        lines.append(_procfile_line(source, spec, base, export.warnings, exists))
        _name(export.warnings, before, spec)
    export.files["Procfile"] = "\n".join(lines) + "\n"
    return export


def _procfile_line(
    source: Source,
    spec: ProcessSpec,
    base: str | None,
    warnings: list[str],
    exists: Callable[[str], bool],
) -> str:
    """The line of ``spec``; what it cannot hold goes to ``warnings``."""
    origin = source.origin(spec)
    field = origin.field
    argv, problem = _argv(spec, exists, lambda program: program)  # honcho's PATH decides
    if problem:
        warnings.append(f"{field}: {problem}")
    if spec.replicas is not None:
        warnings.append(
            f"{field}.replicas: a Procfile runs one of each: give honcho "
            f"-c {spec.id}={spec.replicas}"
        )
        if holds_deferred(" ".join(argv)):
            warnings.append(f"{field}: per-replica values are written as replica 0's")
            argv = tuple(
                word.replace(deferred("PROCESSMAN_ID"), f"{spec.id}-0")
                .replace(deferred("PROCESSMAN_REPLICA"), "0")
                .replace(deferred("PORT"), str(spec.port or ""))
                for word in argv
            )
    if base is not None and spec.cwd != base:
        warnings.append(
            f"{field}.cwd: a Procfile's commands run in its own directory, not {spec.cwd}"
        )
    listed = sorted(k for k in spec.env if k not in ("PORT", TOKEN_VARIABLE))
    if listed and not posixpath.basename(source.config.source).startswith("Procfile"):
        warnings.append(
            f"{field}.env: a Procfile has no environment: put "
            + ", ".join(listed)
            + " in the .env file beside it"
        )
    for key, camel in _PROCFILE_DROPS.items():
        if getattr(spec, key) != getattr(_DEFAULTS, key):
            warnings.append(f"{field}.{camel}: a Procfile cannot hold it")
    if spec.port is not None:
        warnings.append(
            f"{field}.port: honcho gives PORT by line (5000, 5100, ...), not {spec.port}"
        )
    return f"{spec.id}: {shlex.join(argv)}"
