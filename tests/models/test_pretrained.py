"""Plain ResNet checkpoints into SE/CBAM/AW variants: ``load_pretrained``, ``--pretrained``, timm's routes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from timm.models import model_entrypoint
from torch import nn

from awconv import AWConv2d, load_pretrained
from awconv.models import LoadResult

AW_MODELS = sorted(
    n for n in timm.list_models("aw_*") if model_entrypoint(n).__module__.startswith("awconv.")
)


def _randomize_bn(model: nn.Module, scales: tuple[float, float] = (0.5, 1.5)) -> nn.Module:
    """Non-trivial BN scales, shifts and statistics, so that a tensor left out changes the logits.

    Deep networks need small ``scales``: with scales near 1, 100 layers amplify float rounding
    until it decides the logits.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(*scales)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _torchvision_resnet18(num_classes: int = 1000) -> nn.Module:
    """A torchvision ResNet-18 with random weights and non-trivial BN statistics."""
    torch.manual_seed(0)
    return _randomize_bn(torchvision.models.resnet18(num_classes=num_classes))


def _save(state: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def _attention_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every tensor a plain ResNet lacks (AW generators, SE, CBAM)."""
    plain = set(_torchvision_resnet18().state_dict())
    return {k: v.clone() for k, v in model.state_dict().items() if k not in plain and not k.startswith("fc.")}


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
    assert result.unused == () and result.reset == () and result.adapted == ()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-4, atol=1e-5)


def test_a_state_dict_loads_as_a_file_does(plain: nn.Module) -> None:
    model = timm.create_model("aw_resnet18", generator="lowrank").eval()
    result = load_pretrained(model, plain.state_dict())
    assert set(result.matched) == set(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="checkpoint must be a file path or a state dict"):
        load_pretrained(model, 3)


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
    before = _attention_tensors(model)
    assert any(".se." in k for k in before) and (".generator." in "".join(before)) == name.startswith("aw_")
    result = load_pretrained(model, checkpoint)
    assert set(result.new) == set(before)
    after = model.state_dict()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_and_module_prefixed_checkpoints(plain: nn.Module, tmp_path: Path, wrapper: str) -> None:
    state = {f"module.{k}": v for k, v in plain.state_dict().items()}
    path = _save({wrapper: state, "epoch": 3}, tmp_path / "wrapped.pth")
    model = timm.create_model("resnet18")
    result = load_pretrained(model, path)
    assert len(result.matched) == len(state)
    torch.testing.assert_close(model.conv1.weight, plain.conv1.weight)


def test_a_training_run_checkpoint_fills_an_aw_model(plain: nn.Module, tmp_path: Path) -> None:
    """``awconv train`` saves Lightning checkpoints: the LightningModule's tensors under ``state_dict``,
    the network's as ``model.<name>``, beside tensors of its own (here a loss weight) that are not
    the network's; ``--pretrained runs/x/checkpoints/last.ckpt`` must take the network's alone."""
    state = {f"model.{k}": v for k, v in plain.state_dict().items()}
    state["criterion.weight"] = torch.ones(1000)
    path = _save({"state_dict": state, "epoch": 3, "optimizer_states": []}, tmp_path / "last.ckpt")
    model = timm.create_model("aw_resnet18").eval()
    result = load_pretrained(model, path)
    assert set(result.matched) == set(plain.state_dict()) and result.unused == ()
    assert all(".generator." in key for key in result.new)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x), plain.eval()(x))


def test_another_class_count_leaves_the_classifier_at_its_init(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ten = _torchvision_resnet18(num_classes=10)
    path = _save(ten.state_dict(), tmp_path / "ten.pth")
    model = timm.create_model("aw_resnet18", num_classes=7, generator="lowrank").eval()
    head = {k: v.clone() for k, v in model.fc.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="awconv.models.pretrained"):
        result = load_pretrained(model, path)
    assert set(result.reset) == set(result.unused) == {"fc.weight", "fc.bias"}
    assert {"fc.weight", "fc.bias"} <= set(result.new)
    assert "classifier left at its init" in result.summary() and result.summary() in caplog.text
    for key, value in head.items():
        torch.testing.assert_close(model.fc.state_dict()[key], value, rtol=0, atol=0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # the rest of the network is the checkpoint's
        torch.testing.assert_close(
            model.forward_head(model.forward_features(x), pre_logits=True),
            torch.flatten(nn.Sequential(*list(ten.children())[:-1])(x), 1),
        )
    headless = timm.create_model("resnet18", num_classes=0)  # fc = Identity: nothing to fill
    assert set(load_pretrained(headless, path).reset) == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize("in_chans", [1, 4])
def test_another_channel_count_adapts_the_input_convolution(tmp_path: Path, in_chans: int) -> None:
    """timm's adapt_input_conv: one channel gets the sum of the RGB filters (so a grey image gives
    the RGB model's features); more channels repeat the RGB filters, scaled by 3 / in_chans."""
    plain = _randomize_bn(timm.create_model("resnet20_cifar", num_classes=100))
    path = _save(plain.state_dict(), tmp_path / "r20_c100.safetensors")
    model = timm.create_model("aw_resnet20_cifar", in_chans=in_chans).eval()
    result = load_pretrained(model, path)
    assert result.adapted == ("conv1.weight",) and set(result.reset) == {"fc.weight", "fc.bias"}
    rgb = plain.conv1.weight
    expected = rgb.sum(1, keepdim=True) if in_chans == 1 else torch.cat([rgb, rgb[:, :1]], 1) * 3 / 4
    torch.testing.assert_close(model.conv1.weight, expected)
    if in_chans == 1:
        grey = torch.rand(2, 1, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(
                model.forward_features(grey),
                plain.forward_features(grey.expand(-1, 3, -1, -1)),
                rtol=1e-4,
                atol=1e-5,
            )


def test_a_shape_mismatch_elsewhere_names_key_and_shapes(tmp_path: Path) -> None:
    wide = torchvision.models.resnet18()
    wide.layer1[0].conv1 = nn.Conv2d(64, 32, 3, padding=1, bias=False)
    path = _save(wide.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(
        ValueError, match=r"'layer1\.0\.conv1\.weight'.*\(32, 64, 3, 3\).*\(64, 64, 3, 3\)"
    ) as error:
        load_pretrained(timm.create_model("aw_resnet18", generator="lowrank"), path)
    assert len(str(error.value).splitlines()) == 1 and "wide.pth" in str(error.value)
    stem = torchvision.models.resnet18()
    stem.conv1 = nn.Conv2d(3, 64, 5, 2, 2, bias=False)  # another kernel size is not adaptable
    with pytest.raises(ValueError, match=r"'conv1\.weight'.*\(64, 3, 5, 5\)"):
        load_pretrained(timm.create_model("resnet18"), stem.state_dict())


def test_exclude_leaves_tensors_alone(checkpoint: Path) -> None:
    model = timm.create_model("aw_resnet18", generator="lowrank")
    layer4 = {k: v.clone() for k, v in model.layer4.state_dict().items()}
    result = load_pretrained(model, checkpoint, exclude=("layer4.",))
    assert result.unused and all(k.startswith("layer4.") for k in result.unused) and result.reset == ()
    for key, value in layer4.items():
        torch.testing.assert_close(model.layer4.state_dict()[key], value, rtol=0, atol=0)


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


def test_pretrained_option_fine_tunes_to_another_class_and_channel_count(tmp_path: Path) -> None:
    """``awconv train aw_resnet20_cifar --data digits --pretrained r20_c100.safetensors``: a 100-class,
    3-channel checkpoint into a 10-class, 1-channel model (ClassifierModule is what --pretrained builds)."""
    from awconv.engine.classification.module import ClassifierModule

    plain = _randomize_bn(timm.create_model("resnet20_cifar", num_classes=100))
    path = _save(plain.state_dict(), tmp_path / "r20_c100.safetensors")
    torch.manual_seed(0)
    module = ClassifierModule("aw_resnet20_cifar", num_classes=10, in_chans=1, pretrained=str(path))
    torch.testing.assert_close(module.model.conv1.weight, plain.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(module.model.layer3[2].conv2.weight, plain.layer3[2].conv2.weight)
    torch.manual_seed(0)
    fresh = timm.create_model("aw_resnet20_cifar", num_classes=10, in_chans=1)
    torch.testing.assert_close(module.model.fc.weight, fresh.fc.weight, rtol=0, atol=0)


@pytest.mark.slow
def test_train_command_fine_tunes_from_another_head_and_channel_count(tmp_path: Path, capsys) -> None:
    from awconv.cli import main

    path = _save(
        _randomize_bn(timm.create_model("resnet20_cifar", num_classes=100)).state_dict(),
        tmp_path / "r20_c100.safetensors",
    )
    argv = [
        "train",
        "aw_resnet20_cifar",
        "--data",
        "digits",
        "--pretrained",
        str(path),
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--workers",
        "0",
        "--accelerator",
        "cpu",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    assert "best val top-1" in capsys.readouterr().out


# timm's own routes, for every aw_* model: pretrained=True with a local file, and checkpoint_path.
TIMM_ROUTE_FAST = {"aw_resnet18", "aw_resnet20_cifar", "aw_seresnet20_cifar", "aw_cbamresnet20_cifar"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in TIMM_ROUTE_FAST else pytest.mark.slow) for n in AW_MODELS]
)
def test_timm_routes_load_the_plain_checkpoint(name: str, tmp_path: Path) -> None:
    """The checkpoint of the model without AW loads through ``pretrained_cfg_overlay=dict(file=...)``
    and ``checkpoint_path=``: every tensor is the checkpoint's, the generators keep their init, so
    the logits are the plain model's."""
    torch.manual_seed(0)
    plain = _randomize_bn(timm.create_model(name.removeprefix("aw_")), scales=(0.1, 0.3))
    path = _save(plain.state_dict(), tmp_path / "plain.safetensors")
    kwargs = {"generator": "lowrank"} if "cifar" not in name else {}
    size = 16 if "cifar" in name else 32
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = plain(x)
        overlay = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
        loaded = timm.create_model(name, checkpoint_path=str(path), **kwargs)
        for model in (overlay, loaded):
            state = model.state_dict()
            assert all(torch.equal(state[k], v) for k, v in plain.state_dict().items())
            assert not any(
                m.generator.pointconv2.weight.any() for m in model.modules() if isinstance(m, AWConv2d)
            )
            torch.testing.assert_close(model.eval()(x), expected, rtol=1e-4, atol=1e-5)


def test_timm_route_adapts_the_classifier_and_channels_as_timm_does(tmp_path: Path) -> None:
    plain = _randomize_bn(timm.create_model("resnet20_cifar", num_classes=100))
    path = _save(
        {"state_dict": {f"model.{k}": v for k, v in plain.state_dict().items()}}, tmp_path / "run.ckpt"
    )
    torch.manual_seed(0)
    model = timm.create_model(
        "aw_resnet20_cifar",
        pretrained=True,
        num_classes=10,
        in_chans=1,
        pretrained_cfg_overlay={"file": str(path), "num_classes": 100},  # what the file holds
    )
    torch.manual_seed(0)
    fresh = timm.create_model("aw_resnet20_cifar", in_chans=1)
    torch.testing.assert_close(model.conv1.weight, plain.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.fc.weight, fresh.fc.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.layer2[0].bn1.running_var, plain.layer2[0].bn1.running_var)


def test_timm_routes_load_a_plain_resnet_into_an_se_variant(checkpoint: Path) -> None:
    """SE modules, like the generators, keep their init when the checkpoint has none of them."""
    torch.manual_seed(0)
    fresh = timm.create_model("aw_seresnet18", generator="lowrank")
    torch.manual_seed(0)
    model = timm.create_model("aw_seresnet18", checkpoint_path=str(checkpoint), generator="lowrank")
    expected = _attention_tensors(fresh)
    for key, value in _attention_tensors(model).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_a_state_dict_with_some_generator_tensors_is_refused() -> None:
    model = timm.create_model("aw_resnet20_cifar")
    state = model.state_dict()
    del state["layer1.0.conv1.generator.pointconv1.weight"]
    with pytest.raises(
        RuntimeError, match=r"Missing key\(s\).*layer1\.0\.conv1\.generator\.pointconv1\.weight"
    ):
        model.load_state_dict(state)
    plain = {k: v for k, v in state.items() if ".generator." not in k}
    assert model.load_state_dict(plain).missing_keys == []
    wrapper = nn.Sequential(model)  # as inside a LightningModule: the keys carry a prefix
    assert wrapper.load_state_dict({f"0.{k}": v for k, v in plain.items()}).missing_keys == []
