"""Config fuzzing: any document is a valid config or a ConfigError naming the field, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processman.adapters.config import parse_config
from processman.domain.config_schema import RawProcess
from processman.domain.errors import ConfigError
from processman.domain.model import Config

KEYS = [f.encode_name for f in msgspec.structs.fields(RawProcess)]
SECTION_KEYS = [
    "processes",
    "api",
    "logs",
    "listen",
    "token",
    "dir",
    "rotation",
    "retention",
    "bufferLines",
    "console",
]
VALUES = [
    "1s",
    "0",
    "-1s",
    "10ms",
    "SIGTERM",
    "TERM",
    "auto",
    "${HOME}",
    "${X:-y}",
    "$$",
    "$X",
    "a b",
    "",
    "x.py",
    "always",
    "never",
    "on-failure",
    "127.0.0.1:1",
    "10 MB",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(VALUES),
)
keys = st.one_of(st.sampled_from(KEYS + SECTION_KEYS), st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=25,
)
process = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["a", "b", "web-1", "x.y"]), st.text(max_size=6))},
    optional={
        k: st.one_of(
            scalars,
            st.lists(scalars, max_size=3),
            st.dictionaries(st.text(max_size=4), scalars, max_size=3),
        )
        for k in KEYS
        if k != "id"
    },
)
configs = st.one_of(
    st.fixed_dictionaries(
        {"processes": st.lists(process, max_size=3)}, optional={"api": documents, "logs": documents}
    ),
    documents,
)

VALID = {
    "p.toml": '[[processes]]\nid = "web"\ncommand = "x --port ${PORT:-1}"\nbackoff = "1s"\n\n[logs]\nbufferLines = 5\n',
    "p.yaml": "processes:\n  - id: web\n    command: [x, y]\n    maxRetries: 3\napi:\n  listen: 127.0.0.1:9\n",
    "p.json": '{"processes": [{"id": "web", "script": "w.py", "env": {"A": "1"}}]}',
    "pb_processes.json": '[{"id": "w", "script": "w.py", "cwd": "", "interpreter": ""}]',
    "Procfile": "web: python app.py\nworker: python w.py\n",
}


def check(data: bytes, name: str, tmp: Path) -> None:
    try:
        config = parse_config(data, tmp / name, environ={"HOME": "/h"})
    except ConfigError as error:
        assert error.file == str(tmp / name)
        assert error.reason
        assert str(error).startswith(str(tmp / name))
        return
    assert isinstance(config, Config)


def named_field(data: bytes, name: str, tmp: Path, document: Any) -> None:
    """For an object at the top, every error but an unparsable file names a field."""
    try:
        parse_config(data, tmp / name, environ={"HOME": "/h"})
    except ConfigError as error:
        if isinstance(document, dict) and document:
            assert error.field, str(error)


FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@FUZZ
@given(document=configs)
def test_json_documents(document: Any) -> None:
    tmp = Path("/nonexistent-fuzz")
    data = json.dumps(document).encode()
    check(data, "p.json", tmp)
    named_field(data, "p.json", tmp, document)


@FUZZ
@given(document=configs)
def test_yaml_documents(document: Any) -> None:
    tmp = Path("/nonexistent-fuzz")
    data = yaml.safe_dump(document).encode()
    check(data, "p.yaml", tmp)
    named_field(data, "p.yaml", tmp, document)


@FUZZ
@given(
    document=st.dictionaries(st.sampled_from(SECTION_KEYS), documents, max_size=3)
    | configs.filter(lambda d: isinstance(d, dict))
)
def test_toml_documents(document: Any) -> None:
    tmp = Path("/nonexistent-fuzz")
    check(_to_toml(document).encode(), "p.toml", tmp)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_mutations_of_valid_files(name: str, data: st.DataObject) -> None:
    text = bytearray(VALID[name].encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from(list(b"\"[]{}:,=-\n #$\\'x0\xff")))
        if action == "insert":
            text.insert(position, byte)
        elif position < len(text):
            if action == "delete":
                del text[position]
            else:
                text[position] = byte
    check(bytes(text), name, Path("/nonexistent-fuzz"))


def _to_toml(document: dict[str, Any]) -> str:
    """A small TOML writer for the fuzzer (inline tables; the standard library only reads TOML)."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in document.items())


def _key(key: str) -> str:
    return json.dumps(key)


def _value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return (
            repr(value)
            if not isinstance(value, float) or value == value and abs(value) != float("inf")
            else "0"
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
