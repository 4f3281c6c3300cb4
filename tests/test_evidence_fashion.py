"""benchmarks/evidence.sh fashion_pilot and fashion: the `awconv compare` command lines they run."""

from __future__ import annotations

from pathlib import Path

from evidence_script import run_evidence

RECIPE = (
    "--data fashion-mnist --image-size 28 --batch-size 128 --optimizer sgd --lr 0.1 --weight-decay 5e-4 "
    "--schedule cosine --warmup-epochs 1"
)
CPU = "--workers 0 --accelerator cpu --no-progress"


def test_pilot_trains_plain_and_aw_at_three_budgets(tmp_path: Path) -> None:
    done, calls = run_evidence(tmp_path, "fashion_pilot", tmp_path / "ev")
    assert done.returncode == 0, done.stderr
    assert calls == [
        f"-m awconv compare {RECIPE} --epochs {epochs} --models resnet20_cifar aw_resnet20_cifar --seeds 0 "
        f"--pair aw_resnet20_cifar resnet20_cifar {CPU} --out {tmp_path}/ev/fashion_pilot/epochs{epochs}"
        for epochs in (5, 10, 20)
    ]


def test_main_runs_wait_for_the_pilots_budget(tmp_path: Path) -> None:
    done, calls = run_evidence(tmp_path, "fashion", tmp_path / "ev")
    assert done.returncode == 2 and calls == []
    assert "run fashion_pilot first and set FASHION_EPOCHS" in done.stderr


def test_main_runs_pair_every_variant_by_seed(tmp_path: Path) -> None:
    done, calls = run_evidence(tmp_path, "fashion", tmp_path / "ev", FASHION_EPOCHS="7")
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
