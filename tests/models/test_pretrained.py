"""load_pretrained: plain ResNet checkpoints into SE/CBAM/AW variants."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from awconv import load_pretrained
from awconv.models import LoadResult


def _torchvision_resnet18(num_classes: int = 1000) -> nn.Module:
    """A torchvision ResNet-18 with random weights and non-trivial BN statistics."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _save(state: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def plain() -> nn.Module:
    return _torchvision_resnet18()


@pytest.fixture(scope="module")
def checkpoint(plain: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(plain.state_dict(), tmp_path_factory.mktemp("ckpt") / "resnet18.pth")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_aw_model_gives_the_plain_logits(plain: nn.Module, tmp_path: Path, suffix: str) -> None:
    path = _save(plain.state_dict(), tmp_path / f"resnet18{suffix}")
    model = timm.create_model("aw_resnet18").eval()
    result = load_pretrained(model, path)
    assert isinstance(result, LoadResult)
    assert set(result.matched) == set(plain.state_dict())
    assert result.new and all(".generator." in key for key in result.new)
    assert result.unused == ()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-4, atol=1e-5)


def test_timm_plain_model_loads_torchvision_names_exactly(plain: nn.Module, checkpoint: Path) -> None:
    model = timm.create_model("resnet18").eval()
    result = load_pretrained(model, checkpoint)
    assert result.new == () and result.unused == ()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["seresnet18", "cbamresnet18", "aw_cbamresnet18"])
def test_attention_modules_keep_their_init(checkpoint: Path, name: str) -> None:
    kwargs = {"generator": "lowrank"} if name.startswith("aw_") else {}
    model = timm.create_model(name, **kwargs)
    se_before = {k: v.clone() for k, v in model.state_dict().items() if ".se." in k}
    result = load_pretrained(model, checkpoint)
    assert result.new and all(".se." in key or ".generator." in key for key in result.new)
    for key, value in se_before.items():
        torch.testing.assert_close(model.state_dict()[key], value)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_and_module_prefixed_checkpoints(plain: nn.Module, tmp_path: Path, wrapper: str) -> None:
    state = {f"module.{k}": v for k, v in plain.state_dict().items()}
    path = _save({wrapper: state, "epoch": 3}, tmp_path / "wrapped.pth")
    model = timm.create_model("resnet18")
    result = load_pretrained(model, path)
    assert len(result.matched) == len(state)
    torch.testing.assert_close(model.conv1.weight, plain.conv1.weight)


def test_a_training_run_checkpoint_fills_an_aw_model(plain: nn.Module, tmp_path: Path) -> None:
    """``awconv train`` saves Lightning checkpoints: the network's tensors under ``state_dict`` as
    ``model.<name>``; ``--pretrained runs/x/checkpoints/last.ckpt`` must fill a model from one."""
    state = {f"model.{k}": v for k, v in plain.state_dict().items()}
    path = _save({"state_dict": state, "epoch": 3, "optimizer_states": []}, tmp_path / "last.ckpt")
    model = timm.create_model("aw_resnet18").eval()
    result = load_pretrained(model, path)
    assert len(result.matched) == len(state) and all(".generator." in key for key in result.new)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x), plain.eval()(x))


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    path = _save(_torchvision_resnet18(num_classes=10).state_dict(), tmp_path / "ten.pth")
    model = timm.create_model("resnet18")
    with pytest.raises(ValueError, match=r"'fc\.weight'.*\(10, 512\).*\(1000, 512\)"):
        load_pretrained(model, path)


def test_exclude_leaves_the_head_alone(tmp_path: Path) -> None:
    path = _save(_torchvision_resnet18(num_classes=10).state_dict(), tmp_path / "ten.pth")
    model = timm.create_model("aw_resnet18", num_classes=7, generator="lowrank")
    head = model.fc.weight.clone()
    result = load_pretrained(model, path, exclude=("fc.",))
    assert set(result.unused) == {"fc.weight", "fc.bias"}
    assert {"fc.weight", "fc.bias"} <= set(result.new)
    torch.testing.assert_close(model.fc.weight, head)


def test_another_depth_is_refused_unless_not_strict(checkpoint: Path) -> None:
    model = timm.create_model("resnet34")
    with pytest.raises(ValueError, match=r"layer1\.2\.conv1\.weight"):
        load_pretrained(model, checkpoint)
    result = load_pretrained(model, checkpoint, strict=False)
    assert "layer1.2.conv1.weight" in result.new


def test_extra_checkpoint_tensors_are_refused(plain: nn.Module, tmp_path: Path) -> None:
    path = _save({**plain.state_dict(), "extra.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.weight"):
        load_pretrained(timm.create_model("resnet18"), path)


def test_summary_is_logged(checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="awconv.models.pretrained"):
        result = load_pretrained(timm.create_model("resnet18"), checkpoint)
    assert result.summary() in caplog.text


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_pretrained(timm.create_model("resnet18"), tmp_path / "missing.pth")
    path = _save({"epoch": 3}, tmp_path / "no_tensors.pth")
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_pretrained(timm.create_model("resnet18"), path)


class _Payload:
    """Any pickled object other than tensors and plain containers."""


def test_checkpoints_are_read_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="was refused"):
        load_pretrained(timm.create_model("resnet18"), path)
