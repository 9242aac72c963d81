"""Dependencies point inward: the domain does no I/O, adapters never import app/ or each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "processman"

# What the pure core may not import: I/O, concurrency, logging, other layers.
FORBIDDEN_IN_DOMAIN = {
    "anyio",
    "asyncio",
    "trio",
    "loguru",
    "subprocess",
    "socket",
    "os",
    "shutil",
    "io",
    "pathlib",
    "tempfile",
    "signal",
    "threading",
    "multiprocessing",
    "select",
    "selectors",
    "psutil",
    "watchfiles",
    "yaml",
    "tomllib",
    "json",
    "logging",
    "time",
    "glob",
    "fcntl",
    "ctypes",
    "dependency_injector",
    "starlette",
    "uvicorn",
    "urllib",
    "http",
    "processman.adapters",
    "processman.app",
}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def forbidden(name: str, banned: set[str]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


@pytest.mark.parametrize("path", sorted((SRC / "domain").glob("*.py")), ids=lambda p: p.name)
def test_domain_is_pure(path: Path) -> None:
    bad = sorted(n for n in imports(path) if forbidden(n, FORBIDDEN_IN_DOMAIN))
    assert not bad, f"domain/{path.name} imports {bad}"


def test_domain_only_uses_the_standard_library_and_msgspec() -> None:
    allowed_third_party = {"msgspec"}
    for path in (SRC / "domain").glob("*.py"):
        for name in imports(path):
            top = name.split(".")[0]
            assert (
                top in sys.stdlib_module_names or top in allowed_third_party or top == "processman"
            ), f"domain/{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted((SRC / "adapters").glob("*.py")), ids=lambda p: p.name)
def test_adapters_import_neither_app_nor_each_other(path: Path) -> None:
    own = f"processman.adapters.{path.stem}"
    # a private module (``_posix``) holds what several adapters share
    shared = {f"processman.adapters.{p.stem}" for p in (SRC / "adapters").glob("_[!_]*.py")}
    bad = sorted(
        n
        for n in imports(path)
        if forbidden(n, {"processman.app"})
        or (
            forbidden(n, {"processman.adapters"}) and n not in (own, "processman.adapters", *shared)
        )
    )
    assert not bad, f"adapters/{path.name} imports {bad}"


def test_only_the_container_names_concrete_adapters() -> None:
    for path in (SRC / "app").glob("*.py"):
        if path.name in ("container.py", "cli.py"):
            continue  # the CLI is the composition root of the command line (config, console sink)
        bad = sorted(n for n in imports(path) if forbidden(n, {"processman.adapters"}))
        assert not bad, f"app/{path.name} imports {bad}"


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import anyio\nfrom loguru import logger\nfrom os import path\n")
    assert {n for n in imports(sample) if forbidden(n, FORBIDDEN_IN_DOMAIN)} == {
        "anyio",
        "loguru",
        "os",
    }
