"""Faster R-CNN assembly: forward passes, freezing, AW generators, multi-scale sizes, the name registry."""

import pytest
import timm
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

import awconv
from awconv.detection import create_detector, fasterrcnn, has_masks, list_detectors
from awconv.layers import AttentionGenerator, AWConv2d

# Tiny images and few proposals keep these tests fast on a CPU.
TINY = {
    "min_size": 64,
    "max_size": 64,
    "detector_kwargs": {
        "rpn_pre_nms_top_n_train": 100,
        "rpn_post_nms_top_n_train": 50,
        "rpn_pre_nms_top_n_test": 50,
        "rpn_post_nms_top_n_test": 20,
        "box_batch_size_per_image": 16,
    },
}


@pytest.fixture(scope="module")
def aw_detector() -> nn.Module:
    torch.manual_seed(0)
    model = fasterrcnn("aw_resnet18", num_classes=4, generator="lowrank", rank=2, **TINY)
    # Off the init: with Pointconv2 at zero the attention is 0 and Pointconv1 receives no
    # gradient; timm's zero-initialised last BatchNorm of each block cuts the whole branch off.
    for module in model.modules():
        if isinstance(module, AttentionGenerator):
            nn.init.normal_(module.pointconv2.weight, std=0.05)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
    return model


def _targets(count: int) -> list[dict[str, torch.Tensor]]:
    boxes = [
        torch.tensor([[4.0, 6.0, 30.0, 40.0]]),
        torch.tensor([[10.0, 8.0, 44.0, 30.0], [2.0, 2.0, 20.0, 20.0]]),
    ]
    return [{"boxes": b, "labels": torch.arange(1, len(b) + 1)} for b in boxes[:count]]


@pytest.mark.parametrize("batch", [1, 2])
def test_forward_train_and_eval_with_different_image_sizes(aw_detector: nn.Module, batch: int) -> None:
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 80)][:batch]
    aw_detector.train()
    losses = aw_detector(images, _targets(batch))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    generators = [m for m in aw_detector.modules() if isinstance(m, AttentionGenerator)]
    assert len(generators) == 16
    for generator in generators:  # the loss reaches every generator's every convolution
        for conv in (generator.pointconv1, generator.pointconv2, generator.pointconv2_in):
            assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0
    aw_detector.zero_grad()
    aw_detector.eval()
    with torch.no_grad():
        detections = aw_detector(images)
    assert len(detections) == batch
    for image, found in zip(images, detections, strict=True):
        assert found["boxes"].shape[1] == 4 and found["labels"].shape == found["scores"].shape
        assert (found["boxes"][:, 2] <= image.shape[2]).all() and (
            found["boxes"][:, 3] <= image.shape[1]
        ).all()


def test_backbone_trained_from_scratch_keeps_batchnorm_and_trains_whole(aw_detector: nn.Module) -> None:
    body = aw_detector.backbone.body
    assert isinstance(body.bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for p in aw_detector.parameters())
    assert sum(isinstance(m, AWConv2d) for m in body.modules()) == 16


@pytest.mark.parametrize("train_generators", [True, False])
def test_pretrained_backbone_is_frozen_as_torchvision_but_generators_train(
    tmp_path, train_generators
) -> None:
    plain = timm.create_model("resnet18")
    torch.save(plain.state_dict(), tmp_path / "resnet18.pth")
    model = fasterrcnn(
        "aw_resnet18",
        num_classes=3,
        pretrained_backbone=tmp_path / "resnet18.pth",
        train_generators=train_generators,
    )
    body = model.backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert isinstance(body.bn1, FrozenBatchNorm2d) and isinstance(body.layer4[1].bn2, FrozenBatchNorm2d)
    torch.testing.assert_close(body.layer1[0].conv1.weight, plain.layer1[0].conv1.weight)
    torch.testing.assert_close(body.layer4[0].bn1.running_var, plain.layer4[0].bn1.running_var)
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad and body.layer4[1].conv2.weight.requires_grad
    assert all(p.requires_grad == train_generators for p in body.layer1[0].conv1.generator.parameters())
    assert all(p.requires_grad for p in body.layer3[0].conv1.generator.parameters())


def test_module_backbone_converted_in_the_test_and_freeze_option() -> None:
    resnet, converted = awconv.convert(timm.create_model("resnet18"), generator="lowrank")
    model = fasterrcnn(resnet, num_classes=2, trainable_layers=0, freeze=True, **TINY)
    assert converted and isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)
    trainable = {n for n, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable and all(".generator." in n for n in trainable)


def test_registry_names_and_errors() -> None:
    names = list_detectors()
    assert (
        len(names) == 60
        and "fasterrcnn_aw_resnet50_fpn" in names
        and "maskrcnn_aw_cbamresnet152_fpn" in names
    )
    model = create_detector("fasterrcnn_resnet18_fpn", num_classes=5, **TINY)
    assert model.roi_heads.box_predictor.cls_score.out_features == 5 and not has_masks(
        "fasterrcnn_resnet18_fpn"
    )
    with pytest.raises(ValueError, match="fasterrcnn_aw_resnet50_fpn"):
        create_detector("fasterrcnn_aw_resnet5_fpn")


def test_several_min_sizes_train_at_a_random_one_and_evaluate_at_the_last() -> None:
    model = fasterrcnn("resnet18", num_classes=3, min_size=(32, 48, 64), max_size=200)
    image = torch.rand(3, 50, 100)
    model.transform.train()
    torch.manual_seed(0)
    heights = {model.transform([image])[0].image_sizes[0][0] for _ in range(30)}
    assert heights == {32, 48, 64}
    model.transform.eval()
    assert model.transform([image])[0].image_sizes[0] == (64, 128)


def test_bad_arguments_name_what_is_expected() -> None:
    with pytest.raises(ValueError, match="trainable_layers must be in"):
        fasterrcnn("resnet18", num_classes=3, trainable_layers=6, freeze=True)
    with pytest.raises(ValueError, match="num_classes"):
        fasterrcnn("resnet18", num_classes=1)
    with pytest.raises(ValueError, match=r"max_size must be an int >= min_size \(800\), got 600"):
        fasterrcnn("resnet18", num_classes=3, min_size=(480, 800), max_size=600)
    with pytest.raises(ValueError, match="not a registered timm model"):
        fasterrcnn("resnet17")
    with pytest.raises(ValueError, match="feature_info"):
        fasterrcnn(nn.Sequential(nn.Conv2d(3, 8, 3)), num_classes=3)
