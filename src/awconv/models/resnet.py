"""ImageNet ResNets with CBAM and with AW-convolution, registered with timm.

Papers: He et al., "Deep Residual Learning for Image Recognition" (arXiv 1512.03385); Hu et al.,
"Squeeze-and-Excitation Networks" (arXiv 1709.01507); Woo et al., "CBAM: Convolutional Block
Attention Module" (arXiv 1807.06521); Zhu et al., "An Attention Module for Convolutional Neural
Networks" (arXiv 2108.08205).

Every model is timm's ``ResNet`` (torchvision's layout and attribute names: ``conv1``, ``bn1``,
``act1``, ``maxpool``, ``layer1``…``layer4``, ``fc``). SE and CBAM are timm's modules at the place
their papers put them: after the last BN of the residual branch, before the addition. ``resnet{D}``
and ``seresnet{D}`` are timm's own; this file adds ``cbamresnet{D}`` and the AW variants
``aw_resnet{D}``, ``aw_seresnet{D}``, ``aw_cbamresnet{D}`` for D in 18, 34, 50, 101, 152.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from awconv.models.aw_policy import convert_blocks, split_aw_kwargs
from awconv.models.pretrained import allow_plain_checkpoints, checkpoint_filter_fn

__all__ = ["DEPTHS", "AWResNet"]


class AWResNet(ResNet):
    """timm's ResNet with ``AWConv2d`` in place of every k×k convolution of the residual blocks.

    The conversion runs after ``ResNet.init_weights``, so the attention generators keep their
    zero-initialised Pointconv2 and a fresh model computes what its plain twin would. Its
    ``load_state_dict`` also takes a plain checkpoint (``allow_plain_checkpoints``): the attention
    generators then keep their initialisation.

    Args:
        *args: ``timm.models.resnet.ResNet``'s positional arguments (``block``, ``layers``).
        aw_kwargs: ``AWConv2d`` options (``reduction``, ``generator``, ``rank``, ``gate``,
            ``pool``, ``min_hidden``, ``impl``) and ``aw_stages``; None for the defaults.
        **kwargs: ``ResNet``'s keyword arguments.

    Shapes:
        input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    def __init__(self, *args: Any, aw_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        convert_blocks(self, aw_kwargs or {})
        allow_plain_checkpoints(self)


def _create(variant: str, pretrained: bool, model_args: dict[str, Any], kwargs: dict[str, Any]) -> ResNet:
    """Builds a plain or, for ``aw_*`` variants, an AW ResNet; AWConv2d options come from kwargs."""
    options = {"pretrained_filter_fn": checkpoint_filter_fn, **model_args, **kwargs}
    if variant.startswith("aw_"):
        aw_kwargs, options = split_aw_kwargs(options)
        return build_model_with_cfg(AWResNet, variant, pretrained, aw_kwargs=aw_kwargs, **options)
    return build_model_with_cfg(ResNet, variant, pretrained, **options)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    """ImageNet metadata; no download URL (these variants have no published weights)."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        **kwargs,
    }


# Blocks per stage of the ImageNet ResNets, by depth.
_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
DEPTHS = tuple(_LAYERS)
_FAMILIES = ("cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")

default_cfgs = generate_default_cfgs({f"{family}{depth}": _cfg() for family in _FAMILIES for depth in DEPTHS})

_SE = {"block_args": {"attn_layer": "se"}}
_CBAM = {"block_args": {"attn_layer": "cbam"}}


def _args(depth: int, **extra: Any) -> dict[str, Any]:
    """``block`` and ``layers`` of the ResNet of this depth, plus ``extra``."""
    return {"block": BasicBlock if depth < 50 else Bottleneck, "layers": _LAYERS[depth], **extra}


@register_model
def cbamresnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 with CBAM in every block."""
    return _create("cbamresnet18", pretrained, _args(18, **_CBAM), kwargs)


@register_model
def cbamresnet34(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-34 with CBAM in every block."""
    return _create("cbamresnet34", pretrained, _args(34, **_CBAM), kwargs)


@register_model
def cbamresnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with CBAM in every block."""
    return _create("cbamresnet50", pretrained, _args(50, **_CBAM), kwargs)


@register_model
def cbamresnet101(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-101 with CBAM in every block."""
    return _create("cbamresnet101", pretrained, _args(101, **_CBAM), kwargs)


@register_model
def cbamresnet152(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-152 with CBAM in every block."""
    return _create("cbamresnet152", pretrained, _args(152, **_CBAM), kwargs)


@register_model
def aw_resnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet18", pretrained, _args(18), kwargs)


@register_model
def aw_resnet34(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-34 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet34", pretrained, _args(34), kwargs)


@register_model
def aw_resnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet50", pretrained, _args(50), kwargs)


@register_model
def aw_resnet101(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-101 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet101", pretrained, _args(101), kwargs)


@register_model
def aw_resnet152(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-152 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet152", pretrained, _args(152), kwargs)


@register_model
def aw_seresnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-18 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet18", pretrained, _args(18, **_SE), kwargs)


@register_model
def aw_seresnet34(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-34 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet34", pretrained, _args(34, **_SE), kwargs)


@register_model
def aw_seresnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-50 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet50", pretrained, _args(50, **_SE), kwargs)


@register_model
def aw_seresnet101(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-101 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet101", pretrained, _args(101, **_SE), kwargs)


@register_model
def aw_seresnet152(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-152 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet152", pretrained, _args(152, **_SE), kwargs)


@register_model
def aw_cbamresnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CBAM-ResNet-18 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet18", pretrained, _args(18, **_CBAM), kwargs)


@register_model
def aw_cbamresnet34(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CBAM-ResNet-34 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet34", pretrained, _args(34, **_CBAM), kwargs)


@register_model
def aw_cbamresnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CBAM-ResNet-50 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet50", pretrained, _args(50, **_CBAM), kwargs)


@register_model
def aw_cbamresnet101(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CBAM-ResNet-101 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet101", pretrained, _args(101, **_CBAM), kwargs)


@register_model
def aw_cbamresnet152(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CBAM-ResNet-152 with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet152", pretrained, _args(152, **_CBAM), kwargs)
