"""End-to-end training on tiny generated data sets: loss, outputs, exact resume, the compare report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import load_file
from tiny_data import make_cifar, make_image_folder

from awconv.engine.classification import (
    ClassifierModule,
    TrainConfig,
    compare_classifiers,
    evaluate_classifier,
    parse_model_spec,
    train_classifier,
)
from awconv.engine.history import read_history
from awconv.engine.machine import describe_machine
from awconv.engine.statistics import mean_ci

TINY_MODEL = "test_resnet"


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine more threads spin against each other (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _recipe(data: str, run_dir: Path, **overrides) -> TrainConfig:
    values = dict(
        model=TINY_MODEL,
        data=data,
        run_dir=str(run_dir),
        epochs=3,
        batch_size=8,
        image_size=8,
        workers=0,
        lr=0.05,
        weight_decay=0.0,
        accelerator="cpu",
        progress_bar=False,
    )
    return TrainConfig(**{**values, **overrides})


def test_image_folder_training_lowers_the_loss_and_writes_the_run_dir(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", per_class=8)
    run_dir = tmp_path / "run"
    summary = train_classifier(
        _recipe(
            f"imagefolder:{root}", run_dir, optimizer="adamw", lr=3e-3, warmup_epochs=1, label_smoothing=0.1
        )
    )
    history = read_history(run_dir / "history.json")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in ("config.json", "metrics.json", "curves.png", "best.safetensors", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert list((run_dir / "logs" / "csv").glob("version_*/metrics.csv"))
    assert list((run_dir / "logs" / "tensorboard").glob("version_*/events.out.tfevents.*"))
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["num_classes"], config["in_chans"], config["optimizer"]) == (2, 3, "adamw")
    assert summary["best_val_top1"] == max(row["val_top1"] for row in history)
    metrics = evaluate_classifier(
        TINY_MODEL,
        str(run_dir / "best.safetensors"),
        f"imagefolder:{root}",
        image_size=8,
        workers=0,
        accelerator="cpu",
    )
    assert metrics["val_top1"] == pytest.approx(summary["best_val_top1"])


def test_cifar_training_lowers_the_loss(tmp_path: Path) -> None:
    root = make_cifar(tmp_path / "data", train=48, num_classes=4)
    run_dir = tmp_path / "run"
    train_classifier(_recipe(f"cifar:{root}", run_dir, schedule="step", step_epochs=2, clip_grad=1.0))
    history = read_history(run_dir / "history.json")
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["lr"] == pytest.approx(0.005)


class _StopAfter(pl.Callback):
    """Stops a run after ``epochs`` epochs, as a killed job would, once the checkpoints are written."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    root = make_cifar(tmp_path / "data", train=24, num_classes=3)
    straight = _recipe(f"cifar:{root}", tmp_path / "straight", epochs=2, warmup_epochs=0.5)
    train_classifier(straight)
    interrupted = dataclasses.replace(straight, run_dir=str(tmp_path / "resumed"))
    train_classifier(interrupted, callbacks=[_StopAfter(1)])
    assert len(read_history(tmp_path / "resumed" / "history.json")) == 1
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_classifier(interrupted)
    train_classifier(dataclasses.replace(interrupted, resume="last"))

    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    assert _untimed(tmp_path / "straight") == _untimed(tmp_path / "resumed")


def _untimed(run_dir: Path) -> list[dict]:
    """The run's history without its measured speed (``train_images_per_s``)."""
    return [
        {k: v for k, v in row.items() if k != "train_images_per_s"}
        for row in read_history(run_dir / "history.json")
    ]


def test_resume_without_a_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_classifier(_recipe("digits", tmp_path / "run", resume="last"))


def test_compare_report_lists_every_run_and_agrees_with_the_metrics_files(tmp_path: Path, capsys) -> None:
    root = make_cifar(tmp_path / "data", train=16, val=8, num_classes=3)
    models = [TINY_MODEL, f"{TINY_MODEL}:drop_rate=0.1"]
    recipe = _recipe(f"cifar:{root}", tmp_path / "unused", epochs=1)
    results, report = compare_classifiers(models, [0, 1], recipe, tmp_path / "cmp")
    printed = capsys.readouterr().out
    markdown = report.read_text()
    html = (tmp_path / "cmp" / "report.html").read_text()
    machine = describe_machine(torch.device("cpu"))
    assert f"both measured when the report was written, one model after another, on {machine}." in markdown
    assert (tmp_path / "cmp" / "val_top1_per_epoch.png").is_file()
    assert (tmp_path / "cmp" / "top1_vs_params.png").is_file()
    for spec, result in zip(models, results, strict=True):
        name, kwargs = parse_model_spec(spec)
        top1 = []
        for seed in (0, 1):
            run_dir = tmp_path / "cmp" / "runs" / spec.replace(":", "_") / f"seed{seed}"
            metrics = json.loads((run_dir / "metrics.json").read_text())
            assert (metrics["model"], metrics["model_kwargs"], metrics["seed"]) == (name, kwargs, seed)
            top1.append(100 * metrics["final_val_top1"])
            assert f"| {spec} | {seed} | {100 * metrics['final_val_top1']:.2f} |" in markdown
            assert metrics["machines"] == [machine]
            assert f"| {metrics['machines'][0]} | {run_dir} |" in markdown
        mean, half = mean_ci(top1)
        row = f"| {spec} | {mean:.2f} ± {half:.2f} | 2 | {result.params / 1e6:.3f} |"
        assert row in markdown and row in printed
        eval_rate, train_rate = (
            f"{rate:,.0f}" for rate in (result.images_per_second, result.train_images_per_second)
        )
        assert f"| {eval_rate} | {train_rate} |\n" in markdown and result.train_images_per_second > 0
        assert spec in html

    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "cmp").rglob("metrics.json")}
    compare_classifiers(models, [0, 1], recipe, tmp_path / "cmp")  # finished runs are reused
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cmp").rglob("metrics.json")} == mtimes
    with pytest.raises(ValueError, match=r"another configuration: --lr was 0\.05, now 0\.2"):
        compare_classifiers(models, [0], dataclasses.replace(recipe, lr=0.2), tmp_path / "cmp")


