"""Mask R-CNN trained end to end on the shapes set learns masks, not only boxes.

Slow: 96 iterations of ResNet-18-FPN Mask R-CNN from scratch at 64 px (18.6 min on this project's
2-core machine under a load average of 10 from other jobs). The fast set's smoke variants are
``test_a_few_training_iterations_lower_the_loss_masks_included`` and
``test_one_seed_gives_every_detector_the_same_batches`` in test_detection_run.py.
"""

import json

import pytest

from awconv.data.shapes import make_shapes
from awconv.engine.detection import DetectionConfig, train_detector

SMALL = {
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
    "box_batch_size_per_image": 32,
}


@pytest.mark.slow
def test_mask_rcnn_learns_masks_on_shapes(tmp_path) -> None:
    splits = make_shapes(tmp_path / "shapes", images=40, size=64, seed=0)  # 32 training, 8 validation
    config = DetectionConfig(
        "maskrcnn_resnet18_fpn", tuple(map(str, splits["train"])), tuple(map(str, splits["val"])),
        str(tmp_path / "run"), detector_kwargs=SMALL, min_size=64, max_size=64, epochs=12, milestones=(10,),
        batch_size=4, lr=0.02, warmup_iters=30, workers=0, accelerator="cpu", seed=0, progress_bar=False,
    )  # fmt: skip
    summary = train_detector(config)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    first, last = history[0], history[-1]
    # Measured with this configuration: mask AP50 0.001 after epoch 1, 0.145 after epoch 12 (box
    # AP50 0.004 -> 0.236); the mask loss 1.89 -> 0.43.
    assert first["val_mask_AP50"] < 0.02 and last["val_mask_AP50"] > 0.08
    assert last["val_AP50"] > 0.12
    assert last["train_loss_mask"] < 0.5 * first["train_loss_mask"]
    # metrics.json evaluates best.ckpt, the epoch of the highest box AP, again.
    assert summary["AP"] == pytest.approx(max(row["val_AP"] for row in history), abs=1e-6)
    assert set(summary["mask_AP_per_class"]) == {"circle", "square", "triangle"}
