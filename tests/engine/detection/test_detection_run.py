"""Detection training and evaluation: the loss falls, COCO metrics come back, the CLI runs end to end."""

import lightning.pytorch as pl
import pytest
import torch

from awconv.cli import main
from awconv.data.coco import coco_detection, collate_detection
from awconv.data.shapes import make_shapes
from awconv.engine.detection import METRIC_NAMES, DetectionDataModule, DetectorModule
from awconv.engine.detection.report import DetectionRun, format_seed_summary
from awconv.engine.statistics import mean_ci, paired_difference

SMALL = {
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 20,
    "box_batch_size_per_image": 16,
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes"), images=8, size=64, seed=0)


def test_a_few_training_iterations_lower_the_loss(shapes) -> None:
    torch.manual_seed(0)
    module = DetectorModule(
        "fasterrcnn_resnet18_fpn", num_classes=4, min_size=64, max_size=64, detector_kwargs=SMALL
    )
    data = coco_detection(*shapes["train"], train=True, min_size=64, max_size=64, flip_prob=0.0)
    images, targets = collate_detection([data[i] for i in range(2)])
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = sum(module.model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_validation_returns_the_coco_metrics(shapes) -> None:
    module = DetectorModule(
        "fasterrcnn_resnet18_fpn", num_classes=4, min_size=64, max_size=64, detector_kwargs=SMALL
    )
    data = DetectionDataModule(shapes["val"], batch_size=2, workers=0)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    results = trainer.validate(module, datamodule=data, verbose=False)[0]
    for name in METRIC_NAMES.values():
        assert -1.0 <= results[f"val_{name}"] <= 1.0


def test_cli_errors_are_one_line(capsys) -> None:
    assert main(["detect", "train", "--data", "voc:x", "--val-data", "coco:a,b"]) == 2
    assert "--data must be coco:IMAGES_DIR,ANNOTATIONS_JSON" in capsys.readouterr().err
    assert (
        main(["detect", "train", "--model", "fasterrcnn_x", "--data", "coco:a,b", "--val-data", "coco:a,b"])
        == 2
    )
    assert "not a registered detector" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_resume_eval_predict_report(shapes, tmp_path, capsys) -> None:
    (train_dir, train_json), (val_dir, val_json) = shapes["train"], shapes["val"]
    common = ["--min-size", "64", "--max-size", "64", "--batch-size", "2", "--workers", "0", "--no-progress"]
    small = [f"--detector-arg={key}={value}" for key, value in SMALL.items()]
    args = ["detect", "train", "--model", "fasterrcnn_aw_resnet18_fpn", "--model-arg", "generator=lowrank"]
    args += ["--data", f"coco:{train_dir},{train_json}", "--val-data", f"coco:{val_dir},{val_json}"]
    args += ["--out", str(tmp_path / "run"), "--warmup-iters", "2", "--accelerator", "cpu", *common, *small]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert "| fasterrcnn_aw_resnet18_fpn |" in capsys.readouterr().out
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert (
        main(
            [
                "detect",
                "eval",
                "--weights",
                str(ckpt),
                "--data",
                f"coco:{val_dir},{val_json}",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    image = next(val_dir.iterdir())
    assert (
        main(["detect", "predict", "--weights", str(ckpt), "--out", str(tmp_path / "pred"), str(image)]) == 0
    )
    assert (tmp_path / "pred" / f"{image.stem}_pred.png").is_file()
    report = ["detect", "report", str(tmp_path / "run"), "--data", f"coco:{val_dir},{val_json}"]
    assert main([*report, "--out", str(tmp_path / "report"), "--images", "2"]) == 0
    assert "Predictions of fasterrcnn_aw_resnet18_fpn" in (tmp_path / "report" / "report.md").read_text()
    # The same run twice, last checkpoint: labelled apart, one seed so no summary over seeds.
    twice = [
        *report[:3],
        str(tmp_path / "run"),
        *report[3:],
        "--checkpoint",
        "last",
        "--out",
        str(tmp_path / "report2"),
    ]
    assert main([*twice, "--images", "1"]) == 0
    text = (tmp_path / "report2" / "report.md").read_text()
    assert "last checkpoint" in text and "Over seeds" not in text
    assert text.count("| fasterrcnn_aw_resnet18_fpn seed 0") == 2


def test_seed_summary_gives_mean_ci_and_paired_difference() -> None:
    ap = {"plain": [0.30, 0.34, 0.32], "aw": [0.33, 0.33, 0.36]}
    runs = [
        DetectionRun(model, seed, {"AP": value, "AP50": value + 0.2})
        for model, values in ap.items()
        for seed, value in enumerate(values)
    ]
    summary = format_seed_summary(runs)
    for model, values in ap.items():
        mean, half = mean_ci([100 * v for v in values])
        ap50_mean, ap50_half = mean_ci([100 * v + 20 for v in values])
        assert (
            f"| {model} | 0, 1, 2 | {mean:.1f} ± {half:.1f} | {ap50_mean:.1f} ± {ap50_half:.1f} |" in summary
        )
    diff = paired_difference(
        {s: 100 * v for s, v in enumerate(ap["aw"])}, {s: 100 * v for s, v in enumerate(ap["plain"])}
    )
    assert f"| aw | {diff.mean:+.1f} ± {diff.half_width:.1f} | 2 / 1 of 3 | {diff.p_value:.3f} |" in summary
    assert format_seed_summary(runs[:1] + runs[3:4]) == ""  # one seed each: nothing to summarise


class _RecordImages(pl.Callback):
    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.images.append(torch.stack(batch[0]).clone())


def test_one_seed_gives_every_detector_the_same_batches(shapes, tmp_path) -> None:
    """Plain and AW detectors with one seed see the same images in the same order (pairing by seed)."""
    from awconv.engine.detection import DetectionConfig, train_detector

    seen = []
    for model in ("fasterrcnn_resnet18_fpn", "fasterrcnn_aw_resnet18_fpn"):
        record = _RecordImages()
        config = DetectionConfig(
            model, tuple(map(str, shapes["train"])), tuple(map(str, shapes["val"])), str(tmp_path / model),
            detector_kwargs=SMALL, min_size=64, max_size=64, epochs=1, batch_size=2, warmup_iters=1,
            workers=0, accelerator="cpu", seed=5, progress_bar=False,
        )  # fmt: skip
        train_detector(config, callbacks=[record])
        seen.append(record.images)
    assert len(seen[0]) == len(seen[1]) > 1
    assert all(torch.equal(a, b) for a, b in zip(*seen, strict=True))
