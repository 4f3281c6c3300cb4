"""aw_conv2d's surface around the paths: __torch_function__ dispatch, dtype promotion, the kernel table."""

from __future__ import annotations

import contextlib
from typing import ClassVar

import pytest
import torch
from reference import aw_conv2d_reference, relative_error

from awconv.ops import aw_conv2d, register_fused_kernel
from awconv.ops.kernels import FUSED_BMM_MIN_KERNEL_VALUES, FUSED_KERNELS, choose_fused_kernel
from awconv.ops.precision import autocast_off
from awconv.ops.validation import check_tensors


class _Logged(torch.Tensor):
    """Records every aw_conv2d call it takes part in, then runs it as a plain tensor would."""

    calls: ClassVar[list] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is aw_conv2d:
            cls.calls.append((args, kwargs))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensor_subclasses_get_the_call_with_every_argument() -> None:
    x, weight = torch.randn(2, 4, 9, 9), torch.randn(6, 2, 3, 3)
    attention, bias = torch.randn(2, 6, 2, 3, 3), torch.randn(6)
    _Logged.calls = []
    out = aw_conv2d(x.as_subclass(_Logged), weight, attention, bias, 2, 1, 2, 2, residual=False, impl="loop")
    (args, kwargs), = _Logged.calls  # fmt: skip
    assert args[4:] == (2, 1, 2, 2) and kwargs == {"residual": False, "impl": "loop"}
    assert all(a is b for a, b in zip(args[1:4], (weight, attention, bias), strict=True))
    expected = aw_conv2d_reference(x, weight, attention, bias, 2, 1, 2, 2, residual=False)
    assert relative_error(out.as_subclass(torch.Tensor), expected) < 1e-5


def test_mixed_dtypes_compute_in_the_promoted_dtype() -> None:
    x = torch.randn(2, 3, 6, 6)
    weight, attention = torch.randn(4, 3, 3, 3, dtype=torch.float64), torch.randn(2, 4, 3, 3, 3)
    out = aw_conv2d(x, weight, attention, padding=1)
    assert out.dtype == torch.float64
    assert relative_error(out, aw_conv2d_reference(x, weight, attention, None, 1, 1, 1, 1)) < 1e-12


def test_bias_must_be_floating_point() -> None:
    x, weight, attention = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3), torch.randn(2, 4, 3, 3, 3)
    with pytest.raises(TypeError, match=r"^bias must have a floating-point dtype, got torch\.int64$"):
        aw_conv2d(x, weight, attention, torch.zeros(4, dtype=torch.int64))


def test_auto_cannot_be_registered_as_a_kernel() -> None:
    bmm = FUSED_KERNELS["bmm"]
    with pytest.raises(ValueError, match=r"^name must be new and not 'auto', got 'auto'$"):
        register_fused_kernel("auto", bmm.forward, bmm.backward)
    assert "auto" not in FUSED_KERNELS


def test_auto_takes_fused_bmm_from_the_threshold_on() -> None:
    assert choose_fused_kernel("cpu", 8, 49, FUSED_BMM_MIN_KERNEL_VALUES) == "bmm"
    assert choose_fused_kernel("cpu", 8, 49, FUSED_BMM_MIN_KERNEL_VALUES - 1) == "grouped"
    assert choose_fused_kernel("cpu", 1, 49, FUSED_BMM_MIN_KERNEL_VALUES) == "loop"


@pytest.mark.parametrize("name", ["stride", "dilation"])
def test_geometry_arguments_are_named(name: str) -> None:
    x, weight, attention = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3), torch.randn(2, 4, 3, 3, 3)
    with pytest.raises(TypeError, match=rf"^{name} must be an int or a pair of ints, got \(1, 2, 3\)$"):
        aw_conv2d(x, weight, attention, **{name: (1, 2, 3)})


@pytest.mark.parametrize("kernel", [(1, 4), (4, 1)])
def test_same_padding_of_an_even_kernel_on_a_one_pixel_side(kernel: tuple[int, int]) -> None:
    """The padded side (1 + 3 pixels, split 1 before and 2 after) fits the kernel exactly."""
    size = (1, 5) if kernel == (4, 1) else (5, 1)
    x, weight = torch.randn(2, 3, *size), torch.randn(4, 3, *kernel)
    attention = torch.randn(2, 4, 3, *kernel)
    out = aw_conv2d(x, weight, attention, padding="same")
    assert relative_error(out, aw_conv2d_reference(x, weight, attention, None, 1, "same", 1, 1)) < 1e-5


@pytest.mark.parametrize("size", [(2, 8), (8, 2)])
def test_a_kernel_larger_than_one_padded_side_is_refused(size: tuple[int, int]) -> None:
    x, weight, attention = torch.randn(2, 3, *size), torch.randn(4, 3, 3, 3), torch.randn(2, 4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"spans \(3, 3\) pixels, more than the padded input"):
        aw_conv2d(x, weight, attention)


def _arguments(**changes) -> dict:
    x, weight, attention = torch.randn(2, 4, 6, 6), torch.randn(6, 2, 3, 3), torch.randn(2, 6, 2, 3, 3)
    return {"input": x, "weight": weight, "attention": attention, "groups": 2, **changes}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"stride": True}, TypeError, "stride must be an int or a pair of ints, got True"),
        ({"stride": (1, True)}, TypeError, "stride must be an int or a pair of ints, got (1, True)"),
        ({"padding": (1, 2, 3)}, TypeError, "padding must be an int or a pair of ints, got (1, 2, 3)"),
        ({"padding": -1}, ValueError, "padding must be non-negative, got -1"),
        ({"padding": (1, -1)}, ValueError, "padding must be non-negative, got (1, -1)"),
        (
            {"attention": torch.zeros(2, 6, 2, 3, 3, dtype=torch.int64)},
            TypeError,
            "attention must have a floating-point dtype, got torch.int64",
        ),
        ({"groups": 0}, ValueError, "groups must be a positive int, got 0"),
        ({"groups": True}, ValueError, "groups must be a positive int, got True"),
        (
            {"input": torch.randn(2, 5, 6, 6)},
            ValueError,
            "input has 5 channels but weight (6, 2, 3, 3) with groups=2 expects 4",
        ),
        (
            {"weight": torch.randn(5, 2, 3, 3), "attention": torch.randn(2, 5, 2, 3, 3)},
            ValueError,
            "weight's out channels (5) must be divisible by groups=2",
        ),
        ({"input": [[1.0]]}, TypeError, "input must be a torch.Tensor, got list"),
        (
            {"weight": torch.zeros(6, 2, 3, 3, dtype=torch.int64)},
            TypeError,
            "weight must have a floating-point dtype, got torch.int64",
        ),
    ],
)
def test_bad_arguments_get_one_exact_message(changes: dict, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        aw_conv2d(**_arguments(**changes))
    assert str(raised.value) == message


def test_check_tensors_goes_on_past_a_missing_tensor() -> None:
    with pytest.raises(TypeError, match=r"^bias must have a floating-point dtype, got torch\.int32$"):
        check_tensors(input=None, bias=torch.zeros(2, dtype=torch.int32))


def test_autocast_off_turns_autocast_off_only_where_it_is_on() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with autocast_off("cpu"):
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    assert isinstance(autocast_off("cpu"), contextlib.nullcontext)
