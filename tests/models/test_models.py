"""Every model awconv registers, checked as timm's tests/test_models.py checks timm's own.

The models are found in timm's registry (every entry point defined in ``awconv``), so a family added
later is tested without editing this file. Per model: forward against an independent float64
reference, backward reaching every parameter, the default configuration, ``features_only``,
``forward_intermediates`` and ``prune_intermediate_layers``, TorchScript, FX, ``drop_path_rate``,
gradient checkpointing and ``group_matcher``. The fast set runs the smallest depth of each family
(18, 20) on tiny inputs, the ImageNet AW models with the small ``lowrank`` generator; the slow set
runs every other depth with the defaults.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import timm
import torch
from reference import relative_error
from resnet_reference import resnet_reference
from timm.layers import DropPath, create_feature_extractor, get_graph_node_names
from timm.models import group_parameters, model_entrypoint
from torch import nn

import awconv  # noqa: F401  (registers the models)
from awconv import AWConv2d
from awconv.layers import AttentionGenerator
from awconv.models import AWResNet, is_block_conv

MODELS = sorted(n for n in timm.list_models() if model_entrypoint(n).__module__.startswith("awconv."))
IMAGENET_FAMILIES = ("cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")
CIFAR_FAMILIES = ("resnet", "seresnet", "cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
CIFAR_DEPTHS = (20, 32, 56, 110)
_CHEAP = {"generator": "lowrank", "rank": 1}


def _is_cifar(name: str) -> bool:
    return name.endswith("_cifar")


def _fast(name: str) -> bool:
    return re.search(r"resnet(18|20_cifar)$", name) is not None


def _kwargs(name: str) -> dict:
    """The fast set builds ImageNet AW models with the lowrank generator (full adds 32 M to ResNet-18)."""
    return _CHEAP if _fast(name) and name.startswith("aw_") and not _is_cifar(name) else {}


def _params(names: list[str], fast: set[str] | None = None) -> list:
    """One pytest param per model; models outside ``fast`` (default: the smallest depths) are slow."""
    fast = {n for n in names if _fast(n)} if fast is None else fast
    return [pytest.param(n, marks=() if n in fast else pytest.mark.slow, id=n) for n in names]


ALL = _params(MODELS)
AW = _params([n for n in MODELS if n.startswith("aw_")])
# TorchScript and FX compile the whole network (seconds each): in the fast set, one CIFAR and one
# ImageNet model with AW, SE and CBAM between them.
EXPORT = _params(MODELS, fast={"aw_cbamresnet20_cifar", "aw_seresnet18", "cbamresnet18"})
# The ImageNet models run timm's ResNet code for the head, intermediates, stochastic depth and
# checkpointing, and an AW layer costs the same at any input size (its attention has the weights'
# shape): in the fast set cbamresnet18 and aw_seresnet18 cover these for AWResNet, the CIFAR models
# cover awconv's own code; gradient checkpointing (two backward passes) skips aw_seresnet18.
_CIFAR_FAST = {n for n in MODELS if _fast(n) and _is_cifar(n)}
TIMM_CODE = _params(MODELS, fast=_CIFAR_FAST | {"cbamresnet18", "aw_seresnet18"})
CHECKPOINTING = _params(MODELS, fast=_CIFAR_FAST | {"cbamresnet18"})


def _create(name: str, **kwargs) -> nn.Module:
    """The model with a fixed random init: a test's result must not depend on the tests before it."""
    torch.manual_seed(0)
    return timm.create_model(name, **{**_kwargs(name), **kwargs})


def _size(name: str) -> int:
    """Tiny inputs: 32 px reaches 1x1 after ImageNet's reduction 32; 16 px leaves CIFAR's 4x4."""
    return 16 if _is_cifar(name) else 32


def _input(name: str, batch: int = 2, size: int | None = None) -> torch.Tensor:
    size = size or _size(name)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


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


@pytest.mark.parametrize("name", ALL)
def test_model_forward(name: str) -> None:
    """Logits equal the float64 reference written from the papers; grad checkpointing changes nothing."""
    model = _perturb(_create(name)).eval()
    x = _input(name)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, model.num_classes)
        assert relative_error(out, resnet_reference(model, x)) < 1e-5
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), out)


