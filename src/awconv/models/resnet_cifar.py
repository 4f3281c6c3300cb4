"""Small-image ResNets (28–32 px inputs) with SE, CBAM and AW-convolution, registered with timm.

Paper: He et al., "Deep Residual Learning for Image Recognition" (arXiv 1512.03385), section 4.2:
a 3×3 stem with 16 channels, no max-pool, three stages of 16, 32 and 64 channels with ``n`` basic
blocks each (depth ``6n + 2``: 20, 32, 56, 110), parameter-free shortcuts (option A: subsample and
zero-pad the channels), global average pooling and one linear layer.

SE and CBAM are timm's modules after the last BN of each residual branch; the AW variants turn both
3×3 convolutions of every block into ``AWConv2d``. Names: ``resnet{D}_cifar``,
``seresnet{D}_cifar``, ``cbamresnet{D}_cifar`` and ``aw_`` + each of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock
from torch import Tensor, nn

from awconv.models.aw_policy import convert_blocks, split_aw_kwargs

__all__ = ["DEPTHS", "STAGE_CHANNELS", "AWCifarResNet", "CifarResNet", "PadShortcut"]

# Output channels of the three stages; the stem has the first stage's width.
STAGE_CHANNELS = (16, 32, 64)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and append zero channels.

    Args:
        stride: spatial subsampling factor.
        extra_channels: zero channels appended after the input's.

    Shapes:
        input (N, C, H, W) -> output (N, C + extra_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C, H, W) -> (N, C + extra_channels, ceil(H / stride), ceil(W / stride))."""
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. built from timm's ``BasicBlock``.

    Args:
        layers: blocks in each of the three stages (16, 32 and 64 channels).
        num_classes: classifier outputs; 0 for none (``forward`` returns pooled features).
        in_chans: input channels (1 for MNIST).
        attn_layer: timm attention after each block's last BN: None, ``"se"`` or ``"cbam"``.
        global_pool: timm pool type of the head.
        drop_rate: dropout before the classifier.

    Shapes:
        input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 3, 3),
        num_classes: int = 10,
        in_chans: int = 3,
        attn_layer: str | None = None,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != len(STAGE_CHANNELS):
            raise ValueError(f"layers must give the blocks of 3 stages, got {tuple(layers)}")
        channels = STAGE_CHANNELS
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, channels[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [{"num_chs": channels[0], "reduction": 1, "module": "act1"}]
        in_channels, reduction = channels[0], 1
        for index, (depth, out_channels) in enumerate(zip(layers, channels, strict=True)):
            stride = 1 if index == 0 else 2
            reduction *= stride
            blocks = []
            for block_index in range(depth):
                block_stride = stride if block_index == 0 else 1
                shortcut = None
                if block_stride != 1 or in_channels != out_channels:
                    shortcut = PadShortcut(block_stride, out_channels - in_channels)
                blocks.append(
                    BasicBlock(in_channels, out_channels, block_stride, shortcut, attn_layer=attn_layer)
                )
                in_channels = out_channels
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            self.feature_info.append(
                {"num_chs": out_channels, "reduction": reduction, "module": f"layer{index + 1}"}
            )
        self.num_stages = len(layers)
        self.num_features = self.head_hidden_size = in_channels
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        """The classifier layer (``fc``)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """Replaces the head with a fresh one of ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (N, in_chans, H, W) -> (N, 64, H / 4, W / 4) (rounded up)."""
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: (N, C, h, w) -> logits (N, num_classes), or pooled (N, C) with ``pre_logits``."""
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, in_chans, H, W) -> (N, num_classes)."""
        return self.forward_head(self.forward_features(x))


class AWCifarResNet(CifarResNet):
    """``CifarResNet`` with ``AWConv2d`` in place of both 3×3 convolutions of every block.

    Args:
        *args: ``CifarResNet``'s positional arguments.
        aw_kwargs: ``AWConv2d`` options (``reduction``, ``generator``, ``rank``, ``gate``,
            ``pool``, ``min_hidden``, ``impl``); None for the defaults.
        **kwargs: ``CifarResNet``'s keyword arguments.

    Shapes:
        input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    def __init__(self, *args: Any, aw_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        convert_blocks(self, aw_kwargs or {})


def _create(
    variant: str, pretrained: bool, model_args: dict[str, Any], kwargs: dict[str, Any]
) -> CifarResNet:
    """Builds a plain or, for ``aw_*`` variants, an AW CIFAR ResNet; AWConv2d options come from kwargs."""
    feature_cfg = {"out_indices": (0, 1, 2, 3)}
    if variant.startswith("aw_"):
        aw_kwargs, kwargs = split_aw_kwargs(kwargs)
        return build_model_with_cfg(
            AWCifarResNet,
            variant,
            pretrained,
            feature_cfg=feature_cfg,
            aw_kwargs=aw_kwargs,
            **dict(model_args, **kwargs),
        )
    return build_model_with_cfg(
        CifarResNet, variant, pretrained, feature_cfg=feature_cfg, **dict(model_args, **kwargs)
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    """CIFAR-10 metadata; no download URL."""
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        **kwargs,
    }


# Blocks per stage by depth: depth = 6n + 2.
_LAYERS = {20: (3, 3, 3), 32: (5, 5, 5), 56: (9, 9, 9), 110: (18, 18, 18)}
DEPTHS = tuple(_LAYERS)
_FAMILIES = ("resnet", "seresnet", "cbamresnet", "aw_resnet", "aw_seresnet", "aw_cbamresnet")

default_cfgs = generate_default_cfgs(
    {f"{family}{depth}_cifar": _cfg() for family in _FAMILIES for depth in DEPTHS}
)


def _args(depth: int, attn_layer: str | None = None) -> dict[str, Any]:
    return {"layers": _LAYERS[depth], "attn_layer": attn_layer}


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for 32 px images."""
    return _create("resnet20_cifar", pretrained, _args(20), kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for 32 px images."""
    return _create("resnet32_cifar", pretrained, _args(32), kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for 32 px images."""
    return _create("resnet56_cifar", pretrained, _args(56), kwargs)


@register_model
def resnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-110 for 32 px images."""
    return _create("resnet110_cifar", pretrained, _args(110), kwargs)


@register_model
def seresnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-20 for 32 px images."""
    return _create("seresnet20_cifar", pretrained, _args(20, "se"), kwargs)


@register_model
def seresnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-32 for 32 px images."""
    return _create("seresnet32_cifar", pretrained, _args(32, "se"), kwargs)


@register_model
def seresnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-56 for 32 px images."""
    return _create("seresnet56_cifar", pretrained, _args(56, "se"), kwargs)


@register_model
def seresnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-110 for 32 px images."""
    return _create("seresnet110_cifar", pretrained, _args(110, "se"), kwargs)


@register_model
def cbamresnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-20 for 32 px images."""
    return _create("cbamresnet20_cifar", pretrained, _args(20, "cbam"), kwargs)


@register_model
def cbamresnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-32 for 32 px images."""
    return _create("cbamresnet32_cifar", pretrained, _args(32, "cbam"), kwargs)


@register_model
def cbamresnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-56 for 32 px images."""
    return _create("cbamresnet56_cifar", pretrained, _args(56, "cbam"), kwargs)


@register_model
def cbamresnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-110 for 32 px images."""
    return _create("cbamresnet110_cifar", pretrained, _args(110, "cbam"), kwargs)


@register_model
def aw_resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet20_cifar", pretrained, _args(20), kwargs)


@register_model
def aw_resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet32_cifar", pretrained, _args(32), kwargs)


@register_model
def aw_resnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet56_cifar", pretrained, _args(56), kwargs)


@register_model
def aw_resnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-110 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_resnet110_cifar", pretrained, _args(110), kwargs)


@register_model
def aw_seresnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-20 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet20_cifar", pretrained, _args(20, "se"), kwargs)


@register_model
def aw_seresnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-32 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet32_cifar", pretrained, _args(32, "se"), kwargs)


@register_model
def aw_seresnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-56 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet56_cifar", pretrained, _args(56, "se"), kwargs)


@register_model
def aw_seresnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-ResNet-110 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_seresnet110_cifar", pretrained, _args(110, "se"), kwargs)


@register_model
def aw_cbamresnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-20 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet20_cifar", pretrained, _args(20, "cbam"), kwargs)


@register_model
def aw_cbamresnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-32 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet32_cifar", pretrained, _args(32, "cbam"), kwargs)


@register_model
def aw_cbamresnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-56 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet56_cifar", pretrained, _args(56, "cbam"), kwargs)


@register_model
def aw_cbamresnet110_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CBAM-ResNet-110 for 32 px images with AW-convolution; kwargs take the AWConv2d options."""
    return _create("aw_cbamresnet110_cifar", pretrained, _args(110, "cbam"), kwargs)
