"""The ``processman`` command (the console script and ``python -m processman``)."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

# dependency-injector imports these at its own import, when they are installed, for
# integrations processman does not use (Configuration.from_yaml, pydantic settings, wiring
# into FastAPI, Starlette, Flask and FastDepends handlers). In an application's
# environment that can mean pydantic; in processman's own it is Starlette and PyYAML:
# without them the command's imports take 72 ms instead of 93, and 2.6 MiB less
# (docs/benchmarks.md). The command is the only program in its process, so it imports
# dependency-injector without them; an application that embeds processman imports it the
# usual way. Starlette and PyYAML are imported again, normally, when the HTTP API or a
# YAML config needs them.
UNUSED_BY_DEPENDENCY_INJECTOR = (
    "fast_depends",
    "fastapi",
    "pydantic",
    "pydantic_settings",
    "starlette",
    "werkzeug",
    "yaml",
)


class _Hidden:
    """A meta path finder for which the named packages are not installed."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, *_: object) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


def import_dependency_injector() -> None:
    """Import dependency-injector as if its optional integrations were not installed."""
    hidden = _Hidden(n for n in UNUSED_BY_DEPENDENCY_INJECTOR if n not in sys.modules)
    sys.meta_path.insert(0, hidden)
    try:
        import dependency_injector.containers  # noqa: F401
        import dependency_injector.providers  # noqa: F401
    finally:
        sys.meta_path.remove(hidden)


def main() -> None:
    try:
        import_dependency_injector()
        from processman.app.cli import main as run_command

        run_command()
    except KeyboardInterrupt:
        # Ctrl-C before `run` catches it (it does before its first spawn, so nothing runs
        # yet), or in a command that does not: end as Python would, killed by SIGINT so
        # that a calling shell stops too, but without a traceback of whatever was loading.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    main()
