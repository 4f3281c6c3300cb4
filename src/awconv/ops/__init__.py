"""The AW-convolution operator and nothing else: tensors in, tensors out.

- ``aw_conv2d`` (``ops/aw_conv2d.py``): the attention given as a tensor.
- ``aw_conv2d_fused`` (``ops/fused.py``): the attention generated inside from its logit factors
  and never stored; what ``AWConv2d`` runs.
- ``ops/paths.py``: the per-sample convolution paths both use (grouped, bmm, loop).
- ``ops/triton_conv.py``, ``ops/triton_kernels.py``: the fused operator's ``impl="triton"`` for
  CUDA, Triton kernels that make the modulated kernels in registers (imported on first use).
- ``ops/geometry.py``, ``ops/validation.py``, ``ops/precision.py``: padding and output sizes,
  argument checks, the dtype to compute in.
"""

from awconv.ops.aw_conv2d import aw_conv2d
from awconv.ops.fused import FUSED_GATES, FUSED_GENERATORS, FUSED_IMPLS, aw_conv2d_fused
from awconv.ops.paths import IMPLS

__all__ = ["FUSED_GATES", "FUSED_GENERATORS", "FUSED_IMPLS", "IMPLS", "aw_conv2d", "aw_conv2d_fused"]
