"""benchmarks/evidence.sh fashion_pilot, fashion and save: the runs they train, the reports they
write, and the records that carry finished runs to another machine."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from evidence_script import run_evidence

RECIPE = (
    "--data fashion-mnist --image-size 28 --batch-size 128 --optimizer sgd --lr 0.1 --weight-decay 5e-4 "
    "--schedule cosine --warmup-epochs 1"
)
CPU = "--workers 0 --accelerator cpu --no-progress"
PLAIN, AW = "resnet20_cifar", "aw_resnet20_cifar"
LOWRANK = ("aw_resnet20_cifar:generator=lowrank,rank=1", "aw_resnet20_cifar:generator=lowrank,rank=4")
EIGHT = (
    PLAIN,
    "seresnet20_cifar",
    "cbamresnet20_cifar",
    AW,
    "aw_seresnet20_cifar",
    "aw_cbamresnet20_cifar",
    *LOWRANK,
)


def _one_run(epochs: int, model: str, seed: int, out: str) -> str:
    return f"-m awconv compare {RECIPE} --epochs {epochs} --models {model} --seeds {seed} {CPU} --out {out}"


def _pilot_report(epochs: int, ev: Path) -> str:
    return (
        f"-m awconv compare {RECIPE} --epochs {epochs} --models {PLAIN} {AW} --seeds 0 --pair {AW} {PLAIN} "
        f"{CPU} --out {ev}/fashion_pilot/epochs{epochs}"
    )


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def _finished_runs(comparison: Path, models: tuple[str, ...], seeds: range) -> None:
    """Writes the three files of a finished run of every model and seed under ``comparison``."""
    for model in models:
        for seed in seeds:
            run = comparison / f"runs/{model}/seed{seed}"
            run.mkdir(parents=True)
            for name in ("config", "history", "metrics"):
                (run / f"{name}.json").write_text(json.dumps({"model": model, "seed": str(seed)}))


def test_pilot_trains_each_run_once_with_two_workers_then_reports_each_budget(tmp_path: Path) -> None:
    ev, records = tmp_path / "ev", tmp_path / "records"
    done, calls = run_evidence(tmp_path, "fashion_pilot", ev, trains=True, RECORDS=str(records))
    assert done.returncode == 0, done.stderr
    runs = [(e, m) for e in (5, 10, 20) for m in (PLAIN, AW)]
    expected_runs = sorted(_one_run(e, m, 0, f"{ev}/fashion_pilot/epochs{e}") for e, m in runs)
    assert sorted(calls[:6]) == expected_runs  # each once: a claimed run is skipped by the other worker
    assert calls[6:] == [_pilot_report(e, ev) for e in (5, 10, 20)]
    # Finished runs are recorded without their checkpoints, one record per run.
    assert _files(records) == {
        f"fashion_pilot/epochs{e}/runs/{m}/seed0/{name}.json"
        for e, m in runs
        for name in ("config", "history", "metrics")
    }
    assert (ev / "fashion_pilot/epochs10/logs/aw_resnet20_cifar-seed0.log").is_file()


def test_a_budget_reports_only_once_all_its_runs_have_finished(tmp_path: Path) -> None:
    done, calls = run_evidence(
        tmp_path, "fashion_pilot", tmp_path / "ev", trains=True, RECORDS=str(tmp_path / "r"), FAIL_MODEL=AW
    )
    assert done.returncode == 1
    assert (
        "aw_resnet20_cifar seed 0 failed; see" in done.stderr and "aw_resnet20_cifar-seed0.log" in done.stderr
    )
    assert not [call for call in calls if "--pair" in call]


def test_recorded_runs_are_restored_on_another_machine_and_reused(tmp_path: Path) -> None:
    records = tmp_path / "records"
    first, _ = run_evidence(tmp_path, "fashion_pilot", tmp_path / "ev1", trains=True, RECORDS=str(records))
    assert first.returncode == 0, first.stderr
    (tmp_path / "calls.txt").unlink()
    ev2 = tmp_path / "ev2"  # a new machine: nothing under OUT
    done, calls = run_evidence(tmp_path, "fashion_pilot", ev2, trains=True, RECORDS=str(records))
    assert done.returncode == 0, done.stderr
    assert calls == [_pilot_report(e, ev2) for e in (5, 10, 20)]
    restored = ev2 / "fashion_pilot/epochs20/runs/aw_resnet20_cifar/seed0/metrics.json"
    assert json.loads(restored.read_text()) == {"model": AW, "seed": "0"}


def test_save_carries_an_unfinished_runs_checkpoints_and_drops_them_once_it_finishes(tmp_path: Path) -> None:
    ev, records = tmp_path / "ev", tmp_path / "records"
    run = ev / "fashion_pilot/epochs20/runs/aw_resnet20_cifar/seed0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "history.json").write_text("[]")
    (run / "checkpoints/last.ckpt").write_bytes(b"last")
    (run / "checkpoints/best.ckpt").write_bytes(b"best")
    done, _ = run_evidence(tmp_path, "save", ev, RECORDS=str(records))
    assert done.returncode == 0, done.stderr
    prefix = "fashion_pilot/epochs20/runs/aw_resnet20_cifar/seed0"
    assert _files(records) == {f"{prefix}/{name}" for name in ("config.json", "history.json")} | {
        f"{prefix}/checkpoints/{name}.ckpt" for name in ("last", "best")
    }
    # Restored elsewhere, the run is trained on from its checkpoint (compare resumes it).
    elsewhere = tmp_path / "elsewhere"
    done, calls = run_evidence(tmp_path, "fashion_pilot", elsewhere, RECORDS=str(records), WORKERS="1")
    assert (elsewhere / prefix / "checkpoints/last.ckpt").read_bytes() == b"last"
    assert _one_run(20, AW, 0, f"{elsewhere}/fashion_pilot/epochs20") in calls
    (run / "metrics.json").write_text("{}")  # it finished
    done, _ = run_evidence(tmp_path, "save", ev, RECORDS=str(records))
    assert done.returncode == 0, done.stderr
    assert _files(records) == {f"{prefix}/{name}.json" for name in ("config", "history", "metrics")}


def test_stop_at_starts_only_the_runs_one_epoch_of_which_fits(tmp_path: Path) -> None:
    # By the script's seconds per epoch (410 plain, 870 AW), in 10 minutes one epoch of plain fits, not of AW.
    ev = tmp_path / "ev"
    done, calls = run_evidence(tmp_path, "fashion_pilot", ev, STOP_AT="+10 minutes", WORKERS="1")
    assert done.returncode == 0, done.stderr
    assert calls == [_one_run(e, PLAIN, 0, f"{ev}/fashion_pilot/epochs{e}") for e in (5, 10, 20)]


@pytest.mark.parametrize(
    ("speed", "models"),
    [({}, ()), ({"EPOCH_PERCENT": "45"}, (PLAIN,)), ({"SECONDS_PER_EPOCH": "299"}, (PLAIN, AW))],
)
def test_stop_at_counts_the_machines_speed(
    tmp_path: Path, speed: dict[str, str], models: tuple[str, ...]
) -> None:
    # In 5 minutes: 410 and 870 s do not fit, 45% of them are 184 and 391 s, and 299 s fits for both.
    ev = tmp_path / "ev"
    done, calls = run_evidence(tmp_path, "fashion_pilot", ev, STOP_AT="+5 minutes", WORKERS="1", **speed)
    assert done.returncode == 0, done.stderr
    assert calls == [_one_run(e, m, 0, f"{ev}/fashion_pilot/epochs{e}") for e in (5, 10, 20) for m in models]


def _in_seconds(seconds: float) -> str:
    """A STOP_AT that many seconds from now, to the millisecond."""
    return f"@{time.time() + seconds:.3f}"


# The stand-in's epochs take 2 s (1.6 s, then 0.4 s to the checkpoints), estimated at 1 s before the first.
EPOCHS_OF_2_S = {"trains": True, "WORKERS": "1", "SECONDS_PER_EPOCH": "1", "FAKE_EPOCH_SECONDS": "1.6"}


@pytest.mark.parametrize(
    ("seconds_left", "epochs"),
    # 3.5 s: the first epoch measures 2 s, so a second would end after STOP_AT (not by the estimate of
    # 1 s); 7 s: the second and third fit (each measured alone), the fourth does not.
    [(3.5, 1), (7.0, 3)],
)
def test_stop_at_stops_a_run_after_the_last_epoch_that_fits_and_carries_it(
    tmp_path: Path, seconds_left: float, epochs: int
) -> None:
    ev, records = tmp_path / "ev", tmp_path / "records"
    started = time.monotonic()
    done, calls = run_evidence(
        tmp_path, "fashion_pilot", ev, STOP_AT=_in_seconds(seconds_left), **EPOCHS_OF_2_S
    )
    assert time.monotonic() - started < seconds_left + 0.5  # not the 10 s of the whole run
    assert done.returncode == 0, done.stderr
    assert calls == [_one_run(5, PLAIN, 0, f"{ev}/fashion_pilot/epochs5")]  # the worker stops with it
    assert f"train_jobs: {PLAIN} seed 0 stopped after epoch {epochs} of 5 to end by STOP_AT" in done.stderr
    carried = f"fashion_pilot/epochs5/runs/{PLAIN}/seed0"
    assert _files(records) == {
        f"{carried}/{name}"
        for name in ("config.json", "history.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt")
    }
    assert len(json.loads((records / carried / "history.json").read_text())) == epochs
    assert (records / carried / "checkpoints/last.ckpt").read_text() == f"epoch {epochs}"

    # On another machine, without STOP_AT, the carried run resumes from its epochs and finishes.
    (tmp_path / "calls.txt").unlink()
    elsewhere = tmp_path / "elsewhere"
    done, calls = run_evidence(tmp_path, "fashion_pilot", elsewhere, trains=True, FAKE_EPOCH_SECONDS="0")
    assert done.returncode == 0, done.stderr
    history = json.loads((elsewhere / carried / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert _files(records / carried) == {"config.json", "history.json", "metrics.json"}
    assert calls[-3:] == [_pilot_report(e, elsewhere) for e in (5, 10, 20)]


def test_stop_at_lets_a_run_finish_whose_last_epoch_fits(tmp_path: Path) -> None:
    ev, records = tmp_path / "ev", tmp_path / "records"
    carried = ev / f"fashion_pilot/epochs5/runs/{PLAIN}/seed0"  # 4 of 5 epochs
    (carried / "checkpoints").mkdir(parents=True)
    (carried / "config.json").write_text("{}")
    (carried / "history.json").write_text(json.dumps([{"epoch": e} for e in range(1, 5)], indent=1))
    # Its last epoch ends after 2 s, with 3 s left: no other epoch would fit, and none is left.
    done, calls = run_evidence(tmp_path, "fashion_pilot", ev, STOP_AT=_in_seconds(3.0), **EPOCHS_OF_2_S)
    assert done.returncode == 0, done.stderr
    assert calls == [_one_run(5, PLAIN, 0, f"{ev}/fashion_pilot/epochs5")]
    assert "stopped" not in done.stderr
    prefix = f"fashion_pilot/epochs5/runs/{PLAIN}/seed0"
    assert _files(records) == {f"{prefix}/{name}.json" for name in ("config", "history", "metrics")}


def test_a_run_that_fails_under_stop_at_fails_the_experiment(tmp_path: Path) -> None:
    done, _ = run_evidence(
        tmp_path,
        "fashion_pilot",
        tmp_path / "ev",
        trains=True,
        STOP_AT="+1 hour",
        WORKERS="1",
        SECONDS_PER_EPOCH="1",
        FAKE_EPOCH_SECONDS="0",
        FAIL_MODEL=AW,
    )
    assert done.returncode == 1
    assert "aw_resnet20_cifar seed 0 failed; see" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        *(("EPOCH_PERCENT", value, "a whole percentage, e.g. 45") for value in ("0", "45%", "fast")),
        *(
            ("SECONDS_PER_EPOCH", value, "a whole number of seconds, e.g. 300")
            for value in ("0", "2.5", "5m")
        ),
    ],
)
def test_a_speed_that_is_not_a_whole_number_is_refused(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    done, calls = run_evidence(
        tmp_path, "fashion_pilot", tmp_path / "ev", STOP_AT="+1 hour", **{variable: value}
    )
    assert done.returncode == 2 and calls == []
    assert f"{variable}: expected {expected}; got '{value}'" in done.stderr


def test_a_stop_at_that_is_not_a_time_is_refused(tmp_path: Path) -> None:
    done, calls = run_evidence(tmp_path, "fashion_pilot", tmp_path / "ev", STOP_AT="teatime soon")
    assert done.returncode == 2 and calls == []
    assert "STOP_AT: expected a time that date -d reads, e.g. 19:30; got 'teatime soon'" in done.stderr


def test_a_stop_at_already_past_is_refused(tmp_path: Path) -> None:
    done, calls = run_evidence(tmp_path, "fashion_pilot", tmp_path / "ev", STOP_AT="1 minute ago")
    assert done.returncode == 2 and calls == []
    assert "STOP_AT: '1 minute ago' is " in done.stderr
    assert "already past; for a time after midnight, write e.g. 'tomorrow 01:30'" in done.stderr


def test_main_runs_train_at_the_pilots_budget_of_10_epochs(tmp_path: Path) -> None:
    done, calls = run_evidence(tmp_path, "fashion", tmp_path / "ev", WORKERS="1")
    assert done.returncode == 0, done.stderr
    assert calls[:2] == [_one_run(10, m, 0, f"{tmp_path}/ev/fashion") for m in (PLAIN, "seresnet20_cifar")]
    assert len(calls) == 40 and all(" --epochs 10 " in call for call in calls)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_main_runs_go_seed_by_seed_then_pair_every_variant(tmp_path: Path, workers: str) -> None:
    ev = tmp_path / "ev"
    _finished_runs(ev / "fashion_pilot/epochs7", (PLAIN, AW), range(1))  # the pilot's seed 0, reused
    done, calls = run_evidence(
        tmp_path, "fashion", ev, trains=True, FASHION_EPOCHS="7", RECORDS=str(tmp_path / "r"), WORKERS=workers
    )
    assert done.returncode == 0, done.stderr
    runs = [
        _one_run(7, m, s, f"{ev}/fashion")
        for s in range(5)
        for m in EIGHT
        if (m, s) not in ((PLAIN, 0), (AW, 0))
    ]
    assert sorted(calls[:-1]) == sorted(runs)
    if workers == "1":
        assert calls[:-1] == runs
    pairs = (
        f"--pair {AW} {PLAIN} --pair aw_seresnet20_cifar seresnet20_cifar "
        "--pair aw_cbamresnet20_cifar cbamresnet20_cifar --pair seresnet20_cifar resnet20_cifar "
        f"--pair cbamresnet20_cifar resnet20_cifar --pair {LOWRANK[0]} {AW} --pair {LOWRANK[1]} {AW}"
    )
    assert calls[-1] == (
        f"-m awconv compare {RECIPE} --epochs 7 --models {' '.join(EIGHT)} --seeds 0 1 2 3 4 {pairs} {CPU} "
        f"--out {ev}/fashion"
    )


def test_more_seeds_train_seeds_5_to_9_of_the_pair_and_report_it_over_ten(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    _finished_runs(ev / "fashion", (PLAIN, AW), range(5))
    done, calls = run_evidence(
        tmp_path,
        "fashion_more",
        ev,
        trains=True,
        FASHION_EPOCHS="7",
        RECORDS=str(tmp_path / "r"),
        WORKERS="1",
    )
    assert done.returncode == 0, done.stderr
    assert calls[:-1] == [_one_run(7, m, s, f"{ev}/fashion_more") for s in range(5, 10) for m in (PLAIN, AW)]
    assert calls[-1] == (
        f"-m awconv compare {RECIPE} --epochs 7 --models {PLAIN} {AW} --seeds 0 1 2 3 4 5 6 7 8 9 "
        f"--pair {AW} {PLAIN} {CPU} --out {ev}/fashion_more"
    )
    reused = json.loads((ev / f"fashion_more/runs/{AW}/seed4/metrics.json").read_text())
    assert reused == {"model": AW, "seed": "4"}


def test_more_seeds_wait_for_every_seed_of_the_main_runs(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    _finished_runs(ev / "fashion", (PLAIN, AW), range(4))
    _finished_runs(ev / "fashion", (PLAIN,), range(4, 5))
    done, calls = run_evidence(tmp_path, "fashion_more", ev, trains=True, RECORDS=str(tmp_path / "r"))
    assert done.returncode == 1 and calls == []
    assert f"fashion_more: {AW} seed 4 of fashion has not finished; run fashion first" in done.stderr


def test_restore_leaves_a_run_this_machine_has_as_it_is(tmp_path: Path) -> None:
    ev, records = tmp_path / "ev", tmp_path / "records"
    prefix = "fashion_pilot/epochs5/runs/resnet20_cifar/seed0"
    (records / prefix).mkdir(parents=True)
    (records / prefix / "config.json").write_text('{"from": "record"}')
    (records / prefix / "history.json").write_text("[1]")
    (ev / prefix).mkdir(parents=True)
    (ev / prefix / "config.json").write_text('{"from": "here"}')  # this machine's run, further on
    done, _ = run_evidence(tmp_path, "fashion_pilot", ev, RECORDS=str(records), WORKERS="1")
    assert done.returncode == 0, done.stderr
    assert (ev / prefix / "config.json").read_text() == '{"from": "here"}'
    assert not (ev / prefix / "history.json").exists()


def test_without_an_experiment_the_whole_header_is_printed(tmp_path: Path) -> None:
    done, calls = run_evidence(tmp_path, "", tmp_path / "ev")
    assert done.returncode == 2 and calls == []
    assert "unknown experiment ''; expected mnist5k" in done.stderr
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    header = script.read_text().split("\nset -euo pipefail")[0].splitlines()[1:]
    assert usage.returncode == 2 and usage.stdout.splitlines() == header
