"""AWConv2dSame: the AW-convolution counterpart of timm's ``Conv2dSame`` (TensorFlow "SAME" padding).

timm's ``Conv2dSame`` (used by the ``tf_*`` ports, e.g. ``tf_efficientnet_b0``, wherever the padding
cannot be static: a stride above 1, or an even kernel) pads every input with ``timm.layers.pad_same``:
``ceil(H / stride)`` output rows, the extra padding row at the bottom, the extra column at the
right. ``AWConv2dSame`` pads the same way and then runs ``AWConv2d`` with no padding of its own, so
``AWConv2dSame.from_conv(conv)`` computes exactly what ``conv`` computes at every input size, and
``convert`` uses it for ``Conv2dSame``. The attention generator pools the padded input, the
tensor the convolution's taps multiply.
"""

from __future__ import annotations

import torch
from timm.layers import Conv2dSame, pad_same, register_notrace_module
from torch import Tensor, nn

from awconv.layers.aw_conv2d import AWConv2d

__all__ = ["AWConv2dSame"]


@register_notrace_module
class AWConv2dSame(AWConv2d):
    """``AWConv2d`` with TensorFlow "SAME" padding computed from each input's size.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as ``AWConv2d``.
        padding: ignored, as by timm's ``Conv2dSame``: the padding follows from the input's size.
        padding_mode: ``"zeros"`` only ("SAME" pads with zeros).
        **kwargs: ``AWConv2d``'s generator options (``reduction``, ``generator``, ``rank``,
            ``gate``, ``pool``, ``min_hidden``, ``impl``, ``device``, ``dtype``).

    Shapes:
        input (N, C1, H, W) -> output (N, C2, ceil(H / sh), ceil(W / sw)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        **kwargs,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' for 'SAME' padding, got {padding_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias, **kwargs)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs) -> AWConv2dSame:
        """Builds an AWConv2dSame holding ``conv``'s weights, equal to ``conv`` before training.

        Args:
            conv: a timm ``Conv2dSame``.
            **kwargs: generator options (``reduction``, ``generator``, ``gate``, ...).

        Returns:
            An AWConv2dSame on the conv's device and dtype, in its train/eval mode, its parameters
            as trainable as the conv's.
        """
        if type(conv) is not Conv2dSame:
            raise TypeError(f"conv must be a timm Conv2dSame, got {type(conv).__name__}")
        return cls._from_checked_conv(conv, **kwargs)  # its padding (always 0) is not used

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C1, H, W) -> (N, C2, ceil(H / sh), ceil(W / sw))."""
        padded = pad_same(x, self.kernel_size, self.stride, self.dilation)
        if torch.jit.is_scripting():
            return self._forward_scripted(padded)
        return super().forward(padded)
