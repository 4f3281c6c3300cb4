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

import torch
import torch.nn.functional as F
from timm.layers import DropPath, create_classifier
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.resnet import BasicBlock
from torch import Tensor, nn

from awconv.models.aw_policy import convert_blocks, split_aw_kwargs
from awconv.models.pretrained import allow_plain_checkpoints, checkpoint_filter_fn

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
    """The CIFAR ResNet of He et al. built from timm's ``BasicBlock``, with timm's model interface.

    ``forward_features``, ``forward_head(pre_logits=...)``, ``forward_intermediates``,
    ``prune_intermediate_layers``, ``reset_classifier``, ``group_matcher`` and
    ``set_grad_checkpointing`` behave as in timm's ``ResNet``; ``feature_info`` lists the three
    stages (reductions 1, 2 and 4; the stem has the first stage's resolution and width).

    Args:
        layers: blocks in each of the three stages (16, 32 and 64 channels).
        num_classes: classifier outputs; 0 for none (``forward`` returns pooled features).
        in_chans: input channels (1 for MNIST).
        attn_layer: timm attention after each block's last BN: None, ``"se"`` or ``"cbam"``.
        global_pool: timm pool type of the head (``""``: none, ``forward`` returns feature maps).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth: the drop-path rate of the last block, rising linearly
            from 0 at the first (timm's rule).

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
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != len(STAGE_CHANNELS):
            raise ValueError(f"layers must give the blocks of 3 stages, got {tuple(layers)}")
        channels = STAGE_CHANNELS
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.conv1 = nn.Conv2d(in_chans, channels[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info: list[dict[str, Any]] = []
        in_channels, reduction = channels[0], 1
        block_index, num_blocks = 0, sum(layers)
        for index, (depth, out_channels) in enumerate(zip(layers, channels, strict=True)):
            stride = 1 if index == 0 else 2
            reduction *= stride
            blocks = []
            for position in range(depth):
                block_stride = stride if position == 0 else 1
                shortcut = None
                if block_stride != 1 or in_channels != out_channels:
                    shortcut = PadShortcut(block_stride, out_channels - in_channels)
                rate = drop_path_rate * block_index / max(num_blocks - 1, 1)
                blocks.append(
                    BasicBlock(
                        in_channels,
                        out_channels,
                        block_stride,
                        shortcut,
                        attn_layer=attn_layer,
                        drop_path=DropPath(rate) if rate > 0 else None,
                    )
                )
                in_channels = out_channels
                block_index += 1
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            self.feature_info.append(
                {"num_chs": out_channels, "reduction": reduction, "module": f"layer{index + 1}"}
            )
        self.num_features = in_channels
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Regexes grouping parameter names: the stem, then stages (coarse) or blocks."""
        return {"stem": r"^conv1|bn1", "blocks": r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> nn.Module | str:
        """The classifier layer (``fc``), or its name."""
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replaces the head with a fresh one of ``num_classes`` outputs (0: none); None keeps the pool."""
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The stage outputs of ``feature_info`` on the way to ``forward_features``, as timm's models.

        Args:
            x: (N, in_chans, H, W).
            indices: stages to return (0-2): the last n if an int, all if None.
            norm: unused (no final norm), for timm's signature.
            stop_early: stop after the last stage asked for.
            output_fmt: ``"NCHW"`` only.
            intermediates_only: return the intermediates alone.

        Returns:
            ``(features, intermediates)``: ``forward_features(x)`` (N, 64, H/4, W/4) and, per index,
            the stage's output (N, C_i, H/r_i, W/r_i); or the intermediates alone.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        stages = [self.layer1, self.layer2, self.layer3]
        if stop_early:
            stages = stages[: max_index + 1]
        intermediates = []
        x = self.act1(self.bn1(self.conv1(x)))
        for index, stage in enumerate(stages):
            x = (
                checkpoint_seq(stage, x)
                if self.grad_checkpointing and not torch.jit.is_scripting()
                else stage(x)
            )
            if index in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Removes the stages after the last of ``indices`` (and the head), as timm's models.

        Returns:
            The absolute indices kept for ``forward_intermediates``.
        """
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in ("layer1", "layer2", "layer3")[max_index + 1 :]:
            setattr(self, name, nn.Sequential())  # empty, so checkpoint_seq can still iterate it
        prune_end = max_index < len(self.feature_info) - 1
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (N, in_chans, H, W) -> (N, 64, H / 4, W / 4) (rounded up)."""
        x = self.act1(self.bn1(self.conv1(x)))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq([self.layer1, self.layer2, self.layer3], x, flatten=True)
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

    Its ``load_state_dict`` also takes a plain checkpoint (``allow_plain_checkpoints``): the
    attention generators then keep their initialisation.

    Args:
        *args: ``CifarResNet``'s positional arguments.
        aw_kwargs: ``AWConv2d`` options (``reduction``, ``generator``, ``rank``, ``gate``,
            ``pool``, ``min_hidden``, ``impl``) and ``aw_stages``; None for the defaults.
        **kwargs: ``CifarResNet``'s keyword arguments.

    Shapes:
        input (N, in_chans, H, W) -> logits (N, num_classes).
    """

    def __init__(self, *args: Any, aw_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        convert_blocks(self, aw_kwargs or {})
        allow_plain_checkpoints(self)


def _create(
    variant: str, pretrained: bool, model_args: dict[str, Any], kwargs: dict[str, Any]
) -> CifarResNet:
    """Builds a plain or, for ``aw_*`` variants, an AW CIFAR ResNet; AWConv2d options come from kwargs."""
    options = {
        "feature_cfg": {"out_indices": (0, 1, 2)},
        "pretrained_filter_fn": checkpoint_filter_fn,
        **model_args,
        **kwargs,
    }
    if variant.startswith("aw_"):
        aw_kwargs, options = split_aw_kwargs(options)
        return build_model_with_cfg(AWCifarResNet, variant, pretrained, aw_kwargs=aw_kwargs, **options)
    return build_model_with_cfg(CifarResNet, variant, pretrained, **options)


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
