"""Fuzzing AWConv2d: random configurations and inputs against the float64 reference.

Every configuration of ``test_layers.layer_configs`` (groups, depthwise, kernel, stride, padding,
dilation, padding mode, generator, gate, pool, reduction, channels-last), with a random, all-zero
or 1e4-magnitude input, and sometimes a spatial size equal to the kernel's span: the output must
be finite, agree with the float64 reference, and give finite gradients. The fast set runs a few
dozen configurations, the slow one a thousand.

Agreement: relative error below 1e-5, or, where the gate saturates, an error below 1e-6 of the
unmodulated magnitude ``conv(|x|, (1 + |A|) |W|)``. A 1e4-magnitude input drives ``tanh`` to -1,
and ``1 + A`` then cancels in float32 to 0 or 6e-8 where float64 still has 1e-9: the absolute error
of the modulation is float32's rounding of 1, which is large relative to an output that all but
vanishes, and tiny relative to the magnitudes that were summed.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import (
    attention_reference,
    aw_conv2d_reference,
    aw_layer_reference,
    randomize_generator,
    relative_error,
)
from test_layers import layer_configs

from awconv import AWConv2d

TOLERANCE = 1e-5
MAGNITUDE_TOLERANCE = 1e-6
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


def _magnitude(layer: AWConv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(|x|, (1 + |A|) |W|)`` in float64: the size of the terms the output sums."""
    padded = torch.nn.functional.pad(
        x.double(), layer._pads, mode=layer.padding_mode.replace("zeros", "constant")
    )
    return aw_conv2d_reference(
        padded.abs(),
        layer.weight.detach().abs(),
        attention_reference(layer, x).abs(),
        None,
        layer.stride,
        0,
        layer.dilation,
        layer.groups,
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
        scaled = (
            relative_error(out.detach(), expected) * expected.norm() / _magnitude(layer, x.detach()).norm()
        )
        assert scaled < MAGNITUDE_TOLERANCE, (
            f"relative error {error:.2e} ({scaled:.2e} of the magnitude) for {config}, {kind} input"
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
        f"unsaturated ones; {len(results) - len(errors)} saturated ones within {MAGNITUDE_TOLERANCE} "
        "of the magnitude"
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
