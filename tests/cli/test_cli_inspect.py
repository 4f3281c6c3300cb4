"""``awconv inspect``: end to end on tiny data, the report's files, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from reference import randomize_generator
from tiny_data import make_cifar

from awconv.cli import main
from awconv.engine.checkpoint import export_safetensors
from awconv.layers import AWConv2d

STAGE3 = ["--model-arg", "aw_stages=[3]"]  # 6 AW layers keep the figures quick


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, str]:
    """(data spec, weights path) of an AW ResNet-20 with non-zero attention in its last stage."""
    root = tmp_path_factory.mktemp("inspect")
    data = f"cifar:{make_cifar(root / 'data', train=8, val=10, num_classes=3)}"
    torch.manual_seed(0)
    model = timm.create_model("aw_resnet20_cifar", num_classes=3, in_chans=3, aw_stages=[3])
    for layer in model.modules():
        if isinstance(layer, AWConv2d):
            randomize_generator(layer, 0.2)
    export_safetensors(model.state_dict(), root / "weights.safetensors")
    return data, str(root / "weights.safetensors")


@pytest.mark.slow  # 15-40 s: ten figures
def test_inspect_writes_the_report(trained, tmp_path: Path, capsys) -> None:
    data, weights = trained
    out = tmp_path / "report"
    argv = ["inspect", "aw_resnet20_cifar", "--weights", weights, "--data", data, "--out", str(out)]
    assert (
        main([*argv, *STAGE3, "--image-size", "8", "--images", "7", "--batch-size", "3", "--draw", "1"]) == 0
    )
    assert f"6 AW layers, 7 images; report {out / 'report.md'}" in capsys.readouterr().out
    statistics = json.loads((out / "statistics.json").read_text())
    assert statistics["images"] == 7 and sum(statistics["class_counts"]) == 7
    assert statistics["configuration"]["model"] == "aw_resnet20_cifar (aw_stages=[3])"
    layers = statistics["layers"]
    assert [layer["name"] for layer in layers] == [f"layer3.{b}.conv{k}" for b in (0, 1, 2) for k in (1, 2)]
    assert all(layer["images"] == 7 and layer["image_share"] > 0 for layer in layers)
    report = (out / "report.md").read_text()
    assert "| layer3.2.conv2 | 64 x 64 x 3 x 3 |" in report and "cifar:" in report
    assert "<td>layer3.2.conv2</td>" in (out / "report.html").read_text()
    figures = ["modulation_histograms", "layer_profile", "spectra", "kernel_distances"]
    figures += [f"attention/{layer['name']}" for layer in layers]
    for figure in figures:
        assert (out / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--images", "0", *STAGE3], "images must be a positive int"),
        (["--weights", "/no/such.safetensors"], "weights file '/no/such.safetensors' does not exist"),
        ([], "does not fit"),  # weights of the last-stage model into the all-stages one
    ],
    ids=["no-images", "missing-weights", "other-model"],
)
def test_inspect_errors_are_one_line(trained, tmp_path: Path, capsys, extra, message) -> None:
    data, weights = trained
    argv = ["inspect", "aw_resnet20_cifar", "--weights", weights, "--data", data, "--out", str(tmp_path)]
    assert main([*argv, *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_inspect_refuses_a_model_without_aw_layers(tmp_path: Path, capsys) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=4, val=4, num_classes=2)}"
    model = timm.create_model("resnet20_cifar", num_classes=2, in_chans=3)
    export_safetensors(model.state_dict(), tmp_path / "plain.safetensors")
    argv = ["inspect", "resnet20_cifar", "--weights", str(tmp_path / "plain.safetensors"), "--data", data]
    assert main([*argv, "--out", str(tmp_path / "report")]) == 2
    assert "has no AWConv2d layer" in capsys.readouterr().err
