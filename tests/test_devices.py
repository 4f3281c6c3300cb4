"""Every operator path, the layer and a model on every device present, against float64 references.

Parametrised over the devices of this machine: ``cpu`` always, ``cuda`` when available (CI runs
the CPU half; ``benchmarks/gpu.py`` runs this file on a GPU machine). The references are computed
on the same device in float64 from tests/reference.py. Also: bf16/fp16 autocast, channels_last,
torch.compile and a one-process DDP step (gloo on the CPU, NCCL on CUDA). ``impl="triton"`` is
among the paths on CUDA; on the CPU tests/ops/test_triton_conv.py runs it in Triton's interpreter.
TF32 is turned off here so that float32 on CUDA is checked at float32's precision.
"""

from __future__ import annotations

import copy

import pytest
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
from awconv.ops import FUSED_IMPLS, IMPLS, aw_conv2d, aw_conv2d_fused

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
GENERATORS = ("full", "lowrank")
GATES = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "none": lambda t: t}


def fused_impls(device: str) -> list[str]:
    """The fused operator's paths on ``device``: "triton" needs CUDA."""
    return [impl for impl in FUSED_IMPLS if impl != "triton" or device == "cuda"]


@pytest.fixture(autouse=True)
def full_float32_precision():
    """float32 matmuls and convolutions without TF32 while a test runs."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def layer_reference(layer: AWConv2d, x: Tensor) -> Tensor:
    """float64 forward of a zero-padded AWConv2d that keeps every parameter in the autograd graph."""
    attention = attention_reference(layer, x)
    bias = None if layer.bias is None else layer.bias.double()
    return aw_conv2d_reference(
        x.double(), layer.weight, attention, bias, layer.stride, layer.padding, layer.dilation, layer.groups
    )


def assert_gradients_match(out: Tensor, expected: Tensor, leaves: list[Tensor], tolerance: float) -> None:
    grad_out = torch.randn_like(expected)
    grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype))
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)
    for index, (got, want) in enumerate(zip(grads, expected_grads, strict=True)):
        assert relative_error(got, want) < tolerance, f"gradient {index}"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", DEVICES)
def test_attention_given_paths(device, impl):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 5, device=device, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 3, device=device, dtype=torch.float64, requires_grad=True)
    attention = torch.randn(3, 6, 2, 3, 3, device=device, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, device=device, dtype=torch.float64, requires_grad=True)
    out = aw_conv2d(x, weight, attention, bias, 2, 1, 1, 2, impl=impl)
    expected = aw_conv2d_reference(x, weight, attention, bias, 2, 1, 1, 2)
    assert out.device.type == device and relative_error(out, expected) < 1e-12
    assert_gradients_match(out, expected, [x, weight, attention, bias], 1e-10)


def fused_problem(generator: str, device: str):
    """x (3, 4, 6, 5), weight (6, 2, 3, 3) with groups 2, and the generator's logit factors (P = 9)."""
    options = {"device": device, "dtype": torch.float32}
    x = torch.randn(3, 4, 6, 5, **options)
    weight = torch.randn(6, 2, 3, 3, **options)
    if generator == "full":
        factors = [
            torch.randn(3, 5, 9, **options),
            torch.randn(12, 5, **options) * 0.3,
            torch.randn(12, **options),
        ]
    else:
        factors = [torch.randn(3, 6, 2, 9, **options), torch.randn(3, 2, 2, 9, **options)]
    return [t.requires_grad_(True) for t in (x, weight, *factors)]


def fused_reference(generator: str, gate: str, x, weight, factors, stride, padding, dilation, groups):
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


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("device", DEVICES)
def test_fused_paths(device, generator):
    """float32 on the device, every path (Triton's on CUDA), forward and gradients."""
    for impl in fused_impls(device):
        torch.manual_seed(1)
        x, weight, *factors = leaves = fused_problem(generator, device)
        out = aw_conv2d_fused(
            x, weight, factors, None, 2, 1, 1, 2, generator=generator, gate="tanh", impl=impl
        )
        expected = fused_reference(generator, "tanh", x, weight, factors, 2, 1, 1, 2)
        assert out.device.type == device and relative_error(out, expected) < 1e-5, impl
        assert_gradients_match(out, expected, leaves, 1e-5)


def make_layer(device: str, generator: str, impl: str, **kwargs) -> AWConv2d:
    layer = AWConv2d(8, 6, 3, stride=2, padding=1, groups=2, generator=generator, rank=2, impl=impl, **kwargs)
    randomize_generator(layer)
    return layer.to(device)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("device", DEVICES)
