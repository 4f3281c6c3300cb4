"""awconv: AW-convolution (Zhu et al., arXiv 2108.08205) for PyTorch.

Per-sample attention with the shape of a convolution's weights, multiplied into the weights.
Importing this package registers the ResNet families of ``awconv.models`` with timm.
"""

from awconv.convert import convert
from awconv.layers import AttentionGenerator, AWConv2d
from awconv.models import load_pretrained
from awconv.ops import aw_conv2d, aw_conv2d_fused

__all__ = ["AWConv2d", "AttentionGenerator", "aw_conv2d", "aw_conv2d_fused", "convert", "load_pretrained"]
__version__ = "0.1.0"
