"""Device checks: every operator path, the layer and a model on one device, against float64 references.

Plain functions that raise ``AssertionError`` (or ``CheckSkipped``), so that both pytest
(tests/test_devices.py, over the devices present) and ``benchmarks/gpu.py`` (on a GPU machine,
where pytest may not be installed) run them. ``checks(device)`` lists them with their arguments.
References are computed on the same device in float64 from tests/reference.py; float32 is checked
with TF32 off (``full_float32_precision``). ``impl="triton"`` is among the paths on CUDA; on the
CPU tests/ops/test_triton_conv.py runs it in Triton's interpreter.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import timm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from reference import (
    attention_reference,
    aw_conv2d_reference,
    aw_layer_reference,
    randomize_generator,
    relative_error,
)
from torch import Tensor, nn

from awconv import AWConv2d
from awconv.ops import IMPLS, aw_conv2d, aw_conv2d_fused
from awconv.ops import fused_impls as registered_fused_impls

GENERATORS = ("full", "lowrank")
GATES = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "none": lambda t: t}


class CheckSkipped(Exception):
    """The check cannot run here (a missing backend); its message says why."""


class Check(NamedTuple):
    """One check: a name for reports, the call, and whether it is slow on this device."""

    name: str
    run: Callable[[], None]
    slow: bool = False


def fused_impls(device: str) -> list[str]:
    """The fused operator's paths on ``device``: "triton" needs CUDA."""
    return [impl for impl in registered_fused_impls() if impl != "triton" or device == "cuda"]


@contextlib.contextmanager
def full_float32_precision() -> Iterator[None]:
    """float32 matmuls and convolutions without TF32 inside."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _layer_reference(layer: AWConv2d, x: Tensor) -> Tensor:
    """float64 forward of a zero-padded AWConv2d that keeps every parameter in the autograd graph."""
    attention = attention_reference(layer, x)
    bias = None if layer.bias is None else layer.bias.double()
    return aw_conv2d_reference(
        x.double(), layer.weight, attention, bias, layer.stride, layer.padding, layer.dilation, layer.groups
    )


def _assert_gradients_match(out: Tensor, expected: Tensor, leaves: list[Tensor], tolerance: float) -> None:
    grad_out = torch.randn_like(expected)
    grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype))
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)
    for index, (got, want) in enumerate(zip(grads, expected_grads, strict=True)):
        error = relative_error(got, want)
        assert error < tolerance, f"gradient {index}: relative error {error:.2e} >= {tolerance:.0e}"


def _assert_close(out: Tensor, expected: Tensor, tolerance: float, what: str) -> None:
    error = relative_error(out, expected)
    assert error < tolerance, f"{what}: relative error {error:.2e} >= {tolerance:.0e}"


def check_attention_given(device: str, impl: str) -> None:
    """aw_conv2d (the attention given) in float64 on ``device``, groups 2, stride 2, with gradients."""
    torch.manual_seed(0)
    options = {"device": device, "dtype": torch.float64, "requires_grad": True}
    x, weight = torch.randn(3, 4, 6, 5, **options), torch.randn(6, 2, 3, 3, **options)
    attention, bias = torch.randn(3, 6, 2, 3, 3, **options), torch.randn(6, **options)
    out = aw_conv2d(x, weight, attention, bias, 2, 1, 1, 2, impl=impl)
    expected = aw_conv2d_reference(x, weight, attention, bias, 2, 1, 1, 2)
    assert out.device.type == device
    _assert_close(out, expected, 1e-12, impl)
    _assert_gradients_match(out, expected, [x, weight, attention, bias], 1e-10)


def _fused_problem(generator: str, device: str, batch: int, in_channels: int, out_channels: int, size: int):
    """x, weight (groups 2, 3x3) and the generator's logit factors (P = 9), float32 leaves."""
    options = {"device": device, "dtype": torch.float32}
    in_per_group = in_channels // 2
    x = torch.randn(batch, in_channels, size, size, **options)
    weight = torch.randn(out_channels, in_per_group, 3, 3, **options)
    heads = out_channels * in_per_group
    if generator == "full":
        factors = [
            torch.randn(batch, 5, 9, **options),
            torch.randn(heads, 5, **options) * 0.3,
            torch.randn(heads, **options) * 0.3,
        ]
    else:
        factors = [
            torch.randn(batch, out_channels, 2, 9, **options),
            torch.randn(batch, 2, in_per_group, 9, **options),
        ]
    return [t.requires_grad_(True) for t in (x, weight, *factors)]


