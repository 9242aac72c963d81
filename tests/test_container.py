"""Plugging in a custom spawner and log sink: by keyword argument and by overriding the container."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest
from dependency_injector import providers

from processman import ProcessManager
from processman.adapters.clock import AnyioClock
from processman.adapters.logs import FileSink, LoguruSink, RingBufferSink
from processman.adapters.spawn_linux import LinuxSpawner
from processman.adapters.spawn_posix import PosixSpawner
from processman.app import Container
from processman.app.cli import run_container
from processman.domain.model import Config, LogSettings, ProcessSpec
from processman.domain.ports import Clock, LogBuffer, LogSink, Spawner
from tests.fakes import FakeClock, FakeSpawner, RecordingSink

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

CONFIG = Config(processes=(ProcessSpec(id="p", cwd="/", command=("prog",)),))


async def test_custom_spawner_and_sink_by_keyword() -> None:
    spawner, sink = FakeSpawner(), RecordingSink()
    async with ProcessManager(CONFIG, spawner=spawner, log_sinks=[sink], clock=FakeClock()) as m:
        spawner.last.stdout.write(b"hello\n")
        await m.stop("p")
    assert [r.argv for r in spawner.requests] == [("prog",)]
    assert sink.lines() == ["hello"] and sink.closed
    assert spawner.closed == 1  # the spawner's own clean-up, once every tree is gone


async def test_custom_spawner_and_sink_by_overriding_the_container() -> None:
    spawner, sink = FakeSpawner(), RecordingSink()
    container = Container()
    container.spawner.override(providers.Object(spawner))
    container.log_sinks.override(providers.Object([sink]))
    container.clock.override(providers.Object(FakeClock()))
    async with ProcessManager(CONFIG, container=container) as m:
        spawner.last.stdout.write(b"hello\n")
        await m.stop("p")
    assert len(spawner.requests) == 1
    assert sink.lines() == ["hello"]


def test_default_wiring(tmp_path: Path) -> None:
    container = Container()
    container.config.override(
        providers.Object(Config(processes=(), logs=LogSettings(dir=str(tmp_path / "logs"))))
    )
    expected = LinuxSpawner if sys.platform.startswith("linux") else PosixSpawner
    assert isinstance(container.spawner(), expected)
    assert isinstance(container.clock(), AnyioClock)
    sinks = container.log_sinks()
    assert [type(s) for s in sinks] == [LoguruSink, FileSink]
    assert isinstance(container.ring_buffer(), RingBufferSink)
    # the adapters satisfy the ports structurally
    assert isinstance(container.spawner(), Spawner) and isinstance(container.clock(), Clock)
    assert all(isinstance(s, LogSink) for s in sinks) and isinstance(
        container.ring_buffer(), LogBuffer
    )


def test_no_file_sink_without_logs_dir() -> None:
    container = Container()
    container.config.override(providers.Object(Config(processes=())))
    assert [type(s) for s in container.log_sinks()] == [LoguruSink]


def test_no_loguru_records_when_turned_off() -> None:
    # processman run without a console: no loguru sink would take child lines
    container = Container()
    container.config.override(providers.Object(Config(processes=())))
    container.loguru_records.override(providers.Object(False))
    assert container.log_sinks() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux spawner's options")
def test_processman_run_owns_its_process_and_a_library_does_not() -> None:
    config = Config(processes=(), logs=LogSettings(console=False))
    library, run = Container(), run_container(config)
    for container in (library, run):
        container.config.override(providers.Object(config))
    embedded, standalone = library.spawner(), run.spawner()
    assert isinstance(embedded, LinuxSpawner) and isinstance(standalone, LinuxSpawner)
    assert not embedded.spawns_from_leaf and standalone.spawns_from_leaf
    assert any(isinstance(s, LoguruSink) for s in library.log_sinks())
    assert not any(isinstance(s, LoguruSink) for s in run.log_sinks())  # console = false
