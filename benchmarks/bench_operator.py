"""Operator benchmark: AW-convolution's paths, the AWConv2d layer and peers at ResNet-50's 3x3 shapes.

Usage: ``python benchmarks/bench_operator.py [--batch-sizes 1 8] [--repeats 10] [--threads 2]``
prints the tables; ``benchmarks/run.py`` runs it as part of ``docs/performance.md``.

Methods, all on a batch x (N, C, H, W) with 3x3 kernels C -> C, padding 1:

* ``plain``: ``F.conv2d`` with one weight (C, C, 3, 3).
* ``grouped``, ``bmm``, ``loop``: ``aw_conv2d(x, weight, attention, impl=...)`` with the attention
  (N, C, C, 3, 3) given as a tensor (made before the timed call).
* ``aw full``, ``aw lowrank1``: ``AWConv2d(C, C, 3)`` called on x, i.e. its generator and the
  fused operator ``aw_conv2d_fused`` (the attention made inside and never stored).
* ``condconv``: timm's ``CondConv2d`` with 4 experts and EfficientNet's routing.
* ``odconv``: the ODConv-style layer of ``bench_peers`` with 4 kernels.

The *floor* is the time of ``dst.copy_(src)`` on N * C * C * 9 float32 values: one read and one
write of every attention value, the least traffic an operator that materialises the attention
must add to the plain convolution. The *head* is the arithmetic the ``full`` generator cannot skip:
the matrix products of its last layer (Pointconv2, d -> C * C per tap) into preallocated outputs;
one in forward, four in forward + backward (forward, its regeneration in backward, and the
gradients of its input and weight).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from bench_peers import CondConvLayer, ODConv2d
from bench_timing import median_ms, peak_memory_bytes, top_ops
from torch import Tensor, nn

from awconv.layers import AWConv2d
from awconv.ops import aw_conv2d

__all__ = [
    "METHODS",
    "MODES",
    "RESNET50_SHAPES",
    "RESNET50_STRIDED_SHAPES",
    "OperatorResult",
    "Shape",
    "bench_shape",
    "format_memory_table",
    "format_time_table",
    "profile_layer",
]

METHODS = ("plain", "grouped", "bmm", "loop", "aw full", "aw lowrank1", "condconv", "odconv")
AW_PATHS = ("grouped", "bmm", "loop")
MODES = ("forward", "forward+backward")
MIB = 2**20


@dataclass(frozen=True)
class Shape:
    """A 3x3 convolution C -> C on an H x H input with stride s."""

    channels: int
    size: int
    stride: int = 1

    @property
    def label(self) -> str:
        """``C@H`` and, for stride 2, ``/2``, e.g. ``128@56/2``."""
        return f"{self.channels}@{self.size}" + (f"/{self.stride}" if self.stride != 1 else "")


# The bottleneck 3x3 convolutions of ResNet-50's four stages (stride 1), and each stage's first,
# strided one (stages 2 to 4).
RESNET50_SHAPES = (Shape(64, 56), Shape(128, 28), Shape(256, 14), Shape(512, 7))
RESNET50_STRIDED_SHAPES = (Shape(128, 56, 2), Shape(256, 28, 2), Shape(512, 14, 2))


@dataclass
class OperatorResult:
    """Times (ms) and peak memory (bytes) of every method at one shape, batch and mode.

    ``peak_bytes`` is the tensor memory a call holds above its inputs, parameters and given
    attention; ``attention_bytes`` is the size of the attention tensor the ``aw_conv2d`` paths take.
    """

    shape: Shape
    batch: int
    mode: str
    floor_ms: float
    head_ms: float
    attention_bytes: int
    ms: dict[str, float] = field(default_factory=dict)
    peak_bytes: dict[str, int] = field(default_factory=dict)


def _method(name: str, shape: Shape, batch: int) -> tuple[Callable[[Tensor], Tensor], list[Tensor]]:
    """The callable of method ``name`` and the tensors it is differentiated with respect to."""
    c, stride = shape.channels, shape.stride
    if name == "plain" or name in AW_PATHS:
        weight = torch.randn(c, c, 3, 3) / (3 * c**0.5)
        if name == "plain":
            return lambda x: F.conv2d(x, weight, None, stride, 1), [weight]
        attention = torch.rand(batch, c, c, 3, 3) - 0.5
        return lambda x: aw_conv2d(x, weight, attention, None, stride, 1, impl=name), [weight, attention]
    module: nn.Module
    if name == "aw full":
        module = AWConv2d(c, c, 3, stride, 1, bias=False)
    elif name == "aw lowrank1":
        module = AWConv2d(c, c, 3, stride, 1, bias=False, generator="lowrank", rank=1)
    elif name == "condconv":
        module = CondConvLayer(c, c, 3, stride, 1, num_experts=4)
    elif name == "odconv":
        module = ODConv2d(c, c, 3, stride, 1, num_kernels=4)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {name!r}")
    if isinstance(module, AWConv2d):  # a trained-looking, non-zero attention (the cost is the same)
        with torch.no_grad():
            module.generator.pointconv2.weight.normal_(0, 0.05)
    return module, list(module.parameters())


def _call(
    fn: Callable[[Tensor], Tensor], x: Tensor, params: list[Tensor], backward: bool
) -> Callable[[], object]:
    """The timed work: forward under inference mode, or forward and all input/parameter gradients."""
    if not backward:

        def forward() -> object:
            with torch.inference_mode():
                return fn(x)

        return forward
    inputs = [x.requires_grad_(), *(p.requires_grad_() for p in params)]
    grad_out = torch.randn_like(fn(x).detach())

    def forward_backward() -> object:
        return torch.autograd.grad(fn(x), inputs, grad_out)

    return forward_backward


def _floor_ms(numel: int, repeats: int, budget_s: float) -> float:
    """Median ms of one read and one write of ``numel`` float32 values: ``dst.copy_(src)``."""
    src, dst = torch.rand(numel), torch.empty(numel)
    return median_ms(lambda: dst.copy_(src), repeats, budget_s)


def _head_ms(shape: Shape, batch: int, mode: str, repeats: int, budget_s: float) -> float:
    """Median ms of the full generator's last-layer matrix products at this shape (see module doc)."""
    hidden_width = AWConv2d(shape.channels, shape.channels, 3, bias=False).generator.hidden
    rows, cols = batch * 9, shape.channels * shape.channels  # one row per sample and tap
    hidden, head = torch.randn(rows, hidden_width), torch.randn(cols, hidden_width)
    logits, grad_hidden, grad_head = torch.empty(rows, cols), torch.empty_like(hidden), torch.empty_like(head)

    def products() -> None:
        torch.mm(hidden, head.t(), out=logits)
        if mode == "forward+backward":
            torch.mm(hidden, head.t(), out=logits)
            torch.mm(logits, head, out=grad_hidden)
            torch.mm(logits.t(), hidden, out=grad_head)

    return median_ms(products, repeats, budget_s)


