"""AWConv2d: a drop-in replacement for ``nn.Conv2d`` with AW-convolution.

Paper: Zhu et al., "An Attention Module for Convolutional Neural Networks" (arXiv 2108.08205).
For every sample an ``AttentionGenerator`` computes an attention tensor ``A`` with the shape of
the weights, and the layer convolves with ``(1 + A) * weight``. Pointconv2 starts at zero, so a
fresh layer, or one built with ``AWConv2d.from_conv``, computes exactly its plain convolution.
The forward pass runs ``awconv.ops.aw_conv2d_fused``, which generates the attention inside the
operator ``torch.ops.awconv.aw_conv2d_fused`` and never stores it; ``layer.attention(x)`` returns
it. Under ``torch.fx.symbolic_trace`` the layer is traced through to that function.

``AWConv2d`` has the constructor head, the ``weight``/``bias`` parameters and the state-dict keys
of ``nn.Conv2d`` but deliberately does not subclass it: code that treats every ``nn.Conv2d`` as
a plain convolution (calling ``F.conv2d(x, m.weight)``, folding, re-initialising) would otherwise
silently compute something else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import Tensor, nn

from awconv.layers.attention_generator import AttentionGenerator
from awconv.ops import aw_conv2d_fused, fused_impls
from awconv.ops.geometry import output_memory_format, resolve_padding, to_pair

__all__ = ["PADDING_MODES", "AWConv2d"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@register_notrace_module
class AWConv2d(nn.Module):
    """2-D AW-convolution: ``out[n] = conv2d(x[n], (1 + A_n) * weight) + bias``.

    Args:
        in_channels: C1.
        out_channels: C2.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw).
        padding: int, (ph, pw), ``"same"`` or ``"valid"``.
        dilation: int or (dh, dw).
        groups: blocked connections; ``groups == in_channels`` is depthwise.
        bias: learn an additive bias.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        reduction: Pointconv1 width is ``max(C1 // reduction, min_hidden)``.
        min_hidden: the smallest Pointconv1 width.
        generator: ``"full"`` or ``"lowrank"`` (see ``AttentionGenerator``).
        rank: rank of the ``"lowrank"`` generator.
        gate: ``"tanh"``, ``"sigmoid"`` or ``"none"``.
        pool: ``"kernel"`` or ``"global"``.
        impl: kernel of the fused operator: ``"auto"``, ``"grouped"``, ``"bmm"``, ``"loop"``,
            ``"cpp"`` (CPU: the compiled kernel ``make install`` builds, else ``"grouped"``),
            ``"triton"`` (CUDA: Triton kernels that never write the modulated kernels) or any
            kernel registered with ``awconv.ops.register_fused_kernel``.

    Shapes:
        input (N, C1, H, W) -> output (N, C2, H_out, W_out), or (C1, H, W) -> (C2, H_out, W_out),
        as ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        reduction: int = 16,
        min_hidden: int = 8,
        generator: str = "full",
        rank: int = 1,
        gate: str = "tanh",
        pool: str = "kernel",
        impl: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                f"divisible by groups ({groups})"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if impl not in fused_impls():
            raise ValueError(f"impl must be one of {fused_impls()}, got {impl!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = to_pair(kernel_size, "kernel_size")
        self.stride = to_pair(stride, "stride")
        self.dilation = to_pair(dilation, "dilation")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(
                f"kernel_size, stride and dilation must be positive, got {kernel_size!r}, "
                f"{stride!r} and {dilation!r}"
            )
        self.padding = padding if isinstance(padding, str) else to_pair(padding, "padding")
        # (left, right, top, bottom), applied by the layer before the convolution.
        self._pads = resolve_padding(padding, self.kernel_size, self.stride, self.dilation)
        self.groups = groups
        self.padding_mode = padding_mode
        self.impl = impl
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.generator = AttentionGenerator(
            in_channels,
            out_channels,
            self.kernel_size,
            groups,
            reduction=reduction,
            min_hidden=min_hidden,
            generator=generator,
            rank=rank,
            gate=gate,
            pool=pool,
            **factory,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s init for weight and bias; the generator's attention starts at 0."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        self.generator.reset_parameters()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs) -> AWConv2d:
        """Builds an AWConv2d holding ``conv``'s weights, equal to ``conv`` before training.

        Args:
            conv: a plain ``torch.nn.Conv2d`` (subclasses with their own forward are refused).
            **kwargs: generator options (``reduction``, ``generator``, ``gate``, ...).

        Returns:
            An AWConv2d on the conv's device and dtype, in the conv's train/eval mode. With
            ``gate="sigmoid"`` the initial attention is 0.5, not 0, so the output is 1.5x the conv's.
        """
        if type(conv) is not nn.Conv2d:
            raise TypeError(
                f"conv must be a plain torch.nn.Conv2d, got {type(conv).__name__}; subclasses may "
                "compute something other than F.conv2d with their weights"
            )
        return cls._from_checked_conv(conv, **kwargs)

    @classmethod
    def _from_checked_conv(cls, conv: nn.Conv2d, **kwargs) -> AWConv2d:
        """``from_conv`` once ``conv``'s type is known to compute ``F.conv2d`` with its weights."""
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            **kwargs,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        layer.weight.requires_grad_(conv.weight.requires_grad)
        if conv.bias is not None:
            layer.bias.requires_grad_(conv.bias.requires_grad)
        return layer.train(conv.training)

    def _check_input(self, x: Tensor) -> None:
        if isinstance(x, Tensor) and x.is_quantized:  # torch.ao.quantization's eager prepare/convert
            raise TypeError(
                f"input must be a float tensor, got a quantized {x.dtype} one: torch.ao.quantization "
                "cannot quantize AWConv2d; for int8 inference quantize the exported ONNX model with "
                "ONNX Runtime: awconv export MODEL --format onnx --quantize int8 (awconv.quantization)"
            )
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"input must have a floating-point dtype, got {got}")
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"input must have shape (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )

    def attention(self, x: Tensor) -> Tensor:
        """The per-sample attention: x (N, C1, H, W) -> (N, C2, C1/groups, kh, kw); unbatched without N."""
        self._check_input(x)
        if x.dim() == 3:
            return self.generator(x.unsqueeze(0)).squeeze(0)
        return self.generator(x)

    def _pad(self, x: Tensor) -> Tensor:
        if self.padding_mode == "zeros":
            return F.pad(x, self._pads) if any(self._pads) else x
        return F.pad(x, self._pads, mode=self.padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C1, H, W) -> (N, C2, H_out, W_out), or unbatched (C1, H, W) -> (C2, H_out, W_out).

        As in ``nn.Conv2d``, an empty batch gives an empty output and a channels_last input a
        channels_last output.
        """
        if torch.jit.is_scripting():
            return self._forward_scripted(x)
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: Tensor) -> Tensor:
        if isinstance(x, torch.fx.Proxy):  # torch.fx.symbolic_trace: the batched graph, checked as it runs
            return self._forward_batched(x)
        self._check_input(x)
        if x.dim() == 3:
            return self._forward_batched(x.unsqueeze(0)).squeeze(0)
        return self._forward_batched(x).contiguous(memory_format=output_memory_format(x))

    @torch.jit.unused
    def _forward_batched(self, x: Tensor) -> Tensor:
        """The fused operator on x (N, C1, H, W): the attention is generated in chunks and never stored."""
        factors = self.generator.logit_factors(x)
        if self.padding_mode == "zeros":  # the operator pads inside the convolution
            padded, padding = x, self.padding
        else:
            padded, padding = F.pad(x, self._pads, mode=self.padding_mode), 0
        return aw_conv2d_fused(
            padded,
            self.weight,
            factors,
            self.bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            generator=self.generator.kind,
            gate=self.generator.gate,
            impl=self.impl,
        )

    def _forward_scripted(self, x: Tensor) -> Tensor:
        """The grouped-convolution path in TorchScript-compatible code (autograd stores kernels)."""
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        n = x.shape[0]
        padded = self._pad(x)
        if n == 0:
            out_h = (padded.shape[2] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
            out_w = (padded.shape[3] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
            out = x.new_empty([0, self.out_channels, out_h, out_w])
        else:
            attention = self.generator(x)
            kernels = (self.weight * (1 + attention)).flatten(0, 1)
            out = F.conv2d(
                padded.reshape(1, n * self.in_channels, padded.shape[2], padded.shape[3]),
                kernels,
                None,
                self.stride,
                0,
                self.dilation,
                n * self.groups,
            )
            out = out.reshape(n, self.out_channels, out.shape[2], out.shape[3])
            if self.bias is not None:
                out = out + self.bias.view(1, -1, 1, 1)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode!r}"
        if self.impl != "auto":
            text += f", impl={self.impl!r}"
        return text
