"""The pure renderers of ``domain.export`` and what the loader records for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from processman.adapters.config import load_export_source
from processman.domain import export
from processman.domain.model import Config, ProcessSpec

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (90, "90s"),
        (43.5, "43.5s"),
        (2_000_000, "2000000s"),  # not 2e+06s, which systemd refuses
        (9_223_372_036.854, "9223372036.854s"),  # the longest duration a config allows
    ],
)
def test_systemd_time_spans(seconds: float, text: str) -> None:
    assert export.systemd_seconds(seconds) == text


@pytest.mark.parametrize(
    ("word", "written"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ("100%", "100%%"),
        ("$HOME", '"$$HOME"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        (";", '";"'),
        ("", '""'),
        ("line\nbreak", '"line\\nbreak"'),
    ],
)
def test_an_exec_word_is_taken_literally_by_systemd(word: str, written: str) -> None:
    assert export._exec_word(word) == written


@pytest.mark.parametrize(
    ("process_id", "name"),
    [("web", "web"), ("Api_Server", "api-server"), ("db.main", "db-main"), ("0day", "p-0day")],
)
def test_kubernetes_names(process_id: str, name: str) -> None:
    assert export.kubernetes_name(process_id) == name


def test_two_ids_with_one_kubernetes_name_are_refused() -> None:
    config = Config(
        processes=(
            ProcessSpec(id="a_b", cwd="/", command=("x",)),
            ProcessSpec(id="a.b", cwd="/", command=("x",)),
        )
    )
    with pytest.raises(export.ExportError, match="'a.b' and 'a_b' are both 'a-b'"):
        export.kubernetes(export.Source(config=config), image="i", exists=lambda _: True)


def test_unlimited_retries_have_no_start_limit_and_no_retries_one_start() -> None:
    def unit(max_retries: int) -> str:
        spec = ProcessSpec(id="a", cwd="/", command=("/bin/true",), max_retries=max_retries)
        result = export.systemd(
            export.Source(config=Config(processes=(spec,))),
            exists=lambda _: True,
            which=lambda name: f"/usr/bin/{name}",
        )
        return result.files["processman-a.service"]

    assert "StartLimitIntervalSec=0\n" in unit(-1)
    assert "StartLimitBurst=1\n" in unit(0)


def test_the_loader_records_envfile_and_what_came_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".env").write_text("FROM_FILE=1\nBOTH=file\n")
    config = tmp_path / "processman.toml"
    config.write_text(
        '[api]\nlisten = "127.0.0.1:${API_PORT}"\n'
        '[[processes]]\nid = "a"\ncwd = "${DIR}"\nenvFile = ".env"\n'
        'command = ["prog", "${FROM_FILE}", "${SHELL_VAR}", "${UNSET:-d}", "${PROCESSMAN_API}"]\n'
        'env = { BOTH = "env" }\n'
    )
    source = load_export_source(
        config, environ={"DIR": "sub", "SHELL_VAR": "s", "API_PORT": "9000", "FROM_FILE": "no"}
    )
    origin = source.origins["a"]
    assert origin.field == "processes[0]"
    assert origin.env_file == str(tmp_path / "sub" / ".env")
    assert origin.env_keys == ("BOTH",)
    assert origin.env_file_keys == ("FROM_FILE", "BOTH")
    assert origin.from_environment == (
        ("processes[0].cwd", "DIR"),
        ("processes[0].command", "SHELL_VAR"),
    )
    assert origin.uses_api == ("processes[0].command",)
    assert source.from_environment == (("api.listen", "API_PORT"),)
    assert source.config.processes[0].command == ("prog", "1", "s", "d", "http://127.0.0.1:9000")
