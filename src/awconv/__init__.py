"""awconv: AW-convolution (Zhu et al., arXiv 2108.08205) for PyTorch.

Per-sample attention with the shape of a convolution's weights, multiplied into the weights.
"""

from awconv.convert import convert
from awconv.functional import aw_conv2d
from awconv.layers import AttentionGenerator, AWConv2d

__all__ = ["AWConv2d", "AttentionGenerator", "aw_conv2d", "convert"]
__version__ = "0.1.0"
