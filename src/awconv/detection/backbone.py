"""The ResNet-FPN backbone of awconv's detectors, from torchvision's ``BackboneWithFPN``.

Lin et al., "Feature Pyramid Networks" (CVPR 2017), put on any ResNet registered with timm
(plain, SE, CBAM, AW and their combinations) as torchvision's ``resnet_fpn_backbone`` puts it on
torchvision's ResNets.

Freezing follows torchvision's ``fasterrcnn_resnet50_fpn``: a pretrained backbone has every
BatchNorm replaced by a ``FrozenBatchNorm2d`` and all parameters outside the last
``trainable_layers`` stages stop receiving gradients; a backbone trained from scratch keeps
ordinary BatchNorm and trains whole. The AW attention generators are the exception to freezing:
they stay trainable inside frozen stages too (unless ``train_generators=False``), because a plain
pretrained ResNet has no weights for them: loaded into an AW backbone they start at zero
attention and have to be learned on the detection data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from awconv.layers import AttentionGenerator
from awconv.models import load_pretrained

__all__ = ["FPN_CHANNELS", "STAGES", "create_fpn_backbone", "resnet_fpn_backbone"]

STAGES = ("layer1", "layer2", "layer3", "layer4")
FPN_CHANNELS = 256
# Unfrozen first as ``trainable_layers`` grows, as in torchvision's ``_resnet_fpn_extractor``.
_TRAIN_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")


def _stage_channels(resnet: nn.Module) -> list[int]:
    """Output channels of layer1..layer4, from timm's ``feature_info``."""
    info = getattr(resnet, "feature_info", None)
    channels = {entry["module"]: entry["num_chs"] for entry in info or ()}
    missing = [stage for stage in STAGES if stage not in channels or not hasattr(resnet, stage)]
    if missing:
        raise ValueError(
            f"backbone must be a ResNet with attributes {STAGES} listed in timm's feature_info, "
            f"missing {missing} in {type(resnet).__name__}"
        )
    return [channels[stage] for stage in STAGES]


def resnet_fpn_backbone(
    resnet: nn.Module, *, freeze: bool = True, trainable_layers: int = 3, train_generators: bool = True
) -> BackboneWithFPN:
    """Puts an FPN on layer1..layer4 of a ResNet, frozen as torchvision does (in place).

    Args:
        resnet: a timm ResNet with torchvision attribute names (``conv1``, ``bn1``, ``layer1``..``layer4``).
        freeze: replace BatchNorm by ``FrozenBatchNorm2d`` and freeze the early stages; ``False``
            leaves the ResNet untouched (for training from scratch).
        trainable_layers: with ``freeze``, how many stages, counted from ``layer4`` back to
            ``conv1``, keep training (0-5); 5 also trains ``bn1``'s affine parameters before they
            are frozen.
        train_generators: with ``freeze``, keep the AW attention generators trainable in frozen stages.

    Returns:
        A ``BackboneWithFPN`` mapping images (N, 3, H, W) to an ordered dict of five 256-channel
        maps ``"0"``..``"3"`` (strides 4-32) and ``"pool"`` (stride 64).
    """
    if isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int):
        raise TypeError(f"trainable_layers must be an int in [0, 5], got {trainable_layers!r}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    in_channels = _stage_channels(resnet)
    if freeze:
        resnet = freeze_batch_norm_2d(resnet)
        trained = _TRAIN_ORDER[:trainable_layers]
        for name, parameter in resnet.named_parameters():
            if not name.startswith(trained):
                parameter.requires_grad_(False)
        if train_generators:
            for module in resnet.modules():
                if isinstance(module, AttentionGenerator):
                    module.requires_grad_(True)
    return BackboneWithFPN(
        resnet,
        return_layers={stage: str(index) for index, stage in enumerate(STAGES)},
        in_channels_list=in_channels,
        out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )


def create_fpn_backbone(
    backbone: str | nn.Module,
    *,
    trainable_layers: int = 3,
    pretrained_backbone: str | Path | None = None,
    freeze: bool | None = None,
    train_generators: bool = True,
    **model_kwargs: Any,
) -> BackboneWithFPN:
    """A ResNet by timm name (or module), optionally with plain pretrained weights, under an FPN.

    Args:
        backbone: a timm model name (``"resnet50"``, ``"aw_seresnet101"``, ...; depth 18-152) or
            a ResNet module with torchvision attribute names and timm's ``feature_info``.
        trainable_layers: in a frozen backbone, the stages that train, counted from ``layer4`` (0-5).
        pretrained_backbone: plain ResNet weights loaded through ``awconv.load_pretrained`` before
            freezing (only with a backbone name).
        freeze: FrozenBatchNorm2d and ``trainable_layers``; default (``None``): when
            ``pretrained_backbone`` is given, else the backbone trains whole with ordinary
            BatchNorm (torchvision's rule; a randomly initialised frozen BatchNorm would, with
            timm's zero-initialised last BatchNorm of each block, switch the residual branches off).
        train_generators: keep AW attention generators trainable inside frozen stages.
        **model_kwargs: options of the backbone's model function (``generator``, ``rank``, ...).
    """
    if isinstance(backbone, str):
        if not timm.is_model(backbone):
            raise ValueError(f"backbone {backbone!r} is not a registered timm model (e.g. 'aw_resnet50')")
        resnet = timm.create_model(backbone, pretrained=False, **model_kwargs)
        if pretrained_backbone is not None:
            load_pretrained(resnet, pretrained_backbone)
    elif isinstance(backbone, nn.Module):
        if pretrained_backbone is not None or model_kwargs:
            raise ValueError("pretrained_backbone and backbone options need a backbone name, got a module")
        resnet = backbone
    else:
        raise TypeError(f"backbone must be a model name or an nn.Module, got {type(backbone).__name__}")
    if freeze is None:
        freeze = pretrained_backbone is not None
    return resnet_fpn_backbone(
        resnet, freeze=freeze, trainable_layers=trainable_layers, train_generators=train_generators
    )
