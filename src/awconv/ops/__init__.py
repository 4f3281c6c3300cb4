"""The AW-convolution operator and nothing else: tensors in, tensors out.

- ``aw_conv2d`` (``ops/aw_conv2d.py``): the attention given as a tensor.
- ``aw_conv2d_fused`` (``ops/fused.py``): the attention generated inside from its logit factors
  and never stored; what ``AWConv2d`` runs.
- ``ops/operators.py``: both registered as PyTorch operators (``torch.ops.awconv.*``) with fake
  kernels and autograd formulas; ``ops/kernels.py``: the fused operator's kernel table, where
  device kernels plug in; ``ops/fused_aten.py`` and ``ops/paths.py``: the ATen kernels (grouped,
  bmm, loop); ``ops/composite.py``: both in standard operations, for ONNX, TorchScript tracing,
  ``torch.func`` and double backward; ``ops/flop_formulas.py``: their FLOP counts for
  ``torch.utils.flop_counter``.
- ``ops/fused_cpu.py``: ``impl="cpp"``, the compiled CPU kernel (``ops/csrc/aw_conv2d_cpu.cpp``,
  built by ``make install`` and loaded by ``ops/cpu_extension.py``; pure PyTorch where it is not).
- ``ops/triton_registration.py``: ``impl="triton"`` in the kernel table; ``ops/triton_conv.py`` and
  ``ops/triton_kernels.py``: its Triton kernels for CUDA, which make the modulated kernels in
  registers (imported on first use).
- ``ops/geometry.py``, ``ops/validation.py``, ``ops/precision.py``: padding, output sizes and
  layout, argument checks, the dtype to compute in.
"""

import awconv.ops.flop_formulas
import awconv.ops.triton_registration  # noqa: F401  (registers impl="triton")
from awconv.ops.aw_conv2d import aw_conv2d
from awconv.ops.fused import FUSED_GATES, FUSED_GENERATORS, aw_conv2d_fused
from awconv.ops.kernels import fused_impls, register_fused_kernel
from awconv.ops.paths import IMPLS

__all__ = [
    "FUSED_GATES",
    "FUSED_GENERATORS",
    "IMPLS",
    "aw_conv2d",
    "aw_conv2d_fused",
    "fused_impls",
    "register_fused_kernel",
]
