"""benchmarks/evidence.sh fashion_pilot and fashion: the `awconv compare` command lines they run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.sh"
RECIPE = (
    "--data fashion-mnist --image-size 28 --batch-size 128 --optimizer sgd --lr 0.1 --weight-decay 5e-4 "
    "--schedule cosine --warmup-epochs 1"
)
CPU = "--workers 0 --accelerator cpu --no-progress"


def _run(tmp_path: Path, experiment: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = tmp_path / "calls.txt"
    fake_python = tmp_path / "python"  # records its arguments instead of running awconv
    fake_python.write_text(f'#!/usr/bin/env bash\necho "$@" >> {calls}\n')
    fake_python.chmod(0o755)
    env = {**os.environ, "PY": str(fake_python), "OUT": str(tmp_path / "ev"), **env}
    done = subprocess.run(["bash", str(SCRIPT), experiment], env=env, capture_output=True, text=True)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_pilot_trains_plain_and_aw_at_three_budgets(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "fashion_pilot")
    assert done.returncode == 0, done.stderr
    assert calls == [
        f"-m awconv compare {RECIPE} --epochs {epochs} --models resnet20_cifar aw_resnet20_cifar --seeds 0 "
        f"--pair aw_resnet20_cifar resnet20_cifar {CPU} --out {tmp_path}/ev/fashion_pilot/epochs{epochs}"
        for epochs in (5, 10, 20)
    ]


def test_main_runs_wait_for_the_pilots_budget(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "fashion")
    assert done.returncode == 2 and calls == []
    assert "run fashion_pilot first and set FASHION_EPOCHS" in done.stderr


def test_main_runs_pair_every_variant_by_seed(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "fashion", FASHION_EPOCHS="7")
    assert done.returncode == 0, done.stderr
    lowrank = "aw_resnet20_cifar:generator=lowrank,rank=1 aw_resnet20_cifar:generator=lowrank,rank=4"
    six = (
        "resnet20_cifar seresnet20_cifar cbamresnet20_cifar aw_resnet20_cifar aw_seresnet20_cifar "
        "aw_cbamresnet20_cifar"
    )
    pairs = (
        "--pair aw_resnet20_cifar resnet20_cifar --pair aw_seresnet20_cifar seresnet20_cifar "
        "--pair aw_cbamresnet20_cifar cbamresnet20_cifar --pair seresnet20_cifar resnet20_cifar "
        "--pair cbamresnet20_cifar resnet20_cifar "
        "--pair aw_resnet20_cifar:generator=lowrank,rank=1 aw_resnet20_cifar "
        "--pair aw_resnet20_cifar:generator=lowrank,rank=4 aw_resnet20_cifar"
    )
    assert calls == [
        f"-m awconv compare {RECIPE} --epochs 7 --models {six} {lowrank} --seeds 0 1 2 3 4 {pairs} {CPU} "
        f"--out {tmp_path}/ev/fashion"
    ]
