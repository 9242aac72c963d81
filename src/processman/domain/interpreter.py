"""Which program runs a process: interpreter resolution of SPEC §1, as a pure function.

The file system is asked through two callables (``exists``, ``which``) so that
every candidate, the Windows ones included, is testable on any machine.
"""

from __future__ import annotations

import ntpath
import posixpath
from typing import TYPE_CHECKING

from processman.domain.errors import InterpreterNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable

    from processman.domain.model import ProcessSpec

_NODE_SUFFIXES = (".js", ".mjs", ".cjs")


def candidates(script: str, cwd: str, *, windows: bool) -> list[str]:
    """The interpreters ``"auto"`` tries for ``script``, in order; [] means "run directly".

    Entries with a path separator are files; the others are program names for PATH.
    """
    join = ntpath.join if windows else posixpath.join
    lowered = script.lower()
    if lowered.endswith(".py"):
        return [
            join(cwd, ".venv", "bin", "python"),
            join(cwd, "venv", "bin", "python"),
            join(cwd, ".venv", "Scripts", "python.exe"),
            join(cwd, "venv", "Scripts", "python.exe"),
            "python" if windows else "python3",
        ]
    if lowered.endswith(".ts"):
        return [
            join(cwd, "node_modules", ".bin", "ts-node"),
            join(cwd, "node_modules", ".bin", "tsx"),
            "node",
        ]
    if lowered.endswith(_NODE_SUFFIXES):
        return ["node"]
    return []


def is_python(spec: ProcessSpec) -> bool:
    """A Python script: it gets ``PYTHONUNBUFFERED=1``."""
    return spec.script is not None and spec.script.lower().endswith(".py")


def resolve_argv(
    spec: ProcessSpec,
    *,
    exists: Callable[[str], bool],
    which: Callable[[str], str | None],
    windows: bool = False,
    broken_link: Callable[[str], str | None] = lambda _: None,
) -> tuple[tuple[str, ...], str | None]:
    """Return ``(argv, interpreter)`` for a spec; ``interpreter`` is None when there is none.

    A ``command`` is returned as written (the OS looks its program up on PATH). A
    found interpreter is used at the path where it was found, not resolved further.
    ``broken_link(path)`` gives the target of a link that leads nowhere: such a candidate
    ends the search with an error, instead of falling through to the next one (a venv
    whose Python was removed would otherwise run the script on the system's python3,
    without its packages).

    Raises:
        InterpreterNotFoundError: listing every candidate that was tried.
    """
    if spec.command is not None:
        return (*spec.command, *spec.args), None
    assert spec.script is not None
    script = spec.script
    if spec.interpreter in (None, "auto"):
        tried = candidates(script, spec.cwd, windows=windows)
        if not tried:
            return (script, *spec.args), None
    else:
        tried = [spec.interpreter]
    described = []
    for candidate in tried:
        found = _find(candidate, exists, which)
        if found is not None:
            return (found, script, *spec.args), found
        target = broken_link(candidate) if "/" in candidate or "\\" in candidate else None
        if target is not None:
            described.append(f"{candidate} (a broken link to {target}: its target is gone)")
            break
        described.append(_describe(candidate))
    raise InterpreterNotFoundError(script, described)


def _find(
    candidate: str, exists: Callable[[str], bool], which: Callable[[str], str | None]
) -> str | None:
    if "/" in candidate or "\\" in candidate:
        return candidate if exists(candidate) else None
    return which(candidate)


def _describe(candidate: str) -> str:
    if "/" in candidate or "\\" in candidate:
        return candidate
    return f"{candidate} (on PATH)"
