"""Fuzzing AWConv2d: random configurations and inputs against the float64 reference.

Every configuration of ``test_layers.layer_configs`` (groups, depthwise, kernel, stride, padding,
dilation, padding mode, generator, gate, pool, reduction, channels-last), with a random, all-zero
or 1e4-magnitude input, and sometimes a spatial size equal to the kernel's span: the output must
be finite, agree with the float64 reference, and give finite gradients. The fast set runs a few
dozen configurations, the slow one a thousand.

Agreement: relative error below 1e-5, or else every output value within the float32 rounding
bound of the whole computation (``_rounding_bound``). That second test is needed where the gate
saturates: a 1e4-magnitude input makes logits of 1e4 and more, which are sums of far larger terms
that cancel, so float32 rounding moves a logit by eps times those terms; near a logit of 0 the gate
turns that into a large attention error (a saturated one barely moves), and ``1 + tanh`` near -1
keeps no relative precision at all. The bound follows the standard error analysis of sums: a sum of n
terms is off by at most n * eps * (the sum of their absolute values).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import (
    GATES,
    attention_reference,
    aw_conv2d_reference,
    aw_layer_reference,
    pad_reference,
    randomize_generator,
    relative_error,
)
from strategies import layer_configs

from awconv import AWConv2d

TOLERANCE = 1e-5
EPS = torch.finfo(torch.float32).eps / 2  # unit roundoff of float32
INPUTS = ("normal", "zeros", "large")


@st.composite
def fuzz_cases(draw):
    config = draw(layer_configs())
    kind = draw(st.sampled_from(INPUTS))
    if draw(st.booleans()):  # spatial size equal to the (dilated) kernel, no padding: a 1x1 output
        kernel = config["args"][2]
        dilation = config["kwargs"]["dilation"]
        config["kwargs"] = {**config["kwargs"], "padding": 0}
        config["size"] = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    return config, kind


def _input(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros(shape)
    x = torch.randn(shape)
    return x * 1e4 if kind == "large" else x


def _logit_error_bound(layer: AWConv2d, x: torch.Tensor) -> torch.Tensor:
    """The most float32 rounding can move each logit, in float64: (N, C2, C1/g, kh, kw).

    A running error analysis of the generator: a sum of n terms computed in float32 is off by
    at most (n + 2) * u * (the sum of the terms' absolute values) plus the sum of the terms' own
    errors (u: float32's unit roundoff). A ReLU passes an error on only where its input could
    be positive; a product a * b adds |a| db + |b| da + da db.
    """
    gen, (kh, kw) = layer.generator, layer.kernel_size
    x = x.double()
    size = (kh, kw) if gen.pool == "kernel" else (1, 1)

    def gamma(terms: int) -> float:
        return (terms + 2) * EPS

    pooled = torch.nn.functional.adaptive_avg_pool2d(x, size)
    pooled_error = gamma(x.shape[-2] * x.shape[-1]) * torch.nn.functional.adaptive_avg_pool2d(x.abs(), size)

    def pointwise(conv, inputs: torch.Tensor, errors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = (
            conv.weight.detach().double()[:, :, 0, 0],
            conv.bias.detach().double().view(1, -1, 1, 1),
        )
        value = torch.einsum("oc,nchw->nohw", weight, inputs) + bias
        absolute = torch.einsum("oc,nchw->nohw", weight.abs(), inputs.abs()) + bias.abs()
        return value, gamma(weight.shape[1] + 1) * absolute + torch.einsum(
            "oc,nchw->nohw", weight.abs(), errors
        )

    pre, pre_error = pointwise(gen.pointconv1, pooled, pooled_error)
    hidden, hidden_error = pre.relu(), torch.where(pre + pre_error > 0, pre_error, 0)
    n, c2, c1g = x.shape[0], layer.out_channels, layer.in_channels // layer.groups
    if gen.kind == "full":
        _, error = pointwise(gen.pointconv2, hidden, hidden_error)
        error = error.reshape(n, c2, c1g, *size)
    else:
        u, du = (t.reshape(n, c2, gen.rank, *size) for t in pointwise(gen.pointconv2, hidden, hidden_error))
        v, dv = (
            t.reshape(n, gen.rank, c1g, *size) for t in pointwise(gen.pointconv2_in, hidden, hidden_error)
        )
        u, du, v, dv = u.unsqueeze(3), du.unsqueeze(3), v.unsqueeze(1), dv.unsqueeze(1)
        error = (gamma(gen.rank) * (u * v).abs() + u.abs() * dv + v.abs() * du + du * dv).sum(dim=2)
    return error.expand(n, c2, c1g, kh, kw)


def _rounding_bound(layer: AWConv2d, x: torch.Tensor) -> torch.Tensor:
    """The most float32 rounding can move each output value, in float64: (N, C2, H_out, W_out).

    A logit z is off by at most dz (``_logit_error_bound``); the gate is monotone, so the attention
    is off by at most ``e = max |gate(z +- dz) - gate(z)|``, plus 4u (1 + |A|) for the gate's own
    rounding and the product with the weight; the convolution adds (C1/g * kh * kw + 2) * u of the
    absolute terms it sums. So ``|out - exact| <= conv(|x|, |W| e) + gamma_c conv(|x|, (1 + |A|) |W|)``
    to first order; the check allows twice that for the second-order terms.
    """
    padded = pad_reference(layer, x).abs()
    gamma_c = (layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1] + 2) * EPS
    logits, logit_error = attention_reference(layer, x, gate="none"), _logit_error_bound(layer, x)
    gate = GATES[layer.generator.gate]
    attention = gate(logits)
    attention_error = torch.maximum(
        (gate(logits + logit_error) - attention).abs(), (gate(logits - logit_error) - attention).abs()
    )
    weight = layer.weight.detach().abs()

    def conv(factor: torch.Tensor) -> torch.Tensor:  # conv(|x|, factor |W|); factor (N, C2, C1/g, kh, kw)
        return aw_conv2d_reference(
            padded, weight, factor, None, layer.stride, 0, layer.dilation, layer.groups, residual=False
        )

    bias = 0 if layer.bias is None else EPS * layer.bias.detach().double().abs().view(1, -1, 1, 1)
    return (
        conv(attention_error + 4 * EPS * (1 + attention.abs())) + gamma_c * conv(1 + attention.abs()) + bias
    )


def check_case(config: dict, kind: str) -> tuple[float, bool]:
    """Runs one case; returns the output's relative error and whether the gate saturated."""
    layer = AWConv2d(*config["args"], **config["kwargs"])
    randomize_generator(layer)
    x = _input(kind, (config["batch"], config["args"][0], *config["size"]))
    if config["channels_last"]:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = layer(x)
    assert torch.isfinite(out).all(), f"non-finite output for {config}, {kind} input"
    expected = aw_layer_reference(layer, x.detach())
    error = relative_error(out.detach(), expected)
    saturated = error >= TOLERANCE
    if saturated:
        difference, limit = (out.detach().double() - expected).abs(), 2 * _rounding_bound(layer, x.detach())
        worst = (difference / limit.clamp(min=torch.finfo(torch.float64).tiny)).max().item()
        assert (difference <= limit).all(), (
            f"relative error {error:.2e} and an output error {worst:.2f}x its float32 rounding bound "
            f"for {config}, {kind} input"
        )
    out.square().mean().backward()
    grads = [x.grad, *(p.grad for p in layer.parameters() if p.grad is not None)]
    assert all(torch.isfinite(g).all() for g in grads), f"non-finite gradient for {config}, {kind} input"
    return error, saturated


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=fuzz_cases())
def test_fuzzed_layers_match_reference(case) -> None:
    check_case(*case)


@pytest.mark.slow
def test_thousand_fuzzed_layers_match_reference() -> None:
    results: list[tuple[float, bool]] = []

    @settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=fuzz_cases())
    def run(case) -> None:
        results.append(check_case(*case))

    run()
    errors = [error for error, saturated in results if not saturated]
    print(
        f"\n{len(results)} configurations: max relative error {max(errors):.2e} over {len(errors)} "
        f"unsaturated ones; {len(results) - len(errors)} saturated ones within their float32 rounding bound"
    )
    assert len(results) >= 1000


@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("gate", ["tanh", "sigmoid", "none"])
def test_extreme_inputs_stay_finite(kind: str, gate: str) -> None:
    """A deep-layer shape (64 -> 64 channels, 3x3) with each input kind and gate."""
    config = {
        "args": (64, 64, 3),
        "kwargs": {"padding": 1, "gate": gate},
        "batch": 2,
        "size": (3, 3),
        "channels_last": False,
    }
    check_case(config, kind)


def test_rounding_bound_is_tight_enough_to_catch_a_wrong_attention() -> None:
    """On a saturated case the bound stays far below the output's own size, so an operator that
    dropped or mangled the attention would exceed it."""
    torch.manual_seed(0)
    layer = AWConv2d(16, 16, 3, padding=1, generator="lowrank", rank=1)
    randomize_generator(layer)
    x = torch.randn(2, 16, 5, 5) * 1e4
    expected = aw_layer_reference(layer, x)
    bound = _rounding_bound(layer, x)
    assert (bound / expected.abs().max()).max() < 1e-3
    without_attention = torch.nn.functional.conv2d(
        x.double(), layer.weight.detach().double(), layer.bias.detach().double(), padding=1
    )
    assert ((without_attention - expected).abs() > 2 * bound).any()
