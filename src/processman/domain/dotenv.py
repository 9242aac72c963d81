"""Parse dotenv text (``KEY=value`` lines), as python-dotenv and docker compose read it."""

from __future__ import annotations

import re

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def parse_dotenv(text: str) -> dict[str, str]:
    """Return the variables of a dotenv file, in order.

    Supports comments, blank lines, an optional ``export`` prefix, single quotes
    (literal), double quotes (with ``\\n``-style escapes) and inline `` #`` comments on
    unquoted values. Variables are not expanded.

    Raises:
        ValueError: naming the line number of a malformed line.
    """
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ValueError(f"line {number}: expected KEY=value, got {raw.strip()!r}")
        result[key] = _value(value.strip(), number)
    return result


def _value(value: str, number: int) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = _closing_quote(value, quote)
        if end < 0:
            raise ValueError(f"line {number}: unterminated {quote} quote")
        inner = value[1:end]
        if quote == '"':
            inner = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), inner)
        return inner
    comment = value.find(" #")
    return (value[:comment] if comment >= 0 else value).strip()


def _closing_quote(value: str, quote: str) -> int:
    i = 1
    while i < len(value):
        if value[i] == "\\" and quote == '"':
            i += 2
            continue
        if value[i] == quote:
            return i
        i += 1
    return -1