def test_layer(device, generator, channels_last):
    for impl in fused_impls(device):
        torch.manual_seed(2)
        layer = make_layer(device, generator, impl)
        x = torch.randn(3, 8, 7, 6, device=device)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        x.requires_grad_(True)
        out = layer(x)
        expected = layer_reference(layer, x)
        assert out.device.type == device and relative_error(out, expected) < 1e-5, impl
        assert_gradients_match(out, expected, [x, *layer.parameters()], 1e-5)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("device", DEVICES)
def test_autocast(device, generator, dtype, tolerance):
    """The layer computes in the autocast dtype; its output and gradients stay near float64's."""
    for impl in fused_impls(device):
        torch.manual_seed(3)
        layer = make_layer(device, generator, impl)
        x = torch.randn(2, 8, 7, 6, device=device, requires_grad=True)
        with torch.autocast(device, dtype=dtype):
            out = layer(x)
        assert out.dtype == dtype, impl
        expected = layer_reference(layer, x)
        assert relative_error(out, expected) < tolerance, impl
        assert_gradients_match(out, expected, [x, layer.weight], 4 * tolerance)


class _ReferenceAW(nn.Module):
    """Stands in for an AWConv2d: its float64 reference forward (tests/reference.py)."""

    def __init__(self, layer: AWConv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return aw_layer_reference(self.layer, x)


def reference_model(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` whose AW layers run the float64 reference instead."""
    reference = copy.deepcopy(model).double()
    for name, module in list(reference.named_modules()):
        if isinstance(module, AWConv2d):
            parent_name, _, child = name.rpartition(".")
            setattr(reference.get_submodule(parent_name), child, _ReferenceAW(module))
    return reference


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("device", DEVICES)
def test_model(device, generator):
    """AW-ResNet-20 in eval mode, contiguous and channels_last, against its float64 reference."""
    torch.manual_seed(4)
    model = timm.create_model("aw_resnet20_cifar", num_classes=10, generator=generator, rank=2)
    for layer in model.modules():
        if isinstance(layer, AWConv2d):
            randomize_generator(layer, scale=0.1)
    model = model.to(device).eval()
    x = torch.randn(2, 3, 16, 16, device=device)
    with torch.no_grad():
        expected = reference_model(model)(x.double())
        for memory_format in (torch.contiguous_format, torch.channels_last):
            out = model.to(memory_format=memory_format)(x.to(memory_format=memory_format))
            assert relative_error(out, expected) < 1e-4, memory_format


@pytest.mark.parametrize(
    ("device", "backend"),
    [
        pytest.param("cpu", "aot_eager", marks=pytest.mark.slow),
        pytest.param("cpu", "inductor", marks=pytest.mark.slow),
        pytest.param(
            "cuda",
            "inductor",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ),
    ],
)
def test_compile(device, backend):
    """torch.compile'd layers (every path) equal eager ones, forward and backward."""
    for impl in fused_impls(device):
        torch.manual_seed(5)
        layer = make_layer(device, "full", impl)
        compiled = torch.compile(copy.deepcopy(layer), backend=backend)
        x = torch.randn(2, 8, 7, 6, device=device)
        out, eager = compiled(x), layer(x)
        assert relative_error(out, eager) < 1e-5, impl
        out.sum().backward()
        eager.sum().backward()
        assert relative_error(compiled.weight.grad, layer.weight.grad) < 1e-5, impl
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("device", "backend"),
    [
        ("cpu", "gloo"),
        pytest.param(
            "cuda", "nccl", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
        ),
    ],
)
def test_ddp_one_process(device, backend, tmp_path):
    """One DistributedDataParallel training step of an AW model in a one-process group: the
    gradients equal those of the model without DDP (one process averages nothing)."""
    if not dist.is_available() or not dist.is_backend_available(backend):
        pytest.skip(f"torch.distributed backend {backend} is not available")
    torch.manual_seed(6)
    layer = AWConv2d(3, 8, 3, padding=1, generator="lowrank")
    randomize_generator(layer)
    model = nn.Sequential(layer, nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model = model.to(device)
    plain = copy.deepcopy(model)
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0] if device == "cuda" else None)
        x, labels = torch.randn(4, 3, 8, 8, device=device), torch.tensor([0, 1, 2, 3], device=device)
        F.cross_entropy(ddp(x), labels).backward()
        F.cross_entropy(plain(x), labels).backward()
    finally:
        dist.destroy_process_group()
    for (name, got), want in zip(model.named_parameters(), plain.parameters(), strict=True):
        assert relative_error(got.grad, want.grad) < 1e-5, name
