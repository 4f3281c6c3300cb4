"""aw_conv2d_fused's surface: exact messages, __torch_function__, what the kernels and ``auto`` are
handed, the fake kernels on the meta device."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from reference import fused_reference, relative_error

from awconv.ops import aw_conv2d_fused, operators, register_fused_kernel
from awconv.ops.kernels import FUSED_KERNELS

FACTORS_FULL = {"hidden": (2, 4, 6), "head_weight": (48, 4), "head_bias": (48,)}  # 8 -> 6, 3x2, groups 1


def _arguments(**changes):
    """An 8 -> 6 channel problem with a 3x2 kernel (kh*kw = 6, kh/kw = 1.5) and the full generator."""
    generator = torch.Generator().manual_seed(0)
    arguments = {
        "input": torch.randn(2, 8, 5, 7, generator=generator),
        "weight": torch.randn(6, 8, 3, 2, generator=generator),
        "factors": [torch.randn(shape, generator=generator) for shape in FACTORS_FULL.values()],
    }
    return {**arguments, **changes}


NOT_FLOATING = "must have a floating-point dtype, got torch.int64"


def _long(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.int64)


def _lowrank(factor_out_shape, factor_in_shape):
    return {"generator": "lowrank", "factors": [torch.randn(factor_out_shape), torch.randn(factor_in_shape)]}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"input": _long(2, 8, 5, 7)}, TypeError, f"input {NOT_FLOATING}"),
        ({"weight": _long(6, 8, 3, 2)}, TypeError, f"weight {NOT_FLOATING}"),
        ({"bias": _long(6)}, TypeError, f"bias {NOT_FLOATING}"),
        ({"bias": torch.zeros(5)}, ValueError, "bias must have shape (6,), got (5,)"),
        ({"chunk_size": 2.5}, ValueError, "chunk_size must be a positive int or None, got 2.5"),
        ({"chunk_size": True}, ValueError, "chunk_size must be a positive int or None, got True"),
        (
            {"factors": [torch.randn(2, 4, 5), torch.randn(48, 4), torch.randn(48)]},
            ValueError,
            "hidden must end in P = 1 or P = kh*kw = 6 taps, got shape (2, 4, 5)",
        ),
        (
            {"factors": [torch.randn(2, 6), torch.randn(48, 4), torch.randn(48)]},
            ValueError,
            "hidden must end in P = 1 or P = kh*kw = 6 taps, got shape (2, 6)",
        ),
        (
            {"factors": [torch.randn(2, 4, 6), torch.randn(48, 5), torch.randn(48)]},
            ValueError,
            "head_weight must have shape (48, 4), got (48, 5)",
        ),
        (
            {"factors": [torch.randn(3, 4, 1), torch.randn(48, 4), torch.randn(48)]},
            ValueError,
            "hidden must have shape (2, 4, 1), got (3, 4, 1)",
        ),
        (
            _lowrank((2, 6, 6), (2, 3, 8, 6)),
            ValueError,
            "factor_out must have shape (N, C2, R, P) = (2, 6, R, 6), got (2, 6, 6)",
        ),
        (
            _lowrank((2, 6, 3, 6), (2, 2, 8, 6)),
            ValueError,
            "factor_in must have shape (2, 3, 8, 6), got (2, 2, 8, 6)",
        ),
    ],
)  # fmt: skip
def test_bad_arguments_get_one_exact_message(changes: dict, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        aw_conv2d_fused(**_arguments(**changes))
    assert str(raised.value) == message


def test_an_unknown_impl_is_refused_with_the_registered_kernels() -> None:
    with pytest.raises(ValueError) as raised:
        aw_conv2d_fused(**_arguments(), impl="fast")
    kernels = ", ".join(repr(name) for name in ("auto", *FUSED_KERNELS))
    assert str(raised.value) == f"impl must be one of ({kernels}), got 'fast'"


def test_defaults_are_stride_one_no_padding_and_the_tanh_full_generator() -> None:
    arguments = _arguments()
    x, weight, factors = arguments["input"], arguments["weight"], arguments["factors"]
    out = aw_conv2d_fused(x, weight, factors)
    expected = fused_reference("full", "tanh", x, weight, factors, 1, 0, 1, 1)
    assert out.shape == (2, 6, 3, 6)
    assert relative_error(out, expected) < 1e-5


class _Logged(torch.Tensor):
    """Records every aw_conv2d_fused call it takes part in, then runs it as a plain tensor would."""

    calls: ClassVar[list] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is aw_conv2d_fused:
            cls.calls.append(kwargs)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensor_subclasses_get_the_call_with_every_option() -> None:
    _Logged.calls.clear()
    arguments = _arguments()
    x = arguments["input"].as_subclass(_Logged)
    options = {"generator": "full", "gate": "sigmoid", "impl": "loop", "chunk_size": 1}
    out = aw_conv2d_fused(x, arguments["weight"], arguments["factors"], None, 1, 1, **options)
    assert _Logged.calls == [options]
    expected = aw_conv2d_fused(
        arguments["input"], arguments["weight"], arguments["factors"], None, 1, 1, **options
    )
    assert torch.equal(out.as_subclass(torch.Tensor), expected)


@pytest.fixture
def recording_kernel():
    """A kernel ``"recording"`` that runs ``grouped`` and keeps the FusedProblem of each call."""
    problems, grouped = [], FUSED_KERNELS["grouped"]

    def forward(x, weight, factors, problem):
        problems.append(problem)
        return grouped.forward(x, weight, factors, problem)

    def backward(grad_out, x, weight, factors, problem, needs):
        problems.append(problem)
        return grouped.backward(grad_out, x, weight, factors, problem, needs)

    register_fused_kernel("recording", forward, backward)
    yield problems
    FUSED_KERNELS.pop("recording")


@pytest.mark.parametrize(("chunk_size", "expected"), [(None, 2), (1, 1), (2, 2), (5, 2)])
def test_the_kernel_gets_the_chunk_size_bounded_by_the_batch(recording_kernel, chunk_size, expected) -> None:
    arguments = _arguments()
    for tensor in (arguments["input"], *arguments["factors"]):
        tensor.requires_grad_(True)
    aw_conv2d_fused(**arguments, impl="recording", chunk_size=chunk_size).sum().backward()
    assert [problem.chunk_size for problem in recording_kernel] == [expected, expected]


def test_auto_asks_the_chooser_about_the_device_chunk_output_area_and_kernel(monkeypatch) -> None:
    questions = []

    def chooser(device_type, chunk_size, output_pixels, kernel_values):
        questions.append((device_type, chunk_size, output_pixels, kernel_values))
        return "loop"

    monkeypatch.setattr(operators, "choose_fused_kernel", chooser)
    arguments = _arguments()
    aw_conv2d_fused(**arguments, padding=1, chunk_size=1)
    assert questions == [("cpu", 1, 5 * 8, 6 * 8 * 3 * 2)]  # output 5 x 8 with padding 1


def test_kernel_for_other_devices_names_them_all() -> None:
    grouped = FUSED_KERNELS["grouped"]
    register_fused_kernel("accelerators", grouped.forward, grouped.backward, device_types=("cuda", "xpu"))
    try:
        with pytest.raises(ValueError) as raised:
            aw_conv2d_fused(**_arguments(), impl="accelerators")
        assert str(raised.value) == "impl='accelerators' runs on cuda, xpu tensors, got cpu"
    finally:
        FUSED_KERNELS.pop("accelerators")


@pytest.mark.parametrize("channels_last", [False, True])
def test_backward_fake_kernels_give_meta_tensors_in_the_promised_layouts(channels_last) -> None:
    """The operators' backward on the meta device: its fake kernel, shapes and layouts only."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty(2, 4, 5, 5, device="meta").contiguous(memory_format=layout)
    weight, attention = torch.empty(6, 2, 3, 3, device="meta"), torch.empty(2, 6, 2, 3, 3, device="meta")
    grad_out = torch.empty(2, 6, 5, 5, device="meta")
    geometry = ([1, 1], [1, 1], [1, 1])
    grads = torch.ops.awconv.aw_conv2d_backward(
        grad_out, x, weight, attention, True, *geometry, 2, "auto", [True, True, False]
    )
    assert [g.device.type for g in grads] == ["meta"] * 3
    assert [tuple(g.shape) for g in grads] == [(2, 4, 5, 5), (6, 2, 3, 3), (0,)]
    assert grads[0].is_contiguous(memory_format=layout) and grads[1].is_contiguous()
    factors = [
        torch.empty(2, 3, 9, device="meta"),
        torch.empty(12, 3, device="meta"),
        torch.empty(12, device="meta"),
    ]
    grads = torch.ops.awconv.aw_conv2d_fused_backward(
        grad_out,
        x,
        weight,
        *factors,
        "full",
        "tanh",
        *geometry,
        2,
        "auto",
        0,
        [True, False, True, True, True],
    )
    assert [g.device.type for g in grads] == ["meta"] * 5
    assert [tuple(g.shape) for g in grads] == [(2, 4, 5, 5), (0,), (2, 3, 9), (12, 3), (12,)]
    assert grads[0].is_contiguous(memory_format=layout)
