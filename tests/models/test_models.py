"""The ResNet families of awconv.models, checked as timm checks its own models."""

from __future__ import annotations

import copy
import re

import pytest
import timm
import torch
from timm.layers import create_feature_extractor, get_graph_node_names
from torch import nn

import awconv  # noqa: F401  (registers the models)
from awconv import AWConv2d
from awconv.layers import AttentionGenerator
from awconv.models import AWResNet, is_block_conv

IMAGENET_FAMILIES = ("cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")
CIFAR_FAMILIES = ("resnet", "seresnet", "cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
CIFAR_DEPTHS = (20, 32, 56, 110)

# The fast set builds the ImageNet AW models with the small low-rank generator (the full one adds
# about 27 M parameters to ResNet-18); the slow set checks every depth with the defaults.
_CHEAP = {"generator": "lowrank", "rank": 2}
FAST = [
    pytest.param(f"{f}18", 32, _CHEAP if f.startswith("aw_") else {}, id=f"{f}18") for f in IMAGENET_FAMILIES
]
FAST += [pytest.param(f"{f}20_cifar", 32, {}, id=f"{f}20_cifar") for f in CIFAR_FAMILIES]
SLOW = [
    pytest.param(f"{f}{d}", 64, {}, marks=pytest.mark.slow, id=f"{f}{d}" if d > 18 else f"{f}{d}_full")
    for f in IMAGENET_FAMILIES
    for d in IMAGENET_DEPTHS
    if d > 18 or f.startswith("aw_")
]
SLOW += [
    pytest.param(f"{f}{d}_cifar", 32, {}, marks=pytest.mark.slow, id=f"{f}{d}_cifar")
    for f in CIFAR_FAMILIES
    for d in CIFAR_DEPTHS[1:]
]
ALL = FAST + SLOW
# TorchScript and FX in the fast set: one CIFAR and one ImageNet model with AW, SE and CBAM between them.
_EXPORT_FAST = {"aw_cbamresnet20_cifar", "aw_seresnet18", "cbamresnet18"}
EXPORT = [
    p if p.id in _EXPORT_FAST else pytest.param(*p.values, marks=pytest.mark.slow, id=p.id) for p in FAST
]
EXPORT += SLOW


def _perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-zero attention and small non-zero BN scales, so every parameter influences the output.

    The BN scales stay small (0.1-0.3) so that deep perturbed networks do not blow up: with scales
    near 1 a 56-layer AW network's logits reach 1e6 and float rounding decides them.

    At init Pointconv2 is zero (so Pointconv1 gets exactly zero gradient) and timm zeroes each
    block's last BN scale (so nothing inside the residual branch gets a gradient); a gradient check
    at init would pass on ``grad is not None`` alone and prove nothing.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # A fixed Pointconv1: with a random one, all hidden units of a generator whose input is
        # post-ReLU can start dead now and then, which zeroes its gradients and makes tests flaky.
        for module in model.modules():
            if isinstance(module, AttentionGenerator):
                module.pointconv1.weight.normal_(0.0, 0.1, generator=generator)
                module.pointconv1.bias.uniform_(0.05, 0.1, generator=generator)
        for module in model.modules():
            if isinstance(module, AttentionGenerator):
                module.pointconv2.weight.normal_(0.0, 0.05, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.1, 0.3, generator=generator)
    return model


def _input(name: str, size: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("name", "size", "kwargs"), ALL)
def test_forward_eval(name: str, size: int, kwargs: dict) -> None:
    model = timm.create_model(name, **kwargs).eval()
    with torch.no_grad():
        out = model(_input(name, size))
    assert out.shape == (1, model.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "size", "kwargs"), FAST)
def test_backward_reaches_every_parameter(name: str, size: int, kwargs: dict) -> None:
    model = _perturb(timm.create_model(name, num_classes=42, **kwargs)).train()
    out = model(_input(name, size, batch=2))
    assert out.shape == (2, 42)
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without a non-zero gradient: {no_grad}"


