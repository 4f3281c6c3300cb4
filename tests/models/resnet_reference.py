"""A float64 forward pass of the awconv ResNets, written from the papers with torch.nn.functional.

It reads a model's tensors by name (torchvision's layout) and recomputes the network without its
modules: He et al.'s ImageNet ResNet (7x7 stride-2 stem, 3x3 max-pool, basic or bottleneck blocks
with the stride on the 3x3 convolution, 1x1 projection shortcuts) and CIFAR ResNet (3x3 stem,
option-A shortcuts: subsample and zero-pad the channels); SE (Hu et al.) and CBAM (Woo et al.:
channel then spatial attention) after the residual branch's last BatchNorm; AW-convolution
(``reference.aw_conv2d_reference`` with ``reference.attention_reference``) for the convolutions
that are ``AWConv2d``. The geometry (strides, paddings) comes from the architecture, not from the
modules, so a module built with the wrong geometry is caught.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from reference import attention_reference, aw_conv2d_reference
from timm.layers.cbam import CbamModule
from timm.layers.squeeze_excite import SEModule
from torch import Tensor, nn

from awconv import AWConv2d

_EPS = 1e-5  # BatchNorm2d's default


def resnet_reference(model: nn.Module, x: Tensor) -> Tensor:
    """Logits of an eval-mode ImageNet or CIFAR ResNet (plain, SE, CBAM, AW) for x: (N, C, H, W), float64."""
    tensors = {key: value.detach().double() for key, value in model.state_dict().items()}
    net = _Net(model, tensors)
    x = x.double()
    imagenet = tensors["conv1.weight"].shape[-1] == 7
    x = net.conv("conv1", x, stride=2 if imagenet else 1, padding=3 if imagenet else 1)
    x = torch.relu(net.bn("bn1", x))
    if imagenet:
        x = F.max_pool2d(x, 3, 2, 1)
    stage = 1
    while f"layer{stage}.0.conv1.weight" in tensors:
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in tensors:
            stride = 2 if stage > 1 and block == 0 else 1
            x = net.block(f"layer{stage}.{block}", x, stride)
            block += 1
        stage += 1
    return F.linear(x.mean((2, 3)), tensors["fc.weight"], tensors["fc.bias"])


class _Net:
    """The model's tensors (float64) and the functional pieces that use them."""

    def __init__(self, model: nn.Module, tensors: dict[str, Tensor]) -> None:
        self.model = model
        self.tensors = tensors

    def conv(self, name: str, x: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
        weight = self.tensors[f"{name}.weight"]
        module = self.model.get_submodule(name)
        if isinstance(module, AWConv2d):
            return aw_conv2d_reference(x, weight, attention_reference(module, x), None, stride, padding, 1, 1)
        return F.conv2d(x, weight, self.tensors.get(f"{name}.bias"), stride, padding)

    def bn(self, name: str, x: Tensor) -> Tensor:
        t = self.tensors
        mean, var, weight, bias = (
            t[f"{name}.{k}"] for k in ("running_mean", "running_var", "weight", "bias")
        )
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, _EPS)

    def block(self, name: str, x: Tensor, stride: int) -> Tensor:
        if f"{name}.conv3.weight" in self.tensors:  # bottleneck: 1x1, 3x3 (strided), 1x1
            out = torch.relu(self.bn(f"{name}.bn1", self.conv(f"{name}.conv1", x)))
            out = torch.relu(self.bn(f"{name}.bn2", self.conv(f"{name}.conv2", out, stride, 1)))
            out = self.bn(f"{name}.bn3", self.conv(f"{name}.conv3", out))
        else:  # basic: two 3x3, the first strided
            out = torch.relu(self.bn(f"{name}.bn1", self.conv(f"{name}.conv1", x, stride, 1)))
            out = self.bn(f"{name}.bn2", self.conv(f"{name}.conv2", out, 1, 1))
        out = self.attention(name, out)
        if f"{name}.downsample.0.weight" in self.tensors:
            shortcut = self.bn(f"{name}.downsample.1", self.conv(f"{name}.downsample.0", x, stride))
        elif stride > 1 or x.shape[1] != out.shape[1]:  # option A
            shortcut = F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))
        else:
            shortcut = x
        return torch.relu(out + shortcut)

    def attention(self, block: str, x: Tensor) -> Tensor:
        """The block's attention module (timm names it ``se``, SE and CBAM alike) applied to x."""
        module, name, t = self.model.get_submodule(block).se, f"{block}.se", self.tensors
        if isinstance(module, SEModule):
            squeeze = x.mean((2, 3), keepdim=True)
            hidden = torch.relu(F.conv2d(squeeze, t[f"{name}.fc1.weight"], t[f"{name}.fc1.bias"]))
            return x * torch.sigmoid(F.conv2d(hidden, t[f"{name}.fc2.weight"], t[f"{name}.fc2.bias"]))
        if isinstance(module, CbamModule):

            def mlp(pooled: Tensor) -> Tensor:
                hidden = torch.relu(F.conv2d(pooled, t[f"{name}.channel.fc1.weight"]))
                return F.conv2d(hidden, t[f"{name}.channel.fc2.weight"])

            x = x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
            pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
            spatial = F.conv2d(pooled, t[f"{name}.spatial.conv.conv.weight"], padding=3)
            return x * torch.sigmoid(self.bn(f"{name}.spatial.conv.bn", spatial))
        assert module is None, f"unknown attention module {type(module).__name__} at {name}"
        return x
