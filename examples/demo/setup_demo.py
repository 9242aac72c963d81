"""Prepare the demo: give the worker a virtualenv of its own, so that
``interpreter = "auto"`` finds ``worker/.venv/bin/python`` instead of python3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

venv = Path(__file__).resolve().parent / "worker" / ".venv"
if not (venv / "bin" / "python").exists():
    print(f"demo: creating {venv} (python -m venv --without-pip)")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
print(
    "demo: starting processman; api waits for db to be ready. In another terminal, in "
    "examples/demo: processman status, processman logs -f. Ctrl-C stops everything"
)
