"""Peer dynamic convolutions for the operator benchmark: timm's CondConv and an ODConv-style layer.

* ``CondConvLayer``: timm's ``CondConv2d`` (Yang et al., "CondConv", NeurIPS 2019) with the
  routing timm's EfficientNet uses: ``sigmoid(Linear(global_avg_pool(x)))`` mixes E experts.
* ``ODConv2d``: omni-dimensional dynamic convolution written after Li et al., "Omni-Dimensional
  Dynamic Convolution" (ICLR 2022): one trunk (global average pool, FC, ReLU) and four heads give
  attentions over the spatial taps (sigmoid), the input channels (sigmoid), the output channels
  (sigmoid) and the K kernels (softmax), all multiplied into the weights. The paper's trunk has a
  BatchNorm, left out here as AW-convolution's generator leaves it out (it breaks batch-1
  training). The attention is factorised: per sample only ``C1 + C2 + kh*kw + K`` values, against
  AW-convolution's ``C2 * C1/g * kh * kw``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import CondConv2d
from torch import Tensor, nn

__all__ = ["CondConvLayer", "ODConv2d"]


class CondConvLayer(nn.Module):
    """timm's ``CondConv2d`` with EfficientNet's routing function.

    Args:
        in_channels: C1.
        out_channels: C2.
        kernel_size: k (square).
        stride: s.
        padding: p.
        num_experts: E.

    Shapes:
        x (N, C1, H, W) -> (N, C2, H_out, W_out).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        num_experts: int,
    ) -> None:
        super().__init__()
        self.routing_fn = nn.Linear(in_channels, num_experts)
        self.conv = CondConv2d(
            in_channels, out_channels, kernel_size, stride, padding, num_experts=num_experts
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C1, H, W) -> (N, C2, H_out, W_out)."""
        routing_weights = torch.sigmoid(self.routing_fn(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        return self.conv(x, routing_weights)


class ODConv2d(nn.Module):
    """ODConv-style dynamic convolution with four factorised attentions (groups = 1, no bias).

    Args:
        in_channels: C1.
        out_channels: C2.
        kernel_size: k (square).
        stride: s.
        padding: p.
        num_kernels: K, the number of candidate kernels.
        reduction: trunk width ``max(int(C1 * reduction), min_channels)``, as in ODConv.
        min_channels: the smallest trunk width.

    Shapes:
        x (N, C1, H, W) -> (N, C2, H_out, W_out).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        num_kernels: int = 4,
        reduction: float = 0.0625,
        min_channels: int = 16,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.kernel_size = stride, padding, kernel_size
        hidden = max(int(in_channels * reduction), min_channels)
        self.fc = nn.Linear(in_channels, hidden)
        self.channel_fc = nn.Linear(hidden, in_channels)
        self.filter_fc = nn.Linear(hidden, out_channels)
        self.spatial_fc = nn.Linear(hidden, kernel_size * kernel_size)
        self.kernel_fc = nn.Linear(hidden, num_kernels)
        self.weight = nn.Parameter(
            torch.empty(num_kernels, out_channels, in_channels, kernel_size, kernel_size)
        )
        for kernel in self.weight:
            nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))

    def attentions(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four attentions of x (N, C1, H, W).

        Returns:
            channel (N, C1), filter (N, C2), spatial (N, k, k), kernel (N, K) (sums to 1 over K).
        """
        trunk = F.relu(self.fc(x.mean(dim=(2, 3))))
        spatial = torch.sigmoid(self.spatial_fc(trunk)).view(-1, self.kernel_size, self.kernel_size)
        return (
            torch.sigmoid(self.channel_fc(trunk)),
            torch.sigmoid(self.filter_fc(trunk)),
            spatial,
            torch.softmax(self.kernel_fc(trunk), dim=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C1, H, W) -> (N, C2, H_out, W_out).

        Kernel and spatial attentions build each sample's kernel; the channel and filter
        attentions, constant over a kernel's input and output channels, scale the input and the
        output instead, which equals multiplying them into the kernel.
        """
        channel, filter_, spatial, kernel = self.attentions(x)
        n, c1, h, w = x.shape
        num_kernels, c2 = self.weight.shape[:2]
        mixed = (kernel @ self.weight.view(num_kernels, -1)).view(
            n, c2, c1, self.kernel_size, self.kernel_size
        )
        kernels = (mixed * spatial[:, None, None]).reshape(n * c2, c1, self.kernel_size, self.kernel_size)
        scaled = (x * channel[:, :, None, None]).reshape(1, n * c1, h, w)
        out = F.conv2d(scaled, kernels, None, self.stride, self.padding, 1, n)
        return out.view(n, c2, out.shape[-2], out.shape[-1]) * filter_[:, :, None, None]
