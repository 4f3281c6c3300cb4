"""impl="triton" against float64 references on the CPU: the Triton kernels in Triton's interpreter.

The kernels run in one ``spawn`` child process per test session worker, started with
``TRITON_INTERPRET=1`` before triton is imported (``triton_interpreted.py`` says why); each test
sends it a case and judges the relative errors it returns. The interpreter runs a few statements
per millisecond, so the fast tests use tiny shapes; the wide sweeps are marked slow.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

import pytest
import torch
import triton_interpreted
from hypothesis import given, settings
from strategies import layer_configs, one_or_all_but_one

from awconv.ops import aw_conv2d_fused

pytest.importorskip("triton")

# float32 is checked at its rounding level; bfloat16 and float16 round the kernels and outputs.
TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 3e-3}


class _InProcess:
    """Runs each case in this process, for a process started with ``TRITON_INTERPRET=1`` (as
    ``make mutation`` does, so that mutmut sees which tests reach the kernels)."""

    def submit(self, function, *args) -> Future:
        future = Future()
        try:
            future.set_result(function(*args))
        except Exception as error:  # handed to the test as a pool would
            future.set_exception(error)
        return future


@pytest.fixture(scope="module")
def interpreter():
    """A one-process pool whose Triton interprets kernels on the CPU (this process, if it does)."""
    from awconv.ops import triton_conv

    if triton_conv.INTERPRETED:
        yield _InProcess()
        return
    pool = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=triton_interpreted.start)
    yield pool
    pool.shutdown(wait=False)  # the child exits by itself; waiting for torch's exit costs seconds


def case(generator, gate, kernel, stride, padding, dilation, groups, taps, size, **overrides):
    return {
        "generator": generator, "gate": gate, "kernel": kernel, "stride": stride, "padding": padding,
        "dilation": dilation, "groups": groups, "taps": taps, "size": size, "batch": 2, "in_channels": 4,
        "out_channels": 4, "rank": 2, "dtype": "float32", "seed": 0, **overrides,
    }  # fmt: skip


def check(interpreter, case: dict) -> None:
    result = interpreter.submit(triton_interpreted.kernel_errors, case).result()
    output_shape, expected_shape = result["shape"]
    assert output_shape == expected_shape
    assert all(dtype == f"torch.{case['dtype']}" for dtype in result["dtypes"]), result["dtypes"]
    errors = result["errors"]
    assert len(errors) == 1 + sum(case.get("needs", [True] * (5 if case["generator"] == "full" else 4)))
    assert max(errors) < TOLERANCE[case["dtype"]], errors


@pytest.mark.parametrize(
    "problem",
    [
        pytest.param(
            case("full", "tanh", (3, 3), (1, 1), (1, 1), (1, 1), 1, 9, (3, 3), target_programs=1),
            id="full-tanh-3x3-samples-in-one-program",
        ),
        pytest.param(
            case("lowrank", "sigmoid", (2, 3), (2, 1), (1, 0), (1, 2), 2, 1, (4, 5)),
            id="lowrank-sigmoid-strided-dilated-grouped-shared-taps",
        ),
        pytest.param(
            case("full", "none", (1, 1), (1, 1), (0, 0), (1, 1), 1, 1, (3, 3), dtype="bfloat16"),
            id="bfloat16",
        ),
        pytest.param(
            case(
                "lowrank",
                "tanh",
                (1, 1),
                (1, 1),
                (0, 0),
                (1, 1),
                1,
                1,
                (3, 3),
                needs=[True, False, True, False],
            ),
            id="some-gradients",
        ),
    ],
)
def test_kernels_match_float64_reference(interpreter, problem):
    check(interpreter, problem)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("gate", ["tanh", "sigmoid", "none"])
@pytest.mark.parametrize("generator", ["full", "lowrank"])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "groups", "taps"),
    [
        ((3, 3), (1, 1), (1, 1), (1, 1), 1, 9),
        ((3, 3), (2, 2), (1, 1), (1, 1), 2, 1),
        ((3, 2), (2, 3), (0, 2), (2, 1), 1, 6),
        ((1, 1), (1, 1), (0, 0), (1, 1), 4, 1),
    ],
)
def test_kernels_match_float64_reference_everywhere(
    interpreter, dtype, gate, generator, kernel, stride, padding, dilation, groups, taps
):
    problem = case(generator, gate, kernel, stride, padding, dilation, groups, taps, (7, 6))
    check(interpreter, {**problem, "batch": 3, "in_channels": 8, "rank": 3, "dtype": dtype, "seed": 2})


@pytest.mark.slow
def test_channels_beyond_one_block(interpreter):
    """More channels and pixels than one tile holds, and more than one sample per program."""
    problem = case("full", "tanh", (3, 3), (1, 1), (1, 1), (1, 1), 1, 9, (12, 12))
    for target_programs in (1, 1024):  # all samples in one weight-gradient program, one each
        check(
            interpreter,
            {
                **problem,
                "batch": 3,
                "in_channels": 80,
                "out_channels": 72,
                "seed": 3,
                "target_programs": target_programs,
            },
        )


def test_layer_runs_the_kernels(interpreter):
    """AWConv2d(impl="triton") -> aw_conv2d_fused -> the kernels, forward and backward; 'same'
    padding of an even kernel is asymmetric (the operator pads first); the bias is added after."""
    kwargs = {"padding": "same", "generator": "lowrank", "rank": 2}
    errors = interpreter.submit(
        triton_interpreted.layer_errors, (4, 4, 2), kwargs, 2, (3, 3), True, 4
    ).result()
    assert len(errors) == 2 + 8 and max(errors) < 1e-5, errors  # output, x, 8 parameters


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(config=layer_configs())
def test_layer_matches_float64_reference_at_many_shapes(interpreter, config):
    errors = interpreter.submit(
        triton_interpreted.layer_errors,
        config["args"],
        config["kwargs"],
        config["batch"],
        config["size"],
        config["channels_last"],
        0,
    ).result()
    assert max(errors) < 1e-5, errors


@pytest.mark.parametrize(("generator", "expected"), [("lowrank", 0), ("full", 3)])
def test_no_modulated_kernels_are_written(interpreter, generator, expected):
    """Nothing of the modulated kernels' size (N x |K|) is allocated for lowrank; for full only the
    logits (in forward, again in backward) and their gradient."""
    assert interpreter.submit(triton_interpreted.attention_sized_allocations, generator).result() == expected


@pytest.mark.parametrize(
    ("kwargs", "dtype", "match"),
    [
        ({}, "float64", "impl='triton' computes in float32, bfloat16 or float16, got input of torch.float64"),
        ({"chunk_size": 1}, "float32", "chunk_size applies to the CPU paths, not impl='triton'"),
    ],
)
def test_bad_arguments(interpreter, kwargs, dtype, match):
    message = interpreter.submit(
        triton_interpreted.operator_error, {"kwargs": kwargs, "dtype": dtype}
    ).result()
    assert message.startswith(match), message


def test_cpu_tensors_need_cuda_or_the_interpreter():
    """In this (not interpreting) process the compiled kernels refuse CPU tensors in one line."""
    from awconv.ops import triton_conv

    if triton_conv.INTERPRETED:
        pytest.skip("this process interprets Triton kernels (TRITON_INTERPRET=1)")
    x, weight = torch.randn(1, 2, 3, 3), torch.randn(2, 2, 1, 1)
    factors = [torch.randn(1, 2, 1, 1), torch.randn(1, 1, 2, 1)]
    with pytest.raises(ValueError, match=r"^impl='triton' needs CUDA tensors, got input on cpu; "):
        aw_conv2d_fused(x, weight, factors, generator="lowrank", impl="triton")


@pytest.mark.parametrize(
    ("generator", "taps", "dtype", "needs"),
    [("full", 6, "float32", needs) for needs in one_or_all_but_one(5)]
    + [("lowrank", 1, "float32", needs) for needs in one_or_all_but_one(4)]
    + [("full", 1, "bfloat16", [True] * 5), ("lowrank", 6, "bfloat16", [True] * 4)],
)
def test_backward_gives_exactly_the_gradients_asked_for(interpreter, generator, taps, dtype, needs):
    """triton_backward called directly: None where not needed, the input's dtype, grad_x and the
    output channels_last; strided, padded, dilated and grouped, so that every stride phase of grad_x runs."""
    problem = case(
        generator, "sigmoid", (3, 2), (2, 1), (1, 0), (1, 2), 2, taps, (4, 5), dtype=dtype, needs=needs
    )
    result = interpreter.submit(triton_interpreted.backward_gradients, problem).result()
    assert result["missing"] == [not need for need in needs]
    assert all(name == f"torch.{dtype}" for name in result["dtypes"]), result["dtypes"]
    assert result["channels_last"] == [True, needs[0]]
    assert max(result["errors"]) < TOLERANCE[dtype], result["errors"]
