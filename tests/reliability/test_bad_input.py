"""Bad input to the public entry points: an error that names the argument and what was expected.

Layers, ``convert``, ``timm.create_model`` with AW options, ``load_pretrained``, the data loaders
and the command line (exit status 2, one readable line, no traceback).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch  # noqa: F401 (imported here, its log handler keeps the real stderr, not a test's)
import pytest
import timm
import torch
from torch import nn

from awconv import AWConv2d, load_pretrained
from awconv.cli import main
from awconv.convert import convert
from awconv.data.classification import build_classification_data
from awconv.detection import fasterrcnn
from awconv.engine.classification import ClassificationDataModule


@pytest.fixture(autouse=True)
def _fresh_logging():
    handlers = list(logging.root.handlers)
    yield
    logging.root.handlers[:] = handlers


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: AWConv2d(4, 4, 0), ValueError, "kernel_size, stride and dilation must be positive"),
        (lambda: AWConv2d(4, 4, "a"), TypeError, "kernel_size must be an int or a pair"),
        (lambda: AWConv2d(4, 4, 3, stride=1.5), TypeError, "stride must be an int or a pair"),
        (lambda: AWConv2d(4, 4, 3, padding=-1), ValueError, "padding must be non-negative"),
        (lambda: AWConv2d(4, 4, 3, padding="foo"), ValueError, "padding must be an int, a pair, 'same'"),
        (lambda: AWConv2d(4.0, 4, 3), ValueError, "in_channels must be a positive int"),
        (lambda: AWConv2d(4, 4, 3, groups=3), ValueError, "divisible by groups"),
        (lambda: AWConv2d(4, 4, 3, reduction=0), ValueError, "reduction must be a positive int"),
        (lambda: AWConv2d(4, 4, 3, gate="relu"), ValueError, "gate must be one of"),
        (lambda: AWConv2d(4, 4, 3)(torch.randn(1, 4, 2, 2)), ValueError, "more than the padded input"),
        (lambda: AWConv2d(4, 4, 3)(torch.ones(1, 4, 5, 5, dtype=torch.long)), TypeError, "floating-point"),
        (
            lambda: AWConv2d(4, 4, 3)(torch.randn(5, 5)),
            ValueError,
            r"input must have shape \(N, 4, H, W\) or \(4, H, W\)",
        ),
        (lambda: convert("model"), TypeError, "model must be a torch.nn.Module"),
        (
            lambda: convert(nn.Sequential(nn.Conv2d(3, 3, 1)), include=3),
            TypeError,
            "include must be a callable",
        ),
        (
            lambda: convert(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 3)), generator="big"),
            ValueError,
            "generator must be one of",
        ),
        (
            lambda: timm.create_model("aw_resnet20_cifar", generator="bad"),
            ValueError,
            "generator must be one of",
        ),
        (
            lambda: timm.create_model("aw_resnet18", reduction="x"),
            ValueError,
            "reduction must be a positive int",
        ),
        (
            lambda: timm.create_model("aw_resnet20_cifar", generator="lowrank", rank=0),
            ValueError,
            "rank must be a positive int",
        ),
        (
            lambda: timm.create_model("aw_resnet20_cifar", foo=1),
            TypeError,
            "unexpected keyword argument 'foo'",
        ),
        (lambda: load_pretrained("model", "x.pth"), TypeError, "model must be a torch.nn.Module"),
        (lambda: build_classification_data(3), TypeError, "data must be a string"),
        (
            lambda: build_classification_data("digits", image_size=0),
            ValueError,
            "image_size must be a positive",
        ),
        (lambda: build_classification_data("imagefolder:"), ValueError, "needs a directory"),
        (
            lambda: ClassificationDataModule("digits", batch_size=0),
            ValueError,
            "batch_size must be a positive",
        ),
        (
            lambda: fasterrcnn("resnet18", num_classes=3, min_size=0),
            ValueError,
            "min_size must be a positive",
        ),
    ],
)
def test_library_errors_name_the_argument(build, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        build()
    assert len(str(raised.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "cannot be read"),
        (b"garbage", "cannot be read"),
        (None, "cannot be read"),  # a real checkpoint cut in half
    ],
    ids=["empty", "garbage", "truncated"],
)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_unreadable_weights_name_the_file(
    tmp_path: Path, content: bytes | None, message: str, suffix: str
) -> None:
    model = timm.create_model("resnet20_cifar")
    path = tmp_path / f"weights{suffix}"
    if content is None:
        from awconv.engine.checkpoint import export_safetensors

        whole = tmp_path / f"whole{suffix}"
        if suffix == ".pth":
            torch.save(model.state_dict(), whole)
        else:
            export_safetensors(model.state_dict(), whole)
        content = whole.read_bytes()[: whole.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as raised:
        load_pretrained(model, path)
    assert str(path) in str(raised.value) and len(str(raised.value).splitlines()) == 1


def test_weights_of_another_model_name_the_file(tmp_path: Path) -> None:
    from awconv.engine.checkpoint import export_safetensors, load_weights

    path = tmp_path / "r20.safetensors"
    export_safetensors(timm.create_model("resnet20_cifar").state_dict(), path)
    with pytest.raises(ValueError, match=r"r20\.safetensors' does not fit CifarResNet: missing") as raised:
        load_weights(timm.create_model("resnet32_cifar"), path)
    assert len(str(raised.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "test_resnet", "--data", "digits", "--epochs", "0"],
            "--epochs must be a positive int, got 0",
        ),
        (
            ["train", "test_resnet", "--data", "digits", "--batch-size", "0"],
            "--batch-size must be a positive int",
        ),
        (
            ["train", "test_resnet", "--data", "digits", "--image-size", "-3"],
            "--image-size must be a positive int",
        ),
        (
            ["train", "aw_resnet20_cifar", "--data", "digits", "--model-arg", "gate=relu"],
            "gate must be one of",
        ),
        (
            ["train", "aw_resnet20_cifar", "--data", "digits", "--model-arg", "foo=1"],
            "--model-arg foo=1: aw_resnet20_cifar takes no argument 'foo' (it takes ",
        ),
        (["train", "test_resnet", "--data", "digits", "--pretrained", "/no/such.pth"], "not found"),
        (["eval", "test_resnet", "--data", "digits", "--weights", "GARBAGE"], "cannot be read"),
        (
            ["detect", "train", "--data", "foo", "--val-data", "bar"],
            "--data must be coco:IMAGES_DIR,ANNOTATIONS_JSON",
        ),
        (["detect", "eval", "--weights", "GARBAGE", "--data", "coco:a,b.json"], "cannot be read"),
        (["profile", "no_such_model"], "model must be a registered model name"),
        (
            ["compare", "--models", "resnet20_cifar", "--data", "digits", "--seeds", "0", "0"],
            "must not repeat",
        ),
    ],
    ids=[
        "epochs",
        "batch-size",
        "image-size",
        "aw-gate",
        "unknown-model-arg",
        "missing-pretrained",
        "garbage-weights",
        "detect-spec",
        "detect-garbage-weights",
        "profile-model",
        "compare-seeds",
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, argv: list[str], message: str, capsys) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"garbage")
    argv = [str(garbage) if arg == "GARBAGE" else arg for arg in argv]
    extra = ["--workers", "0"] if argv[0] in ("train", "eval", "compare") or argv[1] == "eval" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("awconv ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err


def test_debug_shows_the_traceback() -> None:
    with pytest.raises(ValueError, match="--epochs must be a positive int"):
        main(["--debug", "train", "test_resnet", "--data", "digits", "--epochs", "0", "--workers", "0"])
