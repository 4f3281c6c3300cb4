"""benchmarks/evidence.sh inspect: the `awconv inspect` command lines it runs, and skipped runs."""

from __future__ import annotations

from pathlib import Path

from evidence_script import run_evidence


def test_inspect_step_names_the_trained_runs_and_skips_the_others(tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    trained = [
        out / "mnist5k/runs/aw_resnet20_cifar/seed0",
        out / "ablation/runs/aw_resnet20_cifar_generator=lowrank,rank=4/seed0",
    ]
    for run in trained:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints/last.ckpt").write_bytes(b"")
    done, calls = run_evidence(tmp_path, "inspect", out)
    assert done.returncode == 0, done.stderr
    assert calls == [
        f"-m awconv inspect aw_resnet20_cifar --weights {trained[0]}/checkpoints/last.ckpt --data mnist5k "
        f"--image-size 16 --out {out}/inspect/mnist5k/aw_resnet20_cifar",
        f"-m awconv inspect aw_resnet20_cifar --weights {trained[1]}/checkpoints/last.ckpt --model-arg "
        f"generator=lowrank --model-arg rank=4 --data digits "
        f"--out {out}/inspect/ablation/aw_resnet20_cifar_generator=lowrank,rank=4",
    ]
    assert done.stderr.count("not trained yet") == 3
