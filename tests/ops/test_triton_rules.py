"""The Triton kernels' host-side rules, in this process (no kernel runs): the taps of each stride
phase, the tile and precision choices, the argument checks and the registration's messages."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from awconv.ops import triton_conv, triton_registration
from awconv.ops.kernels import FusedProblem


def _taps_reaching(phase: int, pad: int, dilation: int, stride: int, kernel: int) -> list[int]:
    """The taps i through which some output row o reads an input row h = o*stride - pad + i*dilation
    with h % stride == phase, found by walking the rows."""
    return sorted(
        {
            i
            for o in range(4 * (kernel + pad + 1))
            for i in range(kernel)
            if (h := o * stride - pad + i * dilation) >= 0 and h % stride == phase
        }
    )


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
def test_phase_taps_are_the_taps_that_reach_the_phase(stride, dilation, pad, kernel) -> None:
    for phase in range(stride):
        taps = _taps_reaching(phase, pad, dilation, stride, kernel)
        first, step = triton_conv._phase_taps(phase, pad, dilation, stride, kernel)
        assert first == (taps[0] if taps else kernel), (phase, taps)
        assert taps == list(range(first, kernel, step)), (phase, taps)
        assert step == stride // math.gcd(stride, dilation) or len(taps) < 2


def _tile(block_m: int, block_n: int, block_k: int, num_warps: int) -> dict[str, int]:
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "num_warps": num_warps}


@pytest.mark.parametrize(
    ("pixels", "channels", "reduced", "dtype", "expected"),
    [
        (1023, 16, 16, torch.float32, _tile(64, 16, 16, 4)),
        (1024, 100, 100, torch.float32, _tile(128, 128, 32, 8)),
        (1024, 500, 100, torch.bfloat16, _tile(128, 128, 64, 8)),
        (4096, 64, 8, torch.float16, _tile(128, 64, 16, 4)),
        (64, 128, 16, torch.float32, _tile(64, 128, 16, 4)),  # 64 x 128 < 128 x 128: 4 warps
    ],
)
def test_tiles_grow_with_the_pixels_and_channels_and_shrink_k_for_float32(
    pixels, channels, reduced, dtype, expected
) -> None:
    assert triton_conv._tiles(pixels, channels, reduced, dtype) == expected


@pytest.mark.parametrize(
    ("out_per_group", "in_per_group", "pixels", "dtype", "expected"),
    [
        (256, 256, 4096, torch.float32, _tile(64, 64, 32, 8)),
        (33, 8, 5, torch.bfloat16, _tile(64, 16, 16, 4)),
        (64, 32, 100, torch.float16, _tile(64, 32, 64, 4)),
        (64, 63, 100, torch.float16, _tile(64, 64, 64, 8)),
    ],
)
def test_weight_gradient_tiles_stay_at_64_by_64(out_per_group, in_per_group, pixels, dtype, expected) -> None:
    assert triton_conv._grad_weight_tiles(out_per_group, in_per_group, pixels, dtype) == expected


@pytest.mark.parametrize(
    ("dtype", "matmul_precision", "expected"),
    [
        (torch.float32, "highest", "ieee"),
        (torch.float32, "high", "tf32"),
        (torch.bfloat16, "highest", "tf32"),  # ignored by tl.dot for 16-bit inputs
    ],
)
def test_float32_uses_tf32_unless_matmul_precision_is_highest(dtype, matmul_precision, expected) -> None:
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(matmul_precision)
    try:
        assert triton_conv._precision(dtype) == expected
        weight = torch.empty(4, 2, 3, 1)
        constants = triton_conv._constants(weight, "sigmoid", "full", (2, 1), (1, 0), (1, 3), dtype)
        assert constants == {
            "KH": 3, "KW": 1, "SH": 2, "SW": 1, "PH": 1, "PW": 0, "DH": 1, "DW": 3,
            "GATE": triton_conv.kernels.GATE_CODES["sigmoid"], "LOWRANK": False, "PRECISION": expected,
            "UPCAST": triton_conv.INTERPRETED and dtype == torch.bfloat16,
        }  # fmt: skip
    finally:
        torch.set_float32_matmul_precision(before)


def test_only_bfloat16_is_upcast_and_only_in_the_interpreter(monkeypatch) -> None:
    weight = torch.empty(4, 2, 1, 1)
    for interpreted in (False, True):
        monkeypatch.setattr(triton_conv, "INTERPRETED", interpreted)
        upcast = [
            triton_conv._constants(weight, "tanh", "lowrank", (1, 1), (0, 0), (1, 1), dtype)["UPCAST"]
            for dtype in (torch.float32, torch.float16, torch.bfloat16)
        ]
        assert upcast == [False, False, interpreted]


def test_a_tap_axis_of_one_gets_stride_zero() -> None:
    logits = torch.empty(2, 1, 3, 4)
    assert triton_conv._strides(logits, 1) == (12, 0, 4, 1)
    assert triton_conv._strides(torch.empty(2, 9, 1, 4), 1) == (36, 4, 4, 1)
    assert triton_conv._strides(torch.empty(2, 3, 4, 1), 3) == (12, 4, 1, 0)
    sources = triton_conv._sources("full", [torch.randn(2, 3, 1), torch.randn(12, 3), torch.randn(12)], 4)
    assert sources.a.shape == (2, 1, 4, 3) and sources.a_strides == (12, 0, 3, 1)


def test_cpu_tensors_are_refused_by_the_gpu_build(monkeypatch) -> None:
    monkeypatch.setattr(triton_conv, "INTERPRETED", False)
    with pytest.raises(ValueError) as raised:
        triton_conv._check_inputs(torch.empty(1, 2, 3, 3), torch.empty(2, 2, 1, 1), [])
    assert str(raised.value) == (
        "impl='triton' needs CUDA tensors, got input on cpu; for tests, set TRITON_INTERPRET=1 "
        "before awconv.ops.triton_conv is imported to run it on the CPU"
    )


def test_every_tensor_needs_the_inputs_dtype_and_device(monkeypatch) -> None:
    monkeypatch.setattr(triton_conv, "INTERPRETED", True)  # past the CUDA check, on this CPU
    x, weight = torch.empty(1, 2, 3, 3), torch.empty(2, 2, 1, 1)
    factors = [torch.empty(1, 2, 1, 1), torch.empty(1, 1, 2, 1, dtype=torch.float16)]
    with pytest.raises(ValueError) as raised:
        triton_conv._check_inputs(x, weight, factors)
    assert str(raised.value) == (
        "factors[1] must have the input's dtype torch.float32 and device cpu, got torch.float16 on cpu"
    )
    with pytest.raises(ValueError) as raised:
        triton_conv._check_inputs(x, weight.double(), factors[:1])
    assert str(raised.value).startswith("weight must have the input's dtype torch.float32")
    triton_conv._check_inputs(x, weight, factors[:1])  # all alike: accepted


def test_a_chunk_smaller_than_the_batch_is_refused() -> None:
    problem = FusedProblem("full", "tanh", ((1, 1), (0, 0), (1, 1)), 1, chunk_size=2)
    with pytest.raises(ValueError) as raised:
        triton_registration._check_whole_batch(torch.empty(3, 5, 1, 1), problem)
    assert str(raised.value) == (
        "chunk_size applies to the CPU paths, not impl='triton' (which stores no modulated kernels), "
        "got chunk_size=2 for a batch of 3"
    )
    triton_registration._check_whole_batch(torch.empty(2, 5, 1, 1), problem)


@pytest.mark.parametrize(
    ("module", "error", "message"),
    [
        ("triton", ImportError, "impl='triton' needs the triton package (pip install triton)"),
        ("numpy", ModuleNotFoundError, "No module named 'numpy'"),  # not ours to explain: passed on
    ],
)
def test_a_missing_triton_is_named_and_other_import_errors_pass(monkeypatch, module, error, message) -> None:
    def missing(name: str):
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(triton_registration.importlib, "import_module", missing)
    with pytest.raises(error) as raised:
        triton_registration._triton_conv()
    assert str(raised.value) == message