@pytest.mark.parametrize("name", ALL)
def test_model_backward(name: str) -> None:
    """Every parameter gets a non-zero gradient."""
    model = _perturb(_create(name, num_classes=42)).train()
    out = model(_input(name))
    assert out.shape == (2, 42)
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without a non-zero gradient: {no_grad}"


@pytest.mark.parametrize("name", CHECKPOINTING)
def test_model_grad_checkpointing(name: str) -> None:
    """Recomputing the blocks in the backward pass gives the same gradients."""
    model = _perturb(_create(name)).train()
    x = _input(name)
    model(x).square().mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing()
    model(x).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-4, atol=1e-6, msg=f"gradient of {n}")


@pytest.mark.parametrize("name", TIMM_CODE)
def test_model_default_cfgs(name: str) -> None:
    """Feature, pooled and head sizes match the configuration and the model's attributes."""
    model = _create(name).eval()
    cfg = model.pretrained_cfg
    assert cfg["url"] == "" and cfg["num_classes"] == model.num_classes
    state_dict = model.state_dict()
    assert f"{cfg['classifier']}.weight" in state_dict and f"{cfg['first_conv']}.weight" in state_dict
    assert model.get_classifier() is model.fc and model.get_classifier(name_only=True) == "fc"
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, model.num_features, *cfg["pool_size"])
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(x), pre_logits)
        model.reset_classifier(0, "")
        torch.testing.assert_close(model(x), features)
        bare = _create(name, num_classes=0, global_pool="")
        bare.load_state_dict(model.state_dict())
        torch.testing.assert_close(bare.eval()(x), features)


@pytest.mark.parametrize("name", ALL)
def test_model_features_only(name: str) -> None:
    """Each map has its ``feature_info`` width and ``ceil(size / reduction)`` pixels, and equals the
    model's intermediate output: timm's module-list wrapper and, for the CIFAR models (whose
    ``forward_intermediates`` is awconv's), its ``forward_intermediates`` wrapper."""
    model = _perturb(_create(name)).eval()
    x = _input(name, batch=1)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)
        for feature_cls in ("list", "getter") if _is_cifar(name) else ("list",):
            features = _create(name, features_only=True, feature_cls=feature_cls).eval()
            network = features.model if feature_cls == "getter" else features
            assert network.load_state_dict(model.state_dict(), strict=False).missing_keys == []
            outputs = features(x)
            info = features.feature_info
            assert [o.shape[1] for o in outputs] == info.channels()
            assert [o.shape[-1] for o in outputs] == [math.ceil(_size(name) / r) for r in info.reduction()]
            assert len(set(info.reduction())) == len(outputs)  # one map per resolution
            for output, intermediate in zip(outputs, expected, strict=True):
                torch.testing.assert_close(output, intermediate)


@pytest.mark.parametrize("name", TIMM_CODE)
def test_model_forward_intermediates(name: str) -> None:
    """As timm's models: the stages of ``feature_info``, selection, early stop, checkpointing, pruning."""
    model = _perturb(_create(name)).eval()
    x = _input(name, batch=1)
    stages = len(model.feature_info)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert [t.shape[1] for t in intermediates] == [i["num_chs"] for i in model.feature_info]
        last = model.forward_intermediates(x, indices=1, intermediates_only=True)
        torch.testing.assert_close(last, intermediates[-1:])
        _, picked = model.forward_intermediates(x, indices=[0], stop_early=True)
        torch.testing.assert_close(picked, intermediates[:1])
        model.set_grad_checkpointing()
        torch.testing.assert_close(model.forward_intermediates(x)[1], intermediates)
        model.set_grad_checkpointing(False)
        kept = model.prune_intermediate_layers(indices=[stages - 2])
        assert kept == [stages - 2] and model.num_classes == 0
        assert model.num_features == model.feature_info[stages - 2]["num_chs"]
        torch.testing.assert_close(model.forward_features(x), intermediates[-2])
        torch.testing.assert_close(model.forward_intermediates(x, indices=kept)[1], intermediates[-2:-1])


