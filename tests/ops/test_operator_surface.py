"""aw_conv2d's surface around the paths: __torch_function__ dispatch, dtype promotion, the kernel table."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from reference import aw_conv2d_reference, relative_error

from awconv.ops import aw_conv2d, register_fused_kernel
from awconv.ops.kernels import FUSED_BMM_MIN_KERNEL_VALUES, FUSED_KERNELS, choose_fused_kernel


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