def _fused_reference(generator: str, gate: str, x, weight, factors, stride, padding, dilation, groups):
    factors = [f.double() for f in factors]
    batch, shape = x.shape[0], weight.shape
    if generator == "full":
        hidden, head_weight, head_bias = factors
        logits = torch.einsum("kd,ndp->nkp", head_weight, hidden) + head_bias[:, None]
        logits = logits.reshape(batch, shape[0], shape[1], -1)
    else:
        logits = torch.einsum("narp,nrbp->nabp", *factors)
    attention = GATES[gate](logits).reshape(batch, *shape)
    return aw_conv2d_reference(x, weight, attention, None, stride, padding, dilation, groups)


def check_fused(device: str, generator: str, impl: str, large: bool = False) -> None:
    """aw_conv2d_fused in float32 on ``device``, forward and gradients; ``large``: several tiles."""
    torch.manual_seed(1)
    # large: 2 pixel tiles, 2 C2 tiles and 3 blocks of C1/g per group, several samples per program
    batch, in_channels, out_channels, size = (9, 160, 320, 20) if large else (3, 4, 6, 6)
    x, weight, *factors = leaves = _fused_problem(generator, device, batch, in_channels, out_channels, size)
    with full_float32_precision():
        out = aw_conv2d_fused(x, weight, factors, None, 2, 1, 1, 2, generator=generator, impl=impl)
        expected = _fused_reference(generator, "tanh", x, weight, factors, 2, 1, 1, 2)
        assert out.device.type == device
        _assert_close(out, expected, 1e-5, impl)
        _assert_gradients_match(out, expected, leaves, 1e-5)


def _make_layer(device: str, generator: str, impl: str) -> AWConv2d:
    layer = AWConv2d(8, 6, 3, stride=2, padding=1, groups=2, generator=generator, rank=2, impl=impl)
    randomize_generator(layer)
    return layer.to(device)


def check_layer(device: str, generator: str, impl: str, channels_last: bool) -> None:
    """AWConv2d in float32 on ``device``, forward and the gradients of the input and every parameter."""
    torch.manual_seed(2)
    layer = _make_layer(device, generator, impl)
    x = torch.randn(3, 8, 7, 6, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with full_float32_precision():
        out = layer(x)
        expected = _layer_reference(layer, x)
        assert out.device.type == device
        _assert_close(out, expected, 1e-5, impl)
        _assert_gradients_match(out, expected, [x, *layer.parameters()], 1e-5)


AUTOCAST_TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 5e-3}


def check_autocast(device: str, generator: str, impl: str, dtype: torch.dtype) -> None:
    """The layer computes in the autocast dtype; output and gradients stay near float64's."""
    torch.manual_seed(3)
    layer = _make_layer(device, generator, impl)
    x = torch.randn(2, 8, 7, 6, device=device, requires_grad=True)
    with torch.autocast(device, dtype=dtype):
        out = layer(x)
    assert out.dtype == dtype, f"{impl}: output {out.dtype} under autocast {dtype}"
    expected = _layer_reference(layer, x)
    _assert_close(out, expected, AUTOCAST_TOLERANCE[dtype], impl)
    _assert_gradients_match(out, expected, [x, layer.weight], 4 * AUTOCAST_TOLERANCE[dtype])