@pytest.mark.parametrize("name", EXPORT)
def test_model_torchscript(name: str) -> None:
    model = _perturb(_create(name)).eval()
    scripted = torch.jit.script(model)
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
        # The scripted AWConv2d convolves grouped, eager may take another path: float32 rounding
        # grows with depth, so the tolerance scales with the logits.
        torch.testing.assert_close(scripted(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("name", EXPORT)
def test_model_fx(name: str) -> None:
    model = _perturb(_create(name)).eval()
    last = get_graph_node_names(model)[1][-1]
    traced = create_feature_extractor(model, [last])
    # AWConv2d stays a leaf module: kept whole, not traced through.
    leaves = [n for n in traced.graph.nodes if n.op == "call_module"]
    aw_leaves = [n for n in leaves if isinstance(traced.get_submodule(n.target), AWConv2d)]
    assert len(aw_leaves) == sum(isinstance(m, AWConv2d) for m in model.modules())
    x = _input(name)
    with torch.no_grad():
        torch.testing.assert_close(traced(x)[last], model(x))


@pytest.mark.parametrize("name", TIMM_CODE)
def test_model_drop_path_rate(name: str) -> None:
    """Stochastic depth: timm's linear rule over the blocks, random in training, off in eval."""
    model = _perturb(_create(name, drop_path_rate=0.5))
    blocks = [m for n, m in model.named_modules() if re.fullmatch(r"layer\d\.\d+", n)]
    drop_paths = [b.drop_path for b in blocks]
    rates = [0.0 if d is None else d.drop_prob for d in drop_paths]
    assert rates == pytest.approx([0.5 * i / (len(blocks) - 1) for i in range(len(blocks))])
    assert all(isinstance(d, DropPath) for d in drop_paths[1:])
    x = _input(name)
    with torch.no_grad():
        model.train()
        outputs = []
        for seed in (0, 0, 1):
            torch.manual_seed(seed)
            outputs.append(model(x))
        torch.testing.assert_close(outputs[0], outputs[1])
        assert not torch.allclose(outputs[0], outputs[2])
        evaluated = model.eval()(x)
        for drop_path in drop_paths[1:]:
            drop_path.drop_prob = 0.0
        torch.testing.assert_close(evaluated, model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_model_group_matcher(name: str) -> None:
    """Coarse groups: stem, each stage, head; fine groups: stem, each block, head."""
    model = _create(name)
    stages = len([n for n, _ in model.named_children() if n.startswith("layer")])
    blocks = len([n for n, _ in model.named_modules() if re.fullmatch(r"layer\d\.\d+", n)])
    for coarse, expected in ((True, stages), (False, blocks)):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        assert len(groups) == expected + 2
        assert all(re.match(r"(conv1|bn1)\.", n) for n in groups[0])
        assert all(n.startswith("fc.") for n in groups[len(groups) - 1])


def test_registry_lists_every_family() -> None:
    expected = {f"{f}{d}" for f in IMAGENET_FAMILIES for d in IMAGENET_DEPTHS}
    expected |= {f"{f}{d}_cifar" for f in CIFAR_FAMILIES for d in CIFAR_DEPTHS}
    assert set(MODELS) == expected
    assert all(timm.is_model(f"{f}{d}") for f in ("resnet", "seresnet") for d in IMAGENET_DEPTHS)


@pytest.mark.parametrize(("name", "kwargs"), [("aw_cbamresnet18", _CHEAP), ("aw_seresnet20_cifar", {})])
def test_aw_models_start_with_zero_attention_and_equal_their_plain_twin(name: str, kwargs: dict) -> None:
    model = timm.create_model(name, **kwargs).eval()
    layers = [m for m in model.modules() if isinstance(m, AWConv2d)]
    assert layers and all(not m.generator.pointconv2.weight.any() for m in layers)
    plain = timm.create_model(name.removeprefix("aw_")).eval()
    assert plain.load_state_dict(model.state_dict(), strict=False).unexpected_keys
    x = _input(name, size=32)
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


def test_imagenet_models_keep_torchvision_attribute_names() -> None:
    model = timm.create_model("aw_seresnet18", **_CHEAP)
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


def test_deepcopy_computes_what_the_original_does() -> None:
    model = _perturb(timm.create_model("aw_resnet20_cifar")).eval()
    clone = copy.deepcopy(model)
    x = _input("aw_resnet20_cifar")
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)
        clone.layer1[0].conv1.generator.pointconv2.weight.add_(0.1)  # the copy owns its parameters
        assert not torch.allclose(clone(x), expected)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