def test_compare_pairs_models_by_seed(tmp_path: Path, capsys) -> None:
    root = make_cifar(tmp_path / "data", train=16, val=8, num_classes=3)
    models = [TINY_MODEL, f"{TINY_MODEL}:drop_rate=0.1", f"{TINY_MODEL}:drop_rate=0.2"]
    recipe = _recipe(f"cifar:{root}", tmp_path / "unused", epochs=1)
    results, report = compare_classifiers(models, [0, 1, 2], recipe, tmp_path / "cmp", pairs=[models[2:0:-1]])
    markdown, printed = report.read_text(), capsys.readouterr().out
    top1 = [result.top1_by_seed for result in results]
    differences = [top1[2][seed] - top1[1][seed] for seed in (0, 1, 2)]
    mean, half = mean_ci(differences)
    row = f"| {models[2]} | {models[1]} | {mean:+.2f} ± {half:.2f} |"
    assert "## Paired by seed" in markdown and row in markdown and row in printed
    assert f"| {models[1]} | {models[0]} |" not in markdown  # only the pair asked for
    _, report = compare_classifiers(
        models[:2], [0, 1], recipe, tmp_path / "cmp"
    )  # default: each vs the first
    assert f"| {models[1]} | {models[0]} |" in report.read_text()
    with pytest.raises(ValueError, match="pairs must name two different models"):
        compare_classifiers(models, [0], recipe, tmp_path / "cmp", pairs=[(models[0], "resnet18")])


def test_model_spec_keeps_commas_inside_brackets() -> None:
    assert parse_model_spec("aw_resnet20_cifar:aw_stages=[2,3],rank=4,gate=none") == (
        "aw_resnet20_cifar",
        {"aw_stages": [2, 3], "rank": 4, "gate": "none"},
    )
    with pytest.raises(
        ValueError, match=r"model 'resnet18:rank' \(name:key=value,...\) expects KEY=VALUE, got 'rank'"
    ):
        parse_model_spec("resnet18:rank")


def test_mean_ci_uses_the_t_distribution() -> None:
    mean, half = mean_ci([1.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(12.7062 * 1.0, rel=1e-4)  # t(0.975, 1) * s / sqrt(2)


def test_best_safetensors_holds_plain_model_keys(tmp_path: Path) -> None:
    root = make_cifar(tmp_path / "data", train=8, val=4, num_classes=2)
    train_classifier(_recipe(f"cifar:{root}", tmp_path / "run", epochs=1))
    weights = load_file(tmp_path / "run" / "best.safetensors")
    assert weights and not any(k.startswith("model.") for k in weights)
    module = ClassifierModule(
        TINY_MODEL, num_classes=2, pretrained=str(tmp_path / "run" / "best.safetensors")
    )
    for key, value in module.model.state_dict().items():
        assert torch.equal(value, weights[key]), key


class _WhatTrainingRan(pl.Callback):
    """Records, for the first training batch, the logits' dtype, the stem convolution's input and
    weight memory formats, and whether the network was compiled."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        network = pl_module.model
        stem = next(
            m for m in network.modules() if getattr(m, "weight", None) is not None and m.weight.dim() == 4
        )
        self.seen["compiled"] = network._compiled_call_impl is not None
        if self.seen["compiled"]:
            return

        def record_stem(module, inputs, output) -> None:
            if module.training and "stem_input_channels_last" not in self.seen:
                (x,) = inputs
                self.seen["stem_input_channels_last"] = _strictly_channels_last(x)
                self.seen["stem_weight_channels_last"] = _strictly_channels_last(module.weight)
                self.seen["stem_output_dtype"] = output.dtype

        def record_logits(module, inputs, output) -> None:
            if module.training and "logits_dtype" not in self.seen:
                self.seen["logits_dtype"] = output.dtype

        stem.register_forward_hook(record_stem)
        network.register_forward_hook(record_logits)


def _strictly_channels_last(tensor: torch.Tensor) -> bool:
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"precision": "bf16", "channels_last": True},
            {
                "compiled": False,
                "stem_input_channels_last": True,
                "stem_weight_channels_last": True,
                "stem_output_dtype": torch.bfloat16,
                "logits_dtype": torch.bfloat16,
            },
        ),
        pytest.param({"compile": True}, {"compiled": True}, marks=pytest.mark.slow),
    ],
    ids=["bf16-channels-last", "compile"],
)
def test_precision_layout_and_compile_options_train(tmp_path: Path, options: dict, expected: dict) -> None:
    """The options reach the network: bf16 autocast, channels-last weights and inputs, compilation."""
    root = make_cifar(tmp_path / "data", train=8, val=4, num_classes=2)
    recorder = _WhatTrainingRan()
    summary = train_classifier(
        _recipe(f"cifar:{root}", tmp_path / "run", epochs=1, **options), callbacks=[recorder]
    )
    assert 0.0 <= summary["final_val_top1"] <= 1.0 and summary["epochs"] == 1
    assert recorder.seen == expected
