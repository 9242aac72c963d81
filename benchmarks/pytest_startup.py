"""Does the pytest plugin cost a suite that does not use it anything? (SPEC §13)

Times ``pytest -q`` on one trivial test, interleaved, with only the plugin loaded
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 -p processman_pytest``) and with no plugin at all, so
that other installed plugins (hypothesis alone takes a second to import) do not drown
the difference; prints the medians and their ratio. Then a test that uses the
``processman`` fixture on one process, for what the fixture itself costs.

    .venv/bin/python benchmarks/pytest_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN = "def test_nothing():\n    assert True\n"
USING = (
    "def test_one_process(processman):\n"
    "    pm = processman('processman.toml')\n"
    "    assert pm.status('sleeper').ready\n"
)
SLEEP = "import time; time.sleep(60)"
CONFIG = f'[[processes]]\nid = "sleeper"\ncommand = [{sys.executable!r}, "-c", "{SLEEP}"]\n'


def run(directory: Path, *options: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=directory,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp, "plain")
        plain.mkdir()
        (plain / "test_plain.py").write_text(PLAIN)
        using = Path(tmp, "using")
        using.mkdir()
        (using / "test_using.py").write_text(USING)
        (using / "processman.toml").write_text(CONFIG)
        run(plain)  # warm the caches once
        loaded, disabled, again, fixture = [], [], [], []
        for _ in range(runs):
            loaded.append(run(plain, "-p", "processman_pytest"))
            disabled.append(run(plain))
            again.append(run(plain))  # the same twice: how far apart noise alone puts them
            fixture.append(run(using, "-p", "processman_pytest"))
    with_plugin, without = statistics.median(loaded), statistics.median(disabled)
    print(f"one plain test, the plugin only: {with_plugin * 1000:5.0f} ms (median of {runs})")
    print(f"one plain test, no plugin:       {without * 1000:5.0f} ms")
    print(f"ratio with / without: {with_plugin / without:.3f}")
    print(f"ratio without / without again (noise): {without / statistics.median(again):.3f}")
    print(f"one test using the fixture:      {statistics.median(fixture) * 1000:5.0f} ms")


if __name__ == "__main__":
    main()