class _ReferenceAW(nn.Module):
    """Stands in for an AWConv2d: its float64 reference forward (tests/reference.py)."""

    def __init__(self, layer: AWConv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return aw_layer_reference(self.layer, x)


def _reference_model(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` whose AW layers run the float64 reference instead."""
    reference = copy.deepcopy(model).double()
    for name, module in list(reference.named_modules()):
        if isinstance(module, AWConv2d):
            parent_name, _, child = name.rpartition(".")
            setattr(reference.get_submodule(parent_name), child, _ReferenceAW(module))
    return reference


def check_model(device: str, generator: str, impl: str) -> None:
    """AW-ResNet-20 in eval mode, contiguous and channels_last, against its float64 reference."""
    torch.manual_seed(4)
    model = timm.create_model("aw_resnet20_cifar", num_classes=10, generator=generator, rank=2, impl=impl)
    for layer in model.modules():
        if isinstance(layer, AWConv2d):
            randomize_generator(layer, scale=0.1)
    model = model.to(device).eval()
    x = torch.randn(2, 3, 16, 16, device=device)
    with torch.no_grad(), full_float32_precision():
        expected = _reference_model(model)(x.double())
        for memory_format in (torch.contiguous_format, torch.channels_last):
            out = model.to(memory_format=memory_format)(x.to(memory_format=memory_format))
            _assert_close(out, expected, 1e-4, str(memory_format))


def check_compile(device: str, impl: str, backend: str) -> None:
    """A torch.compile'd layer equals the eager one, forward and backward."""
    torch.manual_seed(5)
    layer = _make_layer(device, "full", impl)
    compiled = torch.compile(copy.deepcopy(layer), backend=backend)
    x = torch.randn(2, 8, 7, 6, device=device)
    with full_float32_precision():
        out, eager = compiled(x), layer(x)
        _assert_close(out, eager, 1e-5, "output")
        out.sum().backward()
        eager.sum().backward()
        _assert_close(compiled.weight.grad, layer.weight.grad, 1e-5, "weight gradient")
    torch._dynamo.reset()


def check_ddp_one_process(device: str) -> None:
    """One DistributedDataParallel step of an AW model in a one-process group (gloo on the CPU, NCCL
    on CUDA): the gradients equal those without DDP (one process averages nothing)."""
    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_available() or not dist.is_backend_available(backend):
        raise CheckSkipped(f"torch.distributed backend {backend} is not available")
    torch.manual_seed(6)
    layer = AWConv2d(3, 8, 3, padding=1, generator="lowrank")
    randomize_generator(layer)
    model = nn.Sequential(layer, nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model = model.to(device)
    plain = copy.deepcopy(model)
    with tempfile.TemporaryDirectory() as store:
        dist.init_process_group(backend, init_method=Path(store, "store").as_uri(), rank=0, world_size=1)
        try:
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0] if device == "cuda" else None)
            x, labels = torch.randn(4, 3, 8, 8, device=device), torch.tensor([0, 1, 2, 3], device=device)
            with full_float32_precision():
                F.cross_entropy(ddp(x), labels).backward()
                F.cross_entropy(plain(x), labels).backward()
        finally:
            dist.destroy_process_group()
    for (name, got), want in zip(model.named_parameters(), plain.parameters(), strict=True):
        _assert_close(got.grad, want.grad, 1e-5, name)


def checks(device: str) -> list[Check]:
    """Every check for ``device``; on the CPU the compiled ones are slow (C++ compilation)."""
    cpu = device == "cpu"
    listed = [
        Check(f"attention-given {impl}", functools.partial(check_attention_given, device, impl))
        for impl in IMPLS
    ]
    for generator in GENERATORS:
        for impl in fused_impls(device):
            run = functools.partial
            listed += [
                Check(f"fused {generator} {impl}", run(check_fused, device, generator, impl)),
                Check(f"layer {generator} {impl}", run(check_layer, device, generator, impl, False)),
                Check(
                    f"layer {generator} {impl} channels_last", run(check_layer, device, generator, impl, True)
                ),
                Check(
                    f"autocast bf16 {generator} {impl}",
                    run(check_autocast, device, generator, impl, torch.bfloat16),
                ),
                Check(
                    f"autocast fp16 {generator} {impl}",
                    run(check_autocast, device, generator, impl, torch.float16),
                ),
            ]
        listed.append(Check(f"model {generator}", functools.partial(check_model, device, generator, "auto")))
    if not cpu:
        listed += [
            Check(
                f"fused {generator} triton, several tiles",
                functools.partial(check_fused, device, generator, "triton", True),
            )
            for generator in GENERATORS
        ]
        listed += [
            Check(f"model {generator} triton", functools.partial(check_model, device, generator, "triton"))
            for generator in GENERATORS
        ]
    backends = ("aot_eager", "inductor") if cpu else ("inductor",)
    listed += [
        Check(f"compile {backend} {impl}", functools.partial(check_compile, device, impl, backend), slow=cpu)
        for backend in backends
        for impl in fused_impls(device)
    ]
    listed.append(Check("ddp one process", functools.partial(check_ddp_one_process, device)))
    return listed
