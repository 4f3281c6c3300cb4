"""impl="cpp": the compiled CPU kernel against float64 references, at many shapes, with one and two
threads, every gradient mask; its fallback (other dtypes, the library switched off) and its build."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fused_reference, logit_factors, relative_error
from strategies import one_or_all_but_one

from awconv.layers import AWConv2d
from awconv.ops import aw_conv2d_fused, cpu_extension, fused_cpu
from awconv.ops.kernels import CPP_MAX_KERNEL_VALUES, CPP_MAX_OUTPUT_PIXELS, FusedProblem, choose_fused_kernel


def test_make_install_built_the_kernel_for_this_torch() -> None:
    assert cpu_extension.library_path().is_file(), "run `make install` (it compiles ops/csrc)"
    assert cpu_extension.available()
    assert torch.__version__.replace("+", "_") in cpu_extension.library_path().name


def _factors(generator: str, batch: int, c2: int, c1g: int, taps: int, rank: int, rng) -> list[torch.Tensor]:
    return logit_factors(generator, batch, c2, c1g, taps, rng, rank=rank, scale=0.6)


@st.composite
def problems(draw):
    groups = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride, dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))), (1, draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = [dilation[i] * (kernel[i] - 1) + 1 for i in range(2)]
    size = [draw(st.integers(max(1, span[i] - 2 * padding[i]), 9)) for i in range(2)]
    return {
        "generator": draw(st.sampled_from(["full", "lowrank"])),
        "gate": draw(st.sampled_from(["tanh", "sigmoid", "none"])),
        "shared": draw(st.booleans()),  # P = 1: one logit for every tap
        "batch": draw(st.integers(1, 5)),
        "c1g": draw(st.integers(1, 5)),
        # up to 40 output channels per group: tiles of MR rows and NR columns, whole and partial
        "c2g": draw(st.sampled_from([1, 3, 8, 17, 40])),
        "groups": groups,
        "kernel": kernel,
        "geometry": (stride, padding, dilation),
        "size": size,
        "chunk": draw(st.integers(1, 5)),
        "rank": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 2**16)),
    }


def _check_against_reference(case: dict, threads: int = 1) -> None:
    rng = torch.Generator().manual_seed(case["seed"])
    groups, c1g, c2 = case["groups"], case["c1g"], case["c2g"] * case["groups"]
    kh, kw = case["kernel"]
    x = torch.randn(case["batch"], c1g * groups, *case["size"], generator=rng)
    weight = torch.randn(c2, c1g, kh, kw, generator=rng)
    taps = 1 if case["shared"] else kh * kw
    factors = _factors(case["generator"], case["batch"], c2, c1g, taps, case["rank"], rng)
    leaves = [t.clone().requires_grad_() for t in (x, weight, *factors)]
    stride, padding, dilation = case["geometry"]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = aw_conv2d_fused(
            leaves[0], leaves[1], leaves[2:], None, stride, padding, dilation, groups,
            generator=case["generator"], gate=case["gate"], impl="cpp", chunk_size=case["chunk"],
        )  # fmt: skip
        grad_out = torch.randn(out.shape, generator=rng)
        grads = torch.autograd.grad(out, leaves, grad_out)
    finally:
        torch.set_num_threads(previous)
    doubles = [t.double().requires_grad_() for t in (x, weight, *factors)]
    expected = fused_reference(
        case["generator"], case["gate"], *doubles[:2], doubles[2:], stride, padding, dilation, groups
    )
    expected_grads = torch.autograd.grad(expected, doubles, grad_out.double())
    assert relative_error(out, expected) < 1e-5
    for index, (grad, reference) in enumerate(zip(grads, expected_grads, strict=True)):
        assert relative_error(grad, reference) < 1e-4, f"gradient {index}"


@settings(max_examples=60, deadline=None)
@given(problems())
def test_forward_and_every_gradient_match_float64(case: dict) -> None:
    _check_against_reference(case)


@settings(max_examples=15, deadline=None)
@given(problems())
def test_two_threads_split_the_samples_and_sum_the_weight_gradient(case: dict) -> None:
    _check_against_reference({**case, "batch": 5, "chunk": 5}, threads=2)


def test_resnet20_widths_and_long_reductions_match_float64() -> None:
    """Whole tiles (64 channels, 8x8 = 64 pixels) and a stride-2 layer, as in ResNet-20; reductions
    longer than one block of the GEMM (576 input columns; 400 pixels for the weight's gradient)."""
    for c1g, c2g, size, stride in ((64, 64, (8, 8), 1), (16, 32, (9, 9), 2), (3, 17, (20, 20), 1)):
        case = {
            "generator": "full", "gate": "tanh", "shared": False, "batch": 3, "c1g": c1g, "c2g": c2g,
            "groups": 1, "kernel": (3, 3), "geometry": ((stride, stride), (1, 1), (1, 1)), "size": size,
            "chunk": 2, "rank": 1, "seed": c1g,
        }  # fmt: skip
        _check_against_reference(case)


CASES = [
    (generator, gate, taps, mask)
    for generator in ("full", "lowrank")
    for gate, taps in (("tanh", 6), ("sigmoid", 1), ("none", 6))
    for mask in one_or_all_but_one(5 if generator == "full" else 4)
]


@pytest.mark.parametrize(("generator", "gate", "taps", "needs"), CASES)
def test_backward_gives_exactly_the_gradients_asked_for(generator, gate, taps, needs) -> None:
    rng = torch.Generator().manual_seed(taps + sum(needs))
    x, weight = torch.randn(5, 4, 5, 6, generator=rng), torch.randn(6, 2, 3, 2, generator=rng)
    factors = _factors(generator, 5, 6, 2, taps, 2, rng)
    geometry = ((1, 1), (1, 1), (1, 1))
    problem = FusedProblem(generator, gate, geometry, groups=2, chunk_size=2)
    grad_out = torch.randn(5, 6, 5, 7, generator=rng)
    grads = fused_cpu.cpp_backward(grad_out, x, weight, factors, problem, needs)

    leaves = [t.double().requires_grad_() for t in (x, weight, *factors)]
    expected = fused_reference(generator, gate, leaves[0], leaves[1], leaves[2:], *geometry, 2)
    expected_grads = torch.autograd.grad(expected, leaves, grad_out.double())
    for index, (grad, reference, need) in enumerate(zip(grads, expected_grads, needs, strict=True)):
        if not need:
            assert grad is None, f"gradient {index} was not asked for"
            continue
        assert relative_error(grad, reference) < 1e-5, f"gradient {index}"


def test_float64_and_a_missing_library_run_the_grouped_kernel(monkeypatch) -> None:
    rng = torch.Generator().manual_seed(3)
    x, weight = torch.randn(3, 4, 6, 5, generator=rng), torch.randn(6, 4, 3, 3, generator=rng)
    factors = _factors("full", 3, 6, 4, 9, 1, rng)
    expected = fused_reference("full", "tanh", x, weight, factors, 1, 1, 1, 1)
    factors64 = [f.double() for f in factors]
    doubles = aw_conv2d_fused(x.double(), weight.double(), factors64, padding=1, impl="cpp")
    assert relative_error(doubles, expected) < 1e-12  # float64 throughout: not the float32 kernel
    monkeypatch.setattr(fused_cpu, "compiled", lambda x: False)
    called = []
    monkeypatch.setattr(torch.ops.awconv_cpu, "forward_chunk", lambda *a: called.append(a), raising=False)
    fallback = aw_conv2d_fused(x, weight, factors, padding=1, impl="cpp")
    assert relative_error(fallback, expected) < 1e-5 and not called


def test_the_environment_switches_the_library_off() -> None:
    code = "from awconv.ops import cpu_extension; print(cpu_extension.available())"
    environment = {**os.environ, cpu_extension.DISABLE_VARIABLE: "0"}
    run = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr


def test_the_layer_runs_it_and_agrees_with_the_grouped_kernel() -> None:
    torch.manual_seed(0)
    layer = AWConv2d(8, 16, 3, padding=1, impl="cpp")
    for parameter in layer.parameters():  # off the zero init of the generator's last layer
        parameter.data.normal_(0, 0.2)
    reference = AWConv2d(8, 16, 3, padding=1, impl="grouped")
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(4, 8, 7, 7)
    out, expected = layer(x), reference(x)
    assert relative_error(out, expected) < 1e-5
    grads = torch.autograd.grad(out.square().sum(), list(layer.parameters()))
    expected_grads = torch.autograd.grad(expected.square().sum(), list(reference.parameters()))
    for grad, other in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, other) < 1e-4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x": torch.zeros(1, 2, 3, 3).double()}, "awconv_cpu takes contiguous float32 CPU tensors"),
        ({"weight_taps": torch.zeros(5)}, "weight_taps must be (kh * kw, C1/g, C2)"),
    ],
)
def test_the_library_names_what_it_refuses(change: dict, message: str) -> None:
    assert cpu_extension.available()  # loads it
    arguments = {"x": torch.zeros(1, 2, 3, 3), "q": torch.zeros(1, 9, 2, 2)}
    arguments["weight_taps"] = torch.zeros(9, 2, 2)
    arguments |= change
    out = torch.zeros(1, 2, 3, 3)
    with pytest.raises(RuntimeError, match=re.escape(message)):
        torch.ops.awconv_cpu.forward_chunk(*arguments.values(), 0.0, [3, 3, 1, 1, 1, 1, 1, 1], 1, out)