def bench_shape(
    shape: Shape,
    batch: int,
    mode: str,
    methods: Sequence[str] = METHODS,
    repeats: int = 10,
    budget_s: float = 2.0,
    memory: bool = True,
) -> OperatorResult:
    """Times (and optionally measures the memory of) ``methods`` at one shape, batch and mode.

    Args:
        shape: the convolution.
        batch: N.
        mode: ``"forward"`` or ``"forward+backward"``.
        methods: names from ``METHODS``.
        repeats: the most timed calls per method (median taken).
        budget_s: fewer calls (at least 3) where ``repeats`` would take longer than this.
        memory: also measure each method's peak memory (one more call under the profiler).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    numel = batch * shape.channels * shape.channels * 9
    floor_ms, head_ms = _floor_ms(numel, repeats, budget_s), _head_ms(shape, batch, mode, repeats, budget_s)
    result = OperatorResult(shape, batch, mode, floor_ms, head_ms, numel * 4)
    for name in methods:
        torch.manual_seed(0)
        fn, params = _method(name, shape, batch)
        x = torch.randn(batch, shape.channels, shape.size, shape.size)
        work = _call(fn, x, params, mode == "forward+backward")
        result.ms[name] = median_ms(work, repeats, budget_s)
        if memory:
            result.peak_bytes[name] = peak_memory_bytes(work)
    return result


def profile_layer(shape: Shape, batch: int, mode: str, generator: str = "full", count: int = 6):
    """The operators taking the most self CPU time in one call of an AWConv2d layer.

    Returns:
        ``(name, self CPU ms, share in %)`` as ``bench_timing.top_ops``.
    """
    fn, params = _method("aw full" if generator == "full" else "aw lowrank1", shape, batch)
    x = torch.randn(batch, shape.channels, shape.size, shape.size)
    return top_ops(_call(fn, x, params, mode == "forward+backward"), count)


def format_time_table(results: Sequence[OperatorResult], methods: Sequence[str] = METHODS) -> str:
    """Markdown: per row the plain conv, floor and head in ms, each method in ms and as a multiple of
    plain, each AW layer as a multiple of plain + floor, and ``aw full`` of plain + floor + head."""
    aw = [m for m in methods if m.startswith("aw ")]
    others = [m for m in methods if m != "plain"]
    with_head = "aw full" in methods
    head = [
        "N",
        "conv",
        "plain ms",
        "floor ms",
        "head ms",
        *others,
        *(f"{m} / (plain+floor)" for m in aw),
        *(["aw full / (plain+floor+head)"] if with_head else []),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        plain = r.ms["plain"]
        cells = [f"{r.ms[m]:.2f} ({r.ms[m] / plain:.2f}×)" for m in others]
        floors = [f"{r.ms[m] / (plain + r.floor_ms):.2f}" for m in aw]
        if with_head:
            floors.append(f"{r.ms['aw full'] / (plain + r.floor_ms + r.head_ms):.2f}")
        row = [
            str(r.batch),
            r.shape.label,
            f"{plain:.2f}",
            f"{r.floor_ms:.3f}",
            f"{r.head_ms:.2f}",
            *cells,
            *floors,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_memory_table(results: Sequence[OperatorResult], methods: Sequence[str] = METHODS) -> str:
    """Markdown: per row the attention's size and each method's peak memory, in MiB."""
    head = ["N", "conv", "attention MiB", *methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"{r.peak_bytes[m] / MIB:.1f}" for m in methods]
        lines.append(
            "| " + " | ".join([str(r.batch), r.shape.label, f"{r.attention_bytes / MIB:.1f}", *cells]) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, ms (median)")
    for mode in args.modes:
        results = [
            bench_shape(shape, batch, mode, repeats=args.repeats)
            for batch in args.batch_sizes
            for shape in RESNET50_SHAPES + RESNET50_STRIDED_SHAPES
        ]
        print(f"\n{mode}, time\n\n{format_time_table(results)}\n\n{mode}, peak memory\n\n")
        print(format_memory_table(results))


if __name__ == "__main__":
    main()
