"""Float64 references for AW-convolution, written independently of awconv's code paths."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64 (0 when both are zero)."""
    actual, expected = actual.double(), expected.double()
    denominator = expected.norm().item()
    difference = (actual - expected).norm().item()
    return difference / denominator if denominator > 0 else difference


def aw_conv2d_reference(
    x: Tensor,
    weight: Tensor,
    attention: Tensor,
    bias: Tensor | None,
    stride,
    padding,
    dilation,
    groups: int,
    residual: bool = True,
) -> Tensor:
    """One float64 ``F.conv2d`` per sample with its own modulated kernel.

    Args:
        x: (N, C1, H, W). weight: (C2, C1/g, kh, kw). attention: (N, C2, C1/g, kh, kw).

    Returns:
        (N, C2, H_out, W_out) in float64.
    """
    x, weight, attention = x.double(), weight.double(), attention.double()
    bias = None if bias is None else bias.double()
    outputs = []
    for n in range(x.shape[0]):
        kernel = weight * (1 + attention[n]) if residual else weight * attention[n]
        outputs.append(F.conv2d(x[n : n + 1], kernel, bias, stride, padding, dilation, groups))
    return torch.cat(outputs)


GATES = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "none": lambda t: t}


def logit_factors(
    generator: str, batch: int, c2: int, c1g: int, taps: int, rng: torch.Generator, rank: int, scale: float
) -> list[Tensor]:
    """Random logit factors of ``aw_conv2d_fused`` (shapes in ``awconv.ops.fused``; d = 3 for ``full``),
    normal with standard deviation ``scale``."""
    if generator == "full":
        shapes = [(batch, 3, taps), (c2 * c1g, 3), (c2 * c1g,)]
    else:
        shapes = [(batch, c2, rank, taps), (batch, rank, c1g, taps)]
    return [torch.randn(shape, generator=rng) * scale for shape in shapes]


def fused_reference(
    generator: str, gate: str, x: Tensor, weight: Tensor, factors, stride, padding, dilation, groups: int
) -> Tensor:
    """``aw_conv2d_fused`` in float64: the logits by einsum from the logit factors, the gate, one
    convolution per sample (factors as in ``awconv.ops.fused``; P = 1 is shared by the taps).

    Returns:
        (N, C2, H_out, W_out) in float64.
    """
    out_channels, in_per_group, kh, kw = weight.shape
    factors = [f.double() for f in factors]
    if generator == "full":
        hidden, head_weight, head_bias = factors
        logits = torch.einsum("kd,ndp->nkp", head_weight, hidden) + head_bias[:, None]
        logits = logits.reshape(x.shape[0], out_channels, in_per_group, -1)
    else:
        factor_out, factor_in = factors
        logits = torch.einsum("narp,nrbp->nabp", factor_out, factor_in)
    attention = GATES[gate](logits).expand(-1, -1, -1, kh * kw).reshape(x.shape[0], *weight.shape)
    return aw_conv2d_reference(x, weight, attention, None, stride, padding, dilation, groups)


def attention_reference(layer, x: Tensor, *, gate: str | None = None) -> Tensor:
    """The generator's attention recomputed in float64 from its parameters, step by step.

    Args:
        layer: an ``AWConv2d``.
        x: (N, C1, H, W).
        gate: the gate to apply instead of the layer's; ``"none"`` gives the logits.

    Returns:
        (N, C2, C1/g, kh, kw) in float64.
    """
    gen = layer.generator
    kh, kw = layer.kernel_size
    x = x.double()
    pooled_size = (kh, kw) if gen.pool == "kernel" else (1, 1)
    pooled = F.adaptive_avg_pool2d(x, pooled_size)  # (N, C1, ph, pw)

    def pointwise(conv, inputs: Tensor) -> Tensor:
        w = conv.weight.double()[:, :, 0, 0]
        return torch.einsum("oc,nchw->nohw", w, inputs) + conv.bias.double().view(1, -1, 1, 1)

    hidden = torch.relu(pointwise(gen.pointconv1, pooled))
    n, c2, c1g = x.shape[0], layer.out_channels, layer.in_channels // layer.groups
    ph, pw = pooled_size
    if gen.kind == "full":
        logits = pointwise(gen.pointconv2, hidden).reshape(n, c2, c1g, ph, pw)
    else:
        u = pointwise(gen.pointconv2, hidden).reshape(n, c2, gen.rank, ph, pw)
        v = pointwise(gen.pointconv2_in, hidden).reshape(n, gen.rank, c1g, ph, pw)
        logits = (u.unsqueeze(3) * v.unsqueeze(1)).sum(dim=2)
    return GATES[gate or gen.gate](logits).expand(n, c2, c1g, kh, kw)


# nn.Conv2d's padding_mode names and the F.pad modes that implement them.
PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def reference_pads(padding, kernel_size, dilation) -> tuple[int, int, int, int]:
    """``F.pad``'s (left, right, top, bottom) for nn.Conv2d's ``padding``, written from its docs.

    ``"same"`` pads ``dilation * (kernel - 1)`` per dimension, the smaller half before (left, top),
    as ``nn.Conv2d`` does; ``"valid"`` pads nothing; a number pads both sides.
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        (kh, kw), (dh, dw) = kernel_size, dilation
        total_h, total_w = dh * (kh - 1), dw * (kw - 1)
        return (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (pw, pw, ph, ph)


def pad_reference(layer, x: Tensor) -> Tensor:
    """x: (N, C1, H, W) padded as ``layer``'s ``padding`` and ``padding_mode`` ask, in float64."""
    pads = reference_pads(layer.padding, layer.kernel_size, layer.dilation)
    return F.pad(x.double(), pads, mode=PAD_MODES[layer.padding_mode])


def aw_layer_reference(layer, x: Tensor) -> Tensor:
    """A whole ``AWConv2d`` forward in float64: padding mode, attention, modulated convolution.

    The padding is the reference's own (``pad_reference``), not the layer's.
    """
    attention = attention_reference(layer, x)
    bias = None if layer.bias is None else layer.bias.detach()
    return aw_conv2d_reference(
        pad_reference(layer, x), layer.weight.detach(), attention, bias, layer.stride, 0, layer.dilation,
        layer.groups,
    )  # fmt: skip


def randomize_generator(layer, scale: float = 0.5) -> None:
    """Gives the generator random Pointconv2 weights so the attention is not zero."""
    with torch.no_grad():
        for module in (layer.generator.pointconv2, layer.generator.pointconv2_in):
            if module is not None:
                module.weight.normal_(0, scale)
                module.bias.normal_(0, scale)
