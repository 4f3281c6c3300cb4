"""benchmarks/evidence.sh inspect: the `awconv inspect` command lines it runs, and skipped runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.sh"


def test_inspect_step_names_the_trained_runs_and_skips_the_others(tmp_path: Path) -> None:
    out, calls = tmp_path / "evidence", tmp_path / "calls.txt"
    fake_python = tmp_path / "python"  # records its arguments instead of running awconv
    fake_python.write_text(f'#!/usr/bin/env bash\necho "$@" >> {calls}\n')
    fake_python.chmod(0o755)
    trained = [
        out / "mnist5k/runs/aw_resnet20_cifar/seed0",
        out / "ablation/runs/aw_resnet20_cifar_generator=lowrank,rank=4/seed0",
    ]
    for run in trained:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints/last.ckpt").write_bytes(b"")
    env = {**os.environ, "PY": str(fake_python), "OUT": str(out)}
    done = subprocess.run(
        ["bash", str(SCRIPT), "inspect"], env=env, capture_output=True, text=True, check=True
    )
    assert calls.read_text().splitlines() == [
        f"-m awconv inspect aw_resnet20_cifar --weights {trained[0]}/checkpoints/last.ckpt --data mnist5k "
        f"--image-size 16 --out {out}/inspect/mnist5k/aw_resnet20_cifar",
        f"-m awconv inspect aw_resnet20_cifar --weights {trained[1]}/checkpoints/last.ckpt --model-arg "
        f"generator=lowrank --model-arg rank=4 --data digits "
        f"--out {out}/inspect/ablation/aw_resnet20_cifar_generator=lowrank,rank=4",
    ]
    assert done.stderr.count("not trained yet") == 3
