"""examples/testing (docs/testing.md) run as its users run it: pytest in that directory,
a FastAPI app under uvicorn, a worker and a real redis, all started by the fixture."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "testing"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (make test installs it with apt-get as root)",
)
def test_the_testing_example_passes() -> None:
    env = {
        **os.environ,
        # as in an activated venv: its python and uvicorn come first on PATH
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "REDIS_PORT": str(free_port()),
        "API_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
