"""Mask R-CNN assembly: torchvision's MaskRCNN on awconv backbones, by name, with masks in and out."""

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN

from awconv.detection import create_detector, has_masks, maskrcnn
from awconv.layers import AWConv2d

TINY = {
    "min_size": 64,
    "max_size": 64,
    "detector_kwargs": {
        "rpn_pre_nms_top_n_train": 100,
        "rpn_post_nms_top_n_train": 50,
        "rpn_pre_nms_top_n_test": 50,
        "rpn_post_nms_top_n_test": 20,
        "box_batch_size_per_image": 16,
        "box_score_thresh": 0.0,
    },
}


def test_mask_rcnn_trains_on_masks_and_predicts_one_per_detection() -> None:
    torch.manual_seed(0)
    model = create_detector("maskrcnn_aw_resnet18_fpn", num_classes=3, generator="lowrank", rank=2, **TINY)
    assert isinstance(model, MaskRCNN) and has_masks("maskrcnn_aw_resnet18_fpn")
    assert sum(isinstance(m, AWConv2d) for m in model.backbone.body.modules()) == 16
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 12:40] = 1
    target = {"boxes": torch.tensor([[12.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([2]), "masks": masks}
    model.train()
    losses = model([torch.rand(3, 64, 64)], [target])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    losses["loss_mask"].backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (found,) = model([torch.rand(3, 48, 80)])
    assert len(found["boxes"]) > 0 and found["masks"].shape == (len(found["boxes"]), 1, 48, 80)
    assert 0 <= found["masks"].min() <= found["masks"].max() <= 1


def test_maskrcnn_takes_a_module_backbone_frozen_as_torchvision() -> None:
    import timm

    model = maskrcnn(timm.create_model("resnet18"), num_classes=2, freeze=True, trainable_layers=1, **TINY)
    trainable = {n for n, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("layer4") for n in trainable)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.body.modules())
