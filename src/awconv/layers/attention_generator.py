"""The attention generator of AW-convolution: pooled input -> weight-shaped attention.

Paper: Zhu et al., "An Attention Module for Convolutional Neural Networks" (arXiv 2108.08205).
Average pooling aggregates the input into ``A0``; two point-wise convolutions, Pointconv1 and
Pointconv2, with a ReLU between them turn it into an attention tensor with the shape of the
convolution's weights. The defaults (pool to the kernel's size, tanh gate, zero-initialised
Pointconv2) are this project's choices, described in ``docs/method.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GATES", "GENERATORS", "POOLS", "AttentionGenerator"]

GENERATORS = ("full", "lowrank")
GATES = ("tanh", "sigmoid", "none")
POOLS = ("kernel", "global")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _zero_pointwise_conv(in_channels: int, out_channels: int, **factory) -> nn.Conv2d:
    """A 1x1 ``nn.Conv2d`` whose weight and bias are allocated as zeros, skipping its random init."""
    conv = nn.Conv2d(in_channels, out_channels, 1, device="meta")
    conv.weight = nn.Parameter(torch.zeros(out_channels, in_channels, 1, 1, **factory))
    conv.bias = nn.Parameter(torch.zeros(out_channels, **factory))
    return conv


class AttentionGenerator(nn.Module):
    """Pool, Pointconv1 + ReLU, Pointconv2 (full or low-rank), gate.

    Args:
        in_channels: C1, channels of the convolution's input.
        out_channels: C2, channels of the convolution's output.
        kernel_size: (kh, kw) of the convolution.
        groups: the convolution's groups; the attention has C1/groups input channels.
        reduction: Pointconv1 has ``max(C1 // reduction, min_hidden)`` output channels.
        min_hidden: the smallest hidden width.
        generator: ``"full"`` (Pointconv2 emits every attention value) or ``"lowrank"``
            (two heads U: d -> C2*rank and V: d -> rank*C1/g, attention = U @ V per tap).
        rank: the rank of the ``"lowrank"`` generator.
        gate: ``"tanh"`` (attention in (-1, 1)), ``"sigmoid"`` (in (0, 1)) or ``"none"``.
        pool: ``"kernel"`` (adaptive average pool to (kh, kw): one value per tap) or
            ``"global"`` (one pooled vector shared by every tap).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int = 1,
        *,
        reduction: int = 16,
        min_hidden: int = 8,
        generator: str = "full",
        rank: int = 1,
        gate: str = "tanh",
        pool: str = "kernel",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_choice("generator", generator, GENERATORS)
        _check_choice("gate", gate, GATES)
        _check_choice("pool", pool, POOLS)
        for name, value in (("reduction", reduction), ("min_hidden", min_hidden), ("rank", rank)):
            _check_positive_int(name, value)
        factory = {"device": device, "dtype": dtype}
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_per_group = in_channels // groups
        self.kernel_size = kernel_size
        self.kind = generator
        self.rank = rank
        self.gate = gate
        self.pool = pool
        self.hidden = max(in_channels // reduction, min_hidden)
        self.pointconv1 = nn.Conv2d(in_channels, self.hidden, 1, **factory)
        # "full": Pointconv2 emits every value. "lowrank": Pointconv2 is the output head U and
        # pointconv2_in the input head V.
        self.pointconv2_in: nn.Conv2d | None = None
        if generator == "full":  # the largest module: allocated as zeros, with no random init
            self.pointconv2 = _zero_pointwise_conv(self.hidden, out_channels * self.in_per_group, **factory)
        else:
            self.pointconv2 = nn.Conv2d(self.hidden, out_channels * rank, 1, **factory)
            self.pointconv2_in = nn.Conv2d(self.hidden, rank * self.in_per_group, 1, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default init for Pointconv1 and zero init for Pointconv2, so the attention is 0.

        With the ``"lowrank"`` generator only the output head is zeroed; the input head keeps a
        random init so that the output head receives a gradient.
        """
        self.pointconv1.reset_parameters()
        nn.init.zeros_(self.pointconv2.weight)
        nn.init.zeros_(self.pointconv2.bias)
        if self.pointconv2_in is not None:
            self.pointconv2_in.reset_parameters()

    def hidden_features(self, x: Tensor) -> Tensor:
        """Pool, Pointconv1 and ReLU: x (N, C1, H, W) -> (N, d, ph, pw), (ph, pw) the pooled size."""
        if self.pool == "kernel":
            pooled = F.adaptive_avg_pool2d(x, [self.kernel_size[0], self.kernel_size[1]])
        else:
            pooled = x.mean(dim=(2, 3), keepdim=True)
        return F.relu(self.pointconv1(pooled))

    @torch.jit.unused
    def logit_factors(self, x: Tensor) -> tuple[Tensor, ...]:
        """The small tensors ``awconv.ops.aw_conv2d_fused`` makes the attention from.

        Args:
            x: (N, C1, H, W).

        Returns:
            ``"full"``: hidden (N, d, P), Pointconv2's weight (C2 * C1/g, d) and bias (C2 * C1/g,);
            ``"lowrank"``: factor_out (N, C2, R, P) and factor_in (N, R, C1/g, P); P = ph * pw.
        """
        hidden = self.hidden_features(x)
        n, taps = hidden.shape[0], hidden.shape[2] * hidden.shape[3]
        if self.pointconv2_in is None:
            return hidden.flatten(2), self.pointconv2.weight.flatten(1), self.pointconv2.bias
        factor_out = self.pointconv2(hidden).reshape(n, self.out_channels, self.rank, taps)
        factor_in = self.pointconv2_in(hidden).reshape(n, self.rank, self.in_per_group, taps)
        return factor_out, factor_in

    def forward(self, x: Tensor) -> Tensor:
        """Computes the attention.

        Args:
            x: (N, C1, H, W), the convolution's input.

        Returns:
            (N, C2, C1/groups, kh, kw).
        """
        kh, kw = self.kernel_size
        hidden = self.hidden_features(x)  # (N, d, ph, pw)
        n, ph, pw = hidden.shape[0], hidden.shape[2], hidden.shape[3]
        if self.pointconv2_in is None:
            logits = self.pointconv2(hidden).reshape(n, self.out_channels, self.in_per_group, ph, pw)
        else:
            factor_out = self.pointconv2(hidden).reshape(n, self.out_channels, self.rank, ph, pw)
            factor_in = self.pointconv2_in(hidden).reshape(n, self.rank, self.in_per_group, ph, pw)
            logits = torch.einsum("narhw,nrbhw->nabhw", factor_out, factor_in)
        if self.gate == "tanh":
            attention = torch.tanh(logits)
        elif self.gate == "sigmoid":
            attention = torch.sigmoid(logits)
        else:
            attention = logits
        return attention.expand(n, self.out_channels, self.in_per_group, kh, kw)

    def extra_repr(self) -> str:
        text = f"generator={self.kind!r}, hidden={self.hidden}, gate={self.gate!r}, pool={self.pool!r}"
        return text + (f", rank={self.rank}" if self.kind == "lowrank" else "")