def test_chunks_cover_the_batch_in_order() -> None:
    assert list(fused_cpu._chunks(5, 2)) == [slice(0, 2), slice(2, 4), slice(4, 5)]


def test_auto_takes_it_for_small_kernels_and_outputs_beyond_batch_one(monkeypatch) -> None:
    small, pixels = CPP_MAX_KERNEL_VALUES, CPP_MAX_OUTPUT_PIXELS
    assert choose_fused_kernel("cpu", 8, pixels, small) == "cpp"
    assert choose_fused_kernel("cpu", 128, 8 * 8, 64 * 64 * 9) == "cpp"  # ResNet-20's last stage
    assert choose_fused_kernel("cpu", 8, pixels + 1, small) == "grouped"  # ResNet-20 at 32 px, ResNet-50
    assert choose_fused_kernel("cpu", 8, 7 * 7, small + 1) == "grouped"
    assert choose_fused_kernel("cpu", 1, 8 * 8, small) == "loop"
    assert choose_fused_kernel("cuda", 8, 8 * 8, small) == "grouped"
    monkeypatch.setattr(cpu_extension, "available", lambda: False)
    assert choose_fused_kernel("cpu", 8, 8 * 8, small) == "grouped"


def test_a_missing_or_foreign_library_leaves_the_fallback(monkeypatch, tmp_path) -> None:
    missing, foreign = tmp_path / "missing.so", tmp_path / "foreign.so"
    foreign.write_bytes(b"not a shared object")
    for path in (missing, foreign):
        monkeypatch.setattr(cpu_extension, "library_path", lambda path=path: path)
        assert cpu_extension.available.__wrapped__() is False


def test_a_failing_compiler_is_reported_and_leaves_nothing_half_written(monkeypatch, tmp_path) -> None:
    target = tmp_path / "kernel.so"
    monkeypatch.setattr(cpu_extension, "library_path", lambda: target)
    monkeypatch.setenv("CXX", "false")
    with pytest.raises(RuntimeError, match=re.escape("compiling aw_conv2d_cpu.cpp failed (false)")):
        cpu_extension.build()
    assert list(tmp_path.iterdir()) == []


def test_the_compile_command_targets_this_cpu_and_torch(tmp_path) -> None:
    command = cpu_extension.compile_command(tmp_path / "out.so")
    assert "-march=native" in command and str(cpu_extension.SOURCE) in command
    assert f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}" in command
    assert command[command.index("-o") + 1] == str(tmp_path / "out.so")
