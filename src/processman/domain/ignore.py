"""What development mode ignores by default (SPEC §4), as names matched per path component."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Directory and file names never watched: VCS data, caches, environments, logs, editor
#: temp files, and ``processman run``'s own control socket (replaced when a run starts
#: after a killed one). Each pattern is matched against every component of a relative path.
DEFAULT_IGNORES = (
    ".processman.sock",
    ".git",
    "__pycache__",
    "*.pyc",
    "node_modules",
    ".venv",
    "venv",
    "*.log",
    "*.swp",
    "*~",
    ".#*",
)


def ignored_by_default(parts: Iterable[str]) -> bool:
    """True when a component of a relative path matches a default ignore."""
    return any(fnmatchcase(part, pattern) for part in parts for pattern in DEFAULT_IGNORES)
