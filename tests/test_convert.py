"""convert: which convolutions are swapped, and that converted models compute the same thing."""

from __future__ import annotations

import pytest
import torch
import torchvision
from reference import relative_error
from torch import nn

from awconv import AWConv2d, convert


def trained_looking_resnet18() -> nn.Module:
    """A torchvision ResNet-18 with random weights and BatchNorm statistics away from defaults."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_convert_resnet18_keeps_logits():
    model = trained_looking_resnet18()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    model, converted = convert(model)
    assert len(converted) == 16  # both 3x3 convs of the 8 basic blocks
    assert "conv1" not in converted
    assert all(name.startswith("layer") for name in converted)
    assert isinstance(model.layer1[0].conv1, AWConv2d)
    assert type(model.conv1) is nn.Conv2d and type(model.layer2[0].downsample[0]) is nn.Conv2d
    assert relative_error(model(x), expected) < 1e-5


def test_convert_keeps_state_dict_keys_of_the_plain_model():
    plain = trained_looking_resnet18()
    model, _ = convert(trained_looking_resnet18(), generator="lowrank", rank=4)
    assert set(plain.state_dict()) <= set(model.state_dict())
    extra = set(model.state_dict()) - set(plain.state_dict())
    assert extra and all(".generator." in key for key in extra)


def test_convert_is_idempotent_and_skips_generators():
    model, first = convert(trained_looking_resnet18())
    model, second = convert(model, include=lambda name, conv: True)
    # only the stem and the 1x1 downsample convs remain plain; generators are never converted
    assert "conv1" in second and not any("generator" in name for name in second)
    assert len(first) + len(second) == 20


def test_include_policy_and_options():
    model, converted = convert(
        trained_looking_resnet18(),
        include=lambda name, conv: name.startswith("layer4") and conv.kernel_size == (3, 3),
        reduction=4,
    )
    assert converted == ["layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    assert model.layer4[0].conv1.generator.hidden == 256 // 4


def test_shared_convolution_is_converted_once():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), conv, nn.ReLU(), conv)
    model, converted = convert(model)
    assert converted == ["1", "3"] and model[1] is model[3]


def test_convert_a_bare_conv():
    conv = nn.Conv2d(3, 3, 3)
    layer, converted = convert(conv, include=lambda name, module: True)
    assert isinstance(layer, AWConv2d) and converted == [""]


def test_convert_bad_arguments():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        convert("resnet18")
    with pytest.raises(TypeError, match="include must be a callable"):
        convert(nn.Conv2d(3, 3, 3), include="layer*")
    with pytest.raises(ValueError, match="generator must be one of"):
        convert(trained_looking_resnet18(), generator="huge")
