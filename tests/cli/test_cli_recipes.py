"""``--config`` files and shipped recipes, ``awconv average``, ``eval --ema``, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_data import make_cifar

from awconv.cli import build_parser, explicit_options, main
from awconv.cli.train import recipe_from_args

TINY = ["--epochs", "1", "--batch-size", "8", "--image-size", "8", "--workers", "0", "--accelerator", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _untimed(run_dir: Path) -> list[dict]:
    rows = json.loads((run_dir / "history.json").read_text())
    return [{k: v for k, v in row.items() if k != "train_images_per_s"} for row in rows]


def test_a_runs_config_json_reruns_it_and_average_and_eval_ema_use_it(tmp_path: Path, capsys) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=16, val=8, num_classes=3)}"
    first, again = tmp_path / "x", tmp_path / "y"
    options = ["--ema", "0.5", "--keep-top", "1", "--mixup", "0.2", "--optimizer", "lamb", "--lr", "0.01"]
    assert (
        main(["train", "test_resnet", "--data", data, "--out", str(first), "--no-progress", *TINY, *options])
        == 0
    )
    assert main(["train", "--config", str(first / "config.json"), "--out", str(again), "--no-progress"]) == 0
    a = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(again / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _untimed(first) == _untimed(again)
    saved = json.loads((again / "config.json").read_text())
    assert saved["optimizer"] == "lamb" and saved["ema"] == 0.5 and saved["keep_top"] == 1
    capsys.readouterr()

    assert main(["average", str(first), "--workers", "0", "--accelerator", "cpu", "--no-progress"]) == 0
    result = json.loads((first / "average-top1.json").read_text())
    assert (
        f"average-top1.safetensors (epochs {', '.join(map(str, result['epochs']))})"
        in capsys.readouterr().out
    )
    assert main(["eval", "--run", str(first), "--ema", "--workers", "0", "--accelerator", "cpu"]) == 0
    history = json.loads((first / "history.json").read_text())
    best_ema = max(history, key=lambda row: row["val_ema_top1"])
    out = capsys.readouterr().out
    assert "best-ema.safetensors" in out and f"loss {best_ema['val_ema_loss']:.4f}" in out


def _recipe(argv: list[str]):
    args = build_parser().parse_args(argv)
    args.explicit = explicit_options(argv)
    return recipe_from_args(args, run_dir=str(args.out or "runs/x"))


def test_command_line_options_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("lr: 8e-3\nepochs: 7\nmixup: 0.3\nbetas: [0.8, 0.95]\nmodel: test_resnet\ndata: digits\n")
    config = _recipe(["train", "--config", str(path), "--epochs", "3"])
    assert (config.model, config.data, config.lr, config.epochs, config.mixup) == (
        "test_resnet",
        "digits",
        0.008,
        3,
        0.3,
    )
    assert config.betas == [0.8, 0.95]
    assert _recipe(["train", "resnet18", "--config", str(path), "--lr", "0.1"]).model == "resnet18"


def test_shipped_recipes_hold_their_sources_values() -> None:
    from importlib import resources

    from awconv.engine.choices import RECIPES

    folder = resources.files("awconv.engine.classification") / "recipes"
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml")) == sorted(
        f"{r}.yaml" for r in RECIPES
    )
    a3 = _recipe(["train", "resnet50", "--data", "digits", "--config", "timm-resnet-a3"])
    assert (a3.optimizer, a3.lr, a3.weight_decay, a3.epochs, a3.warmup_epochs) == (
        "lamb",
        0.008,
        0.02,
        100,
        5,
    )
    assert (a3.mixup, a3.cutmix, a3.auto_augment, a3.image_size, a3.val_crop_pct) == (
        0.1,
        1.0,
        "rand-m6-mstd0.5-inc1",
        160,
        0.95,
    )
    tv = _recipe(["train", "resnet50", "--data", "digits", "--config", "torchvision-resnet"])
    assert (tv.optimizer, tv.lr, tv.weight_decay, tv.schedule, tv.step_epochs, tv.gamma, tv.epochs) == (
        "sgd",
        0.1,
        1e-4,
        "step",
        30,
        0.1,
        90,
    )
    compare = build_parser().parse_args(
        ["compare", "--models", "a", "--data", "digits", "--config", "timm-resnet-a3"]
    )
    assert compare.config == "timm-resnet-a3" and compare.ema is None and compare.keep_top == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "test_resnet", "--data", "digits", "--config", "no-such-recipe"],
            "--config 'no-such-recipe' is neither",
        ),
        (
            ["train", "test_resnet", "--data", "digits", "--config", "{bad}"],
            "unknown key 'weight_decy' (closest: 'weight_decay')",
        ),
        (["train", "test_resnet", "--data", "digits", "--ema", "1.5"], "--ema must be a decay in (0, 1)"),
        (
            ["train", "test_resnet", "--data", "digits", "--auto-augment", "rand"],
            "--auto-augment must be one of",
        ),
        (
            ["train", "test_resnet", "--data", "digits", "--layer-decay", "2"],
            "--layer-decay must be a number in (0, 1]",
        ),
        (
            ["train", "test_resnet", "--data", "digits", "--config", "{bad}", "--resume"],
            "--config with --resume",
        ),
        (["average", "{run}"], "holds no checkpoints/top/*.ckpt: train it with --keep-top K"),
        (
            ["compare", "--models", "test_resnet", "--data", "digits", "--cutmix", "-1"],
            "--cutmix must be a number >= 0",
        ),
    ],
    ids=[
        "no-recipe",
        "unknown-key",
        "ema",
        "auto-augment",
        "layer-decay",
        "config-resume",
        "average",
        "compare",
    ],
)
def test_bad_recipe_input_prints_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"weight_decy": 1}))
    (tmp_path / "run").mkdir()
    argv = [arg.replace("{bad}", str(bad)).replace("{run}", str(tmp_path / "run")) for arg in argv]
    assert main([*argv, "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()
