"""What an unprivileged user sees of a working directory they may not enter (SPEC §2).

The tests run as root in CI, and root enters any directory: the checks run in a forked
child that has become ``nobody`` (``helpers.run_unprivileged``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from processman.app import cli
from processman.app.container import Container
from processman.domain.errors import SpawnError
from processman.domain.ports import SpawnRequest
from tests.integration.helpers import run_unprivileged

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory anybody may search (pytest's own is its owner's only)."""
    with tempfile.TemporaryDirectory(prefix="pm-unprivileged-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


@pytest.fixture
def locked(open_tmp: Path) -> Iterator[Path]:
    """A directory only its owner may enter (root's, mode 700, when the tests run as root;
    otherwise mode 000)."""
    directory = open_tmp / "locked"
    directory.mkdir()
    directory.chmod(0o700 if os.geteuid() == 0 else 0o000)
    yield directory
    directory.chmod(0o700)


def _spawn_in(cwd: str) -> str:
    spawner = Container().spawner()

    async def spawn() -> str:
        try:
            handle = await spawner.spawn(
                SpawnRequest(process_id="t", argv=("echo", "hi"), cwd=cwd, env=dict(os.environ))
            )
        except SpawnError as exc:
            return str(exc)
        await handle.stop("SIGKILL", 0.0)
        return "spawned"

    try:
        return anyio.run(spawn)
    finally:
        anyio.run(spawner.aclose)


def test_the_directory_is_named_when_it_cannot_be_entered(locked: Path) -> None:
    # said "cannot start echo: permission denied (is it executable?)"
    message, _ = run_unprivileged(lambda: _spawn_in(str(locked)))
    assert message == (
        f"cannot start {locked}: working directory cannot be entered (permission denied)"
    )


def test_a_cwd_that_is_a_file_is_named(open_tmp: Path) -> None:
    file = open_tmp / "file"
    file.write_text("")
    message, _ = run_unprivileged(lambda: _spawn_in(str(file)))
    assert message == f"cannot start {file}: working directory is not a directory"


def test_check_warns_of_a_directory_that_cannot_be_entered(locked: Path, open_tmp: Path) -> None:
    config = open_tmp / "processman.toml"
    config.write_text(f'[[processes]]\nid = "hi"\ncommand = "echo hi"\ncwd = "{locked}"\n')
    config.chmod(0o644)
    cli.check(str(config))  # here first: what it imports on first use, nobody cannot read
    code, printed = run_unprivileged(lambda: cli.check(str(config)))
    assert code == 0, printed
    assert f"warning:     cwd {locked} cannot be entered (permission denied)" in printed


def test_check_warns_of_a_logs_dir_the_user_may_not_write(open_tmp: Path) -> None:
    shared = open_tmp / "shared"  # root's, mode 755 (or 555 when the tests are not root)
    shared.mkdir()
    shared.chmod(0o755 if os.geteuid() == 0 else 0o555)
    config = open_tmp / "processman.toml"
    config.write_text(f'[logs]\ndir = "{shared}/logs"\n[[processes]]\nid = "a"\ncommand = "true"\n')
    config.chmod(0o644)
    cli.check(str(config))
    code, printed = run_unprivileged(lambda: cli.check(str(config)))
    shared.chmod(0o755)
    assert code == 0, printed
    assert (
        f"warning: cannot write logs to {shared}/logs: {shared} cannot be written "
        "(permission denied) (run would refuse to start)"
    ) in printed
