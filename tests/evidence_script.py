"""Runs benchmarks/evidence.sh with a stand-in python that records the `awconv` command lines."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.sh"


def run_evidence(
    tmp_path: Path, experiment: str, out: Path, **env: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs ``evidence.sh EXPERIMENT`` with ``OUT=out``; returns the process and the recorded argv lines."""
    calls = tmp_path / "calls.txt"
    fake_python = tmp_path / "python"  # records its arguments instead of running awconv
    fake_python.write_text(f'#!/usr/bin/env bash\necho "$@" >> {calls}\n')
    fake_python.chmod(0o755)
    environment = {**os.environ, "PY": str(fake_python), "OUT": str(out), **env}
    done = subprocess.run(["bash", str(SCRIPT), experiment], env=environment, capture_output=True, text=True)
    return done, calls.read_text().splitlines() if calls.exists() else []
