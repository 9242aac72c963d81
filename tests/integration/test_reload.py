"""SPEC §10 with real processes: reloads racing each other and commands."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import anyio
import msgspec
import psutil
import pytest

from processman import ProcessManager, UnknownProcessError
from processman.domain.errors import NotRunningError, ProcessmanError
from processman.domain.model import Config, LogSettings, ProcessSpec
from tests.conftest import TESTDATA, pid_alive
from tests.integration.helpers import wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

COUNTER = (
    "import itertools, time\nfor i in itertools.count():\n print(i, flush=True)\n time.sleep(0.005)"
)


def spec(process_id: str, **values: object) -> ProcessSpec:
    return ProcessSpec(
        id=process_id,
        cwd=str(TESTDATA),
        command=(sys.executable, str(TESTDATA / "long_running.py")),
        stop_timeout=5.0,
        **values,  # type: ignore[arg-type]
    )


def configs() -> tuple[Config, Config]:
    keep = ProcessSpec(id="keep", cwd="/", command=(sys.executable, "-c", COUNTER))
    logs = LogSettings(buffer_lines=100_000)
    a = Config(processes=(keep, spec("x", env={"V": "a"}), spec("extra")), logs=logs)
    b = Config(processes=(keep, spec("x", env={"V": "b"})), logs=logs)
    return a, b


def live_instances() -> dict[str, list[int]]:
    """The live children of this test by their PROCESSMAN_ID."""
    found: dict[str, list[int]] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            process_id = child.environ().get("PROCESSMAN_ID")
            if process_id and child.status() != psutil.STATUS_ZOMBIE:
                found.setdefault(process_id, []).append(child.pid)
        except psutil.Error:
            continue
    return found


async def test_twenty_reloads_racing_commands_end_in_the_last_configs_state() -> None:
    a, b = configs()
    async with ProcessManager(a) as m:
        keep_pid = m.status("keep").pid
        refused: list[str] = []

        async def command(name: str, process_id: str) -> None:
            try:
                await getattr(m, name)(process_id)
            except (UnknownProcessError, NotRunningError, ProcessmanError) as exc:
                refused.append(f"{name} {process_id}: {exc}")

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(m.reload, b if i % 2 == 0 else a)
                tg.start_soon(command, "stop" if i % 3 else "start", "x")
                tg.start_soon(command, "start", "extra")
                await anyio.lowlevel.checkpoint()
        last = a  # i = 19
        assert [s.id for s in m.config.processes] == [s.id for s in last.processes]
        assert m.config.get("x") == last.get("x")
        assert m.status("keep").pid == keep_pid  # unchanged all along: never touched
        await m.start("x")
        await m.start("extra")
        live = live_instances()
        assert {k: len(v) for k, v in live.items()} == {"keep": 1, "x": 1, "extra": 1}, live
        # every line of the process that stayed, in order, none lost
        numbers = [int(e.line) for e in m.logs("keep", 100_000)]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        await m.reload(b)
        with pytest.raises(UnknownProcessError):
            m.status("extra")
        assert "extra" not in live_instances()
        pids = [pid for pids in live_instances().values() for pid in pids]
    assert not [pid for pid in pids if pid_alive(pid)]  # no orphan


async def test_new_logs_settings_apply_to_the_lines_from_then_on(tmp_path: Path) -> None:
    from processman.domain.errors import ConfigError

    keep = ProcessSpec(id="keep", cwd="/", command=(sys.executable, "-c", COUNTER))
    first = Config(processes=(keep,), logs=LogSettings(dir=str(tmp_path / "a"), console=False))
    async with ProcessManager(first) as m:
        await wait_until(lambda: (tmp_path / "a" / "keep.log").exists())
        blocked = tmp_path / "file"
        blocked.write_text("not a directory")
        bad = msgspec.structs.replace(first, logs=LogSettings(dir=str(blocked / "logs")))
        with pytest.raises(ConfigError, match="logs.dir"):
            await m.reload(bad)
        assert m.config.logs == first.logs  # nothing changed
        second = msgspec.structs.replace(
            first, logs=LogSettings(dir=str(tmp_path / "b"), buffer_lines=50, console=False)
        )
        plan = await m.reload(second)
        assert plan.unchanged == ["keep"]
        await wait_until(lambda: (tmp_path / "b" / "keep.log").exists())
        size = (tmp_path / "a" / "keep.log").stat().st_size
        await anyio.sleep(0.1)
        assert (tmp_path / "a" / "keep.log").stat().st_size == size  # the old file is done
        assert len(m.logs("keep", 1000)) <= 50
