"""Runs benchmarks/evidence.sh with a stand-in python that records the `awconv` command lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.sh"

# A stand-in for `python -m awconv compare ...` that "trains" a one-model, one-seed call: it writes
# the run's config.json, history.json and metrics.json (and its checkpoints) where compare would, and
# fails for the model named by $FAIL_MODEL. With $FAKE_EPOCH_SECONDS it trains epoch by epoch as
# compare does, from the epochs already in history.json: each epoch takes that long, then appends its
# row to history.json and, a quarter of that later, writes best.ckpt and last.ckpt ("epoch N"); the
# last epoch's metrics.json comes another quarter later.
_TRAINING_FAKE = """\
import json, os, re, sys, time
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as calls:
    calls.write(" ".join(args) + "\\n")
def values(flag):
    start = args.index(flag) + 1
    end = next((i for i in range(start, len(args)) if args[i].startswith("--")), len(args))
    return args[start:end]
models, seeds = values("--models"), values("--seeds")
if len(models) == 1 and len(seeds) == 1:
    if models[0] == os.environ.get("FAIL_MODEL"):
        sys.exit("training failed")
    run = Path(values("--out")[0]) / "runs" / re.sub(r"[^\\w.=,-]+", "_", models[0]) / f"seed{seeds[0]}"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    summary = json.dumps({"model": models[0], "seed": seeds[0]})
    (run / "config.json").write_text(summary)
    if "FAKE_EPOCH_SECONDS" in os.environ:
        history = run / "history.json"
        rows = json.loads(history.read_text()) if history.exists() else []
        for epoch in range(len(rows) + 1, int(values("--epochs")[0]) + 1):
            time.sleep(float(os.environ["FAKE_EPOCH_SECONDS"]))
            rows.append({"epoch": epoch, "val_top1": 0.9})
            history.write_text(json.dumps(rows, indent=1))
            time.sleep(float(os.environ["FAKE_EPOCH_SECONDS"]) / 4)
            for name in ("best", "last"):
                (run / "checkpoints" / f"{name}.ckpt").write_text(f"epoch {epoch}")
        time.sleep(float(os.environ["FAKE_EPOCH_SECONDS"]) / 4)
    else:
        time.sleep(0.05)
        (run / "history.json").write_text(summary)
        for name in ("last", "best"):
            (run / "checkpoints" / f"{name}.ckpt").write_bytes(b"weights")
    (run / "metrics.json").write_text(summary)
"""


def run_evidence(
    tmp_path: Path, experiment: str, out: Path, *, trains: bool = False, **env: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs ``evidence.sh EXPERIMENT`` with ``OUT=out``; returns the process and the recorded argv lines.

    Args:
        tmp_path: where the stand-in python and its record of calls are written.
        experiment: the script's argument.
        out: the script's ``OUT``.
        trains: the stand-in writes the files of each one-run call (``_TRAINING_FAKE``); otherwise
            it only records its arguments.
        env: more environment variables for the script (``RECORDS`` defaults to ``tmp_path/records``).
    """
    calls = tmp_path / "calls.txt"
    fake_python = tmp_path / "python"
    if trains:
        fake_python.write_text(f"#!{sys.executable}\n{_TRAINING_FAKE}")
    else:
        fake_python.write_text(f'#!/usr/bin/env bash\necho "$@" >> {calls}\n')
    fake_python.chmod(0o755)
    # RECORDS in tmp_path unless given: the repository's own records must neither feed nor take a test's runs.
    environment = {
        **os.environ,
        "PY": str(fake_python),
        "OUT": str(out),
        "CALLS": str(calls),
        "RECORDS": str(tmp_path / "records"),
        "POLL_SECONDS": "0.05",  # how often a worker with STOP_AT looks at its run
        **env,
    }
    done = subprocess.run(["bash", str(SCRIPT), experiment], env=environment, capture_output=True, text=True)
    return done, calls.read_text().splitlines() if calls.exists() else []