@pytest.mark.parametrize(("name", "size", "kwargs"), FAST)
def test_forward_features_head_and_reset_classifier(name: str, size: int, kwargs: dict) -> None:
    model = timm.create_model(name, **kwargs).eval()
    x = _input(name, size)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (1, model.num_features)
        torch.testing.assert_close(model.forward_head(features), model(x))
        assert model.get_classifier() is model.fc
        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features)
    assert model.pretrained_cfg["url"] == ""


@pytest.mark.parametrize(("name", "size", "kwargs"), ALL)
def test_features_only(name: str, size: int, kwargs: dict) -> None:
    model = timm.create_model(name, features_only=True, **kwargs).eval()
    with torch.no_grad():
        outputs = model(_input(name, size))
    assert [o.shape[1] for o in outputs] == model.feature_info.channels()
    assert [size // o.shape[-1] for o in outputs] == model.feature_info.reduction()


@pytest.mark.parametrize(("name", "size", "kwargs"), EXPORT)
def test_torchscript_matches_eager(name: str, size: int, kwargs: dict) -> None:
    model = _perturb(timm.create_model(name, **kwargs)).eval()
    scripted = torch.jit.script(model)
    x = _input(name, size, batch=2)
    with torch.no_grad():
        expected = model(x)
        # The scripted AWConv2d convolves grouped, eager may take another path: float32 rounding
        # grows with depth, so the tolerance scales with the logits.
        torch.testing.assert_close(scripted(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize(("name", "size", "kwargs"), EXPORT)
def test_fx_trace_matches_eager(name: str, size: int, kwargs: dict) -> None:
    model = _perturb(timm.create_model(name, **kwargs)).eval()
    last = get_graph_node_names(model)[1][-1]
    traced = create_feature_extractor(model, [last])
    # AWConv2d stays a leaf module: kept whole, not traced through.
    leaves = [n for n in traced.graph.nodes if n.op == "call_module"]
    aw_leaves = [n for n in leaves if isinstance(traced.get_submodule(n.target), AWConv2d)]
    assert len(aw_leaves) == sum(isinstance(m, AWConv2d) for m in model.modules())
    x = _input(name, size, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(traced(x)[last], model(x))


@pytest.mark.parametrize(("name", "kwargs"), [("aw_cbamresnet18", _CHEAP), ("aw_seresnet20_cifar", {})])
def test_aw_models_start_with_zero_attention_and_equal_their_plain_twin(name: str, kwargs: dict) -> None:
    model = timm.create_model(name, **kwargs).eval()
    layers = [m for m in model.modules() if isinstance(m, AWConv2d)]
    assert layers and all(not m.generator.pointconv2.weight.any() for m in layers)
    plain = timm.create_model(name.removeprefix("aw_")).eval()
    assert plain.load_state_dict(model.state_dict(), strict=False).unexpected_keys
    x = _input(name, 32, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))


@pytest.mark.parametrize(("name", "expected"), [("aw_cbamresnet18", 16), ("aw_resnet20_cifar", 18)])
def test_aw_replaces_exactly_the_block_convs(name: str, expected: int) -> None:
    model = timm.create_model(name, **_CHEAP)
    converted = [n for n, m in model.named_modules() if isinstance(m, AWConv2d)]
    assert len(converted) == expected
    assert all(re.fullmatch(r"layer\d\.\d+\.conv[12]", n) for n in converted)
    plain_kxk = [n for n, m in model.named_modules() if type(m) is nn.Conv2d and max(m.kernel_size) > 1]
    assert "conv1" in plain_kxk  # the stem stays plain
    assert all(not is_block_conv(n, model.get_submodule(n)) for n in plain_kxk)


@pytest.mark.slow
def test_aw_resnet50_converts_only_the_bottleneck_3x3() -> None:
    model = timm.create_model("aw_cbamresnet50")
    converted = [n for n, m in model.named_modules() if isinstance(m, AWConv2d)]
    assert len(converted) == 16 and all(n.endswith(".conv2") for n in converted)


def test_aw_kwargs_pass_through_create_model() -> None:
    model = timm.create_model("aw_resnet18", generator="lowrank", rank=4, reduction=8, gate="sigmoid")
    assert isinstance(model, AWResNet)
    generators = [m.generator for m in model.modules() if isinstance(m, AWConv2d)]
    assert all(g.kind == "lowrank" and g.rank == 4 and g.gate == "sigmoid" for g in generators)
    assert generators[-1].hidden == 512 // 8
    cifar = timm.create_model("aw_cbamresnet20_cifar", pool="global", generator="lowrank")
    assert all(m.generator.pool == "global" for m in cifar.modules() if isinstance(m, AWConv2d))


@pytest.mark.parametrize(
    ("name", "stages"), [("aw_resnet20_cifar", [2, 3]), ("aw_resnet18", [4]), ("aw_resnet18", [1, 3])]
)
def test_aw_stages_limits_aw_to_those_stages(name: str, stages: list[int]) -> None:
    everywhere = timm.create_model(name, **_CHEAP)
    limited = timm.create_model(name, aw_stages=stages, **_CHEAP)
    expected = [n for n, m in everywhere.named_modules() if isinstance(m, AWConv2d) and int(n[5]) in stages]
    assert [n for n, m in limited.named_modules() if isinstance(m, AWConv2d)] == expected
    plain_block_convs = [
        n for n, m in limited.named_modules() if type(m) is nn.Conv2d and is_block_conv(n, m)
    ]
    assert plain_block_convs and all(int(n[5]) not in stages for n in plain_block_convs)


@pytest.mark.parametrize("stages", [[5], [], "2", [True], 3])
def test_bad_aw_stages_names_the_argument(stages: object) -> None:
    with pytest.raises(
        ValueError, match=r"aw_stages must be a non-empty list of stage numbers from \[1, 2, 3\]"
    ):
        timm.create_model("aw_resnet20_cifar", aw_stages=stages)


def test_bad_aw_kwarg_is_refused() -> None:
    with pytest.raises(ValueError, match="generator"):
        timm.create_model("aw_resnet20_cifar", generator="huge")
    with pytest.raises(TypeError):
        timm.create_model("aw_resnet20_cifar", attention_size=3)


def test_registry_lists_every_family() -> None:
    names = set(timm.list_models("aw_*"))
    for family in IMAGENET_FAMILIES[1:]:
        assert {f"{family}{d}" for d in IMAGENET_DEPTHS} <= names
    for family in CIFAR_FAMILIES:
        assert all(timm.is_model(f"{family}{d}_cifar") for d in CIFAR_DEPTHS)
    plain = ("resnet", "seresnet", "cbamresnet")
    assert all(timm.is_model(f"{f}{d}") for f in plain for d in IMAGENET_DEPTHS)


def test_imagenet_models_keep_torchvision_attribute_names() -> None:
    model = timm.create_model("aw_seresnet18")
    for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4", "fc"):
        assert hasattr(model, name)


def test_cifar_model_takes_one_channel_28px_input() -> None:
    model = timm.create_model("aw_cbamresnet20_cifar", in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cifar_resnet_sizes_match_the_paper() -> None:
    # He et al. 2016, table 6: 0.27 M parameters for ResNet-20, 1.7 M for ResNet-110.
    def count(name: str) -> int:
        return sum(p.numel() for p in timm.create_model(name).parameters())

    assert round(count("resnet20_cifar") / 1e6, 2) == 0.27
    assert round(count("resnet110_cifar") / 1e6, 1) == 1.7


def test_deepcopy_keeps_the_model_working() -> None:
    model = copy.deepcopy(timm.create_model("aw_resnet20_cifar")).eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 32, 32))).all()
