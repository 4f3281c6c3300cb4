"""Detection training and evaluation: the loss falls, validation gives COCOeval's figures on the json,
bad data stops before the run starts, the CLI predicts as data and reports through the json's file names."""

import contextlib
import io
import json
import shutil

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from awconv.cli import main
from awconv.cli.detect import parse_sizes
from awconv.data.coco import coco_detection, collate_detection
from awconv.data.shapes import make_shapes
from awconv.engine.detection import (
    METRIC_NAMES,
    DetectionConfig,
    DetectionDataModule,
    DetectorModule,
    train_detector,
)
from awconv.engine.detection.report import DetectionRun, format_seed_summary
from awconv.engine.machine import describe_machine
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


def _save_checkpoint(path, model: str = "fasterrcnn_resnet18_fpn", **kwargs) -> DetectorModule:
    """A checkpoint of an untrained detector in the format ``detect train`` writes (hparams + state)."""
    torch.manual_seed(0)
    module = DetectorModule(
        model, num_classes=4, categories={1: "circle", 2: "square", 3: "triangle"}, min_size=64, max_size=64,
        detector_kwargs={**SMALL, "box_score_thresh": 0.0}, **kwargs,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return module


def test_a_few_training_iterations_lower_the_loss_masks_included(shapes) -> None:
    torch.manual_seed(0)
    module = DetectorModule(
        "maskrcnn_resnet18_fpn", num_classes=4, min_size=64, max_size=64, detector_kwargs=SMALL
    )
    data = coco_detection(*shapes["train"], train=True, masks=True, flip_prob=0.0)
    images, targets = collate_detection([data[i] for i in range(2)])
    optimizer = torch.optim.SGD(module.parameters(), lr=0.002, momentum=0.9)  # 0.01 diverges here
    losses, mask_losses = [], []
    for _ in range(6):
        parts = module.model(images, targets)
        loss = sum(parts.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        mask_losses.append(parts["loss_mask"].item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert mask_losses[-1] < 0.8 * mask_losses[0], mask_losses


class _Replay(nn.Module):
    """Stands in for a detector in eval mode: returns given detections, one image after the other."""

    def __init__(self, detections: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.detections = list(detections)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.detections.pop(0) for _ in images]


def test_validation_gives_cocoeval_on_the_json_with_any_category_ids(tmp_path) -> None:
    images_dir, annotations = make_shapes(tmp_path, images=8, size=48, seed=1)["train"]
    data = json.loads(annotations.read_text())
    new_ids = {1: 5, 2: 0, 3: 2}  # labels: 0 -> 1, 2 -> 2, 5 -> 3
    for entry in data["annotations"]:
        entry["category_id"] = new_ids[entry["category_id"]]
    for entry in data["categories"]:
        entry["id"] = new_ids[entry["id"]]
    annotations.write_text(json.dumps(data))
    datamodule = DetectionDataModule((images_dir, annotations), workers=0)
    assert datamodule.num_classes == 4 and list(datamodule.categories) == [0, 2, 5]
    generator = torch.Generator().manual_seed(3)
    detections, results = [], []
    for index in range(len(datamodule.val_set)):
        _, target = datamodule.val_set[index]
        boxes = target["boxes"].as_subclass(torch.Tensor)
        boxes = torch.cat(
            [boxes + torch.randn(boxes.shape, generator=generator), torch.tensor([[1.0, 1, 30, 30]])]
        )
        labels = torch.cat([target["labels"].roll(1), torch.tensor([1])])  # some classes wrong
        scores = torch.rand(len(boxes), generator=generator)
        detections.append({"boxes": boxes, "labels": labels, "scores": scores})
        for (x0, y0, x1, y1), label, score in zip(
            boxes.tolist(), labels.tolist(), scores.tolist(), strict=True
        ):
            category = [0, 2, 5][label - 1]
            box = [x0, y0, x1 - x0, y1 - y0]
            results.append(
                {"image_id": target["image_id"], "category_id": category, "bbox": box, "score": score}
            )
    module = DetectorModule(
        "fasterrcnn_resnet18_fpn", num_classes=4, categories=datamodule.categories, min_size=48, max_size=48
    )
    module.model = _Replay(detections)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    logged = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        reference = COCOeval(truth, truth.loadRes(results), "bbox")
        reference.evaluate(), reference.accumulate(), reference.summarize()
    assert 0.1 < reference.stats[0] < 0.9
    names = list(METRIC_NAMES.values())
    assert [module.coco_metrics[n] for n in names] == pytest.approx(reference.stats.tolist(), abs=1e-6)
    assert [logged[f"val_{n}"] for n in names] == pytest.approx(reference.stats.tolist(), abs=1e-6)
    precision = reference.eval["precision"][:, :, :, 0, -1]
    per_class = {
        name: float(np.mean(precision[:, :, k][precision[:, :, k] > -1]))
        for k, name in enumerate(datamodule.categories.values())
    }
    assert module.coco_metrics["AP_per_class"] == pytest.approx(per_class, abs=1e-6)


def test_bad_data_stops_the_run_before_a_model_or_its_directory_exists(shapes, tmp_path) -> None:
    images_dir, annotations = shapes["train"]
    data = json.loads(annotations.read_text())
    data["annotations"][2]["area"] = "large"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    val = tuple(map(str, shapes["val"]))
    config = DetectionConfig(
        "fasterrcnn_resnet18_fpn", (str(images_dir), str(bad)), val, str(tmp_path / "run")
    )
    with pytest.raises(ValueError, match=r"bad\.json: annotation 3 of image \d+ has area 'large'"):
        train_detector(config)
    assert not (tmp_path / "run").exists()


def test_sync_batchnorm_reaches_the_trainer(shapes, tmp_path) -> None:
    config = DetectionConfig(
        "fasterrcnn_resnet18_fpn", tuple(map(str, shapes["train"])), tuple(map(str, shapes["val"])),
        str(tmp_path / "run"), min_size=64, max_size=64, accelerator="cpu", devices=2, sync_batchnorm=True,
        workers=0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="sync_batchnorm needs GPUs"):
        train_detector(config)


def test_min_size_lists_and_ranges() -> None:
    assert parse_sizes("800") == (800,)
    assert parse_sizes("480,512,...,800") == (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    assert parse_sizes("640, 672, 704") == (640, 672, 704)
    for bad in ("480,...,800", "480,512,...,801", "a", "0", "480,512,..."):
        with pytest.raises(Exception, match="expected positive"):
            parse_sizes(bad)


def test_train_options_reach_the_run_and_both_tables_are_printed(monkeypatch, capsys) -> None:
    """``detect train`` parses into ``DetectionConfig`` (the run itself: the slow CLI test)."""
    given = {}

    def fake_train(config: DetectionConfig) -> dict:
        given["config"] = config
        figures = {name: 0.25 for name in METRIC_NAMES.values()}
        return {**figures, **{f"mask_{name}": 0.5 for name in figures}}

    monkeypatch.setattr("awconv.engine.detection.train_detector", fake_train)
    argv = [
        "detect", "train", "--model", "maskrcnn_aw_resnet18_fpn", "--data", "coco:t,t.json",
        "--val-data", "coco:v,v.json", "--min-size", "480,512,...,800", "--schedule", "3x",
        "--milestones", "30", "34", "--norm-weight-decay", "0.05", "--sync-batchnorm", "--devices", "2",
        "--aspect-ratio-group-factor", "-1", "--val-batch-size", "2", "--model-arg", "generator=lowrank",
        "--detector-arg", "box_batch_size_per_image=64", "--out", "somewhere",
    ]  # fmt: skip
    assert main(argv) == 0
    config = given["config"]
    assert (config.model, config.train, config.val) == (
        "maskrcnn_aw_resnet18_fpn",
        ("t", "t.json"),
        ("v", "v.json"),
    )
    assert config.min_size == tuple(range(480, 801, 32)) and config.max_size == 1333
    assert (config.schedule, config.epochs, config.milestones) == ("3x", None, (30, 34))
    assert (config.norm_weight_decay, config.sync_batchnorm, config.devices) == (0.05, True, 2)
    assert (config.aspect_ratio_group_factor, config.val_batch_size, config.run_dir) == (-1, 2, "somewhere")
    assert config.model_kwargs == {"generator": "lowrank"}
    assert config.detector_kwargs == {"box_batch_size_per_image": 64}
    printed = capsys.readouterr().out
    assert "| maskrcnn_aw_resnet18_fpn | 25.0 | 25.0 |" in printed
    assert "masks:\n| model |" in printed and "| maskrcnn_aw_resnet18_fpn | 50.0 | 50.0 |" in printed
    assert main([*argv[:4], "--data", "coco:t,t.json", "--val-data", "coco:v,v.json"]) == 0
    assert given["config"].min_size == 800  # one size: an int, torchvision's default form


def test_cli_errors_are_one_line(capsys) -> None:
    assert main(["detect", "train", "--data", "voc:x", "--val-data", "coco:a,b"]) == 2
    assert "--data must be coco:IMAGES_DIR,ANNOTATIONS_JSON" in capsys.readouterr().err
    assert (
        main(["detect", "train", "--model", "fasterrcnn_x", "--data", "coco:a,b", "--val-data", "coco:a,b"])
        == 2
    )
    assert "not a registered detector" in capsys.readouterr().err


def test_predict_writes_coco_results_and_report_finds_images_in_sub_folders(shapes, tmp_path, capsys) -> None:
    # A COCO set whose file names have sub-folders, with two images of one name.
    images_dir, annotations = shapes["val"]
    data = json.loads(annotations.read_text())
    root = tmp_path / "images"
    for index, image in enumerate(data["images"]):
        name = f"{'ab'[index % 2]}/x.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(images_dir / image["file_name"], root / name)
        image["file_name"] = name
    (tmp_path / "val.json").write_text(json.dumps(data))
    spec = f"coco:{root},{tmp_path / 'val.json'}"
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    _save_checkpoint(checkpoint)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"model": "fasterrcnn_resnet18_fpn", "seed": 3}))

    predict = ["detect", "predict", "--weights", str(checkpoint), "--accelerator", "cpu", "--workers", "0"]
    assert main([*predict, "--data", spec, "--out", str(tmp_path / "pred"), "--draw"]) == 0
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    truth = COCO(str(tmp_path / "val.json"))
    assert results and {r["image_id"] for r in results} <= set(truth.imgs)
    assert {r["category_id"] for r in results} <= {1, 2, 3} and all(len(r["bbox"]) == 4 for r in results)
    truth.loadRes(results)  # pycocotools accepts them
    assert (tmp_path / "pred" / "a" / "x_pred.png").is_file() and (
        tmp_path / "pred" / "b" / "x_pred.png"
    ).is_file()
    # Without --data: ids and drawings are the paths below the folder the images share.
    same_names = [str(root / "a" / "x.png"), str(root / "b" / "x.png")]
    assert main([*predict, *same_names, "--out", str(tmp_path / "p2"), "--draw"]) == 0
    results = json.loads((tmp_path / "p2" / "predictions.json").read_text())
    assert {r["image_id"] for r in results} <= {"a/x.png", "b/x.png"}
    assert (tmp_path / "p2" / "a" / "x_pred.png").is_file() and (
        tmp_path / "p2" / "b" / "x_pred.png"
    ).is_file()

    capsys.readouterr()
    evaluate = ["detect", "eval", "--weights", str(checkpoint), "--data", spec, "--workers", "0"]
    assert main([*evaluate, "--accelerator", "cpu", "--out", str(tmp_path / "m.json")]) == 0
    metrics, printed = json.loads((tmp_path / "m.json").read_text()), capsys.readouterr().out
    assert f"| best.ckpt | {100 * metrics['AP']:.1f} | {100 * metrics['AP50']:.1f} |" in printed
    circle = metrics["AP_per_class"]["circle"]
    assert "box AP per category" in printed and f"| circle | {100 * circle:.1f} |" in printed

    report = ["detect", "report", str(tmp_path / "run"), "--data", spec, "--out", str(tmp_path / "report")]
    assert main([*report, "--images", "2"]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| AR100 |" in report and "## Box AP per category" in report and "| circle |" in report
    assert (
        "(fasterrcnn_resnet18_fpn/a/x_pred.png)" in report
        and "(fasterrcnn_resnet18_fpn/b/x_pred.png)" in report
    )
    capsys.readouterr()


@pytest.mark.slow
def test_cli_train_resume_eval_predict_report(shapes, tmp_path, capsys, monkeypatch) -> None:
    (train_dir, train_json), (val_dir, val_json) = shapes["train"], shapes["val"]
    common = [
        "--min-size",
        "56,64",
        "--max-size",
        "64",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--no-progress",
    ]
    small = [f"--detector-arg={key}={value}" for key, value in SMALL.items()]
    args = ["detect", "train", "--model", "fasterrcnn_aw_resnet18_fpn", "--model-arg", "generator=lowrank"]
    args += ["--data", f"coco:{train_dir},{train_json}", "--val-data", f"coco:{val_dir},{val_json}"]
    args += ["--out", str(tmp_path / "run"), "--warmup-iters", "2", "--accelerator", "cpu", *common, *small]
    args += ["--norm-weight-decay", "1e-4", "--schedule", "2x"]
    assert main([*args, "--epochs", "1"]) == 0
    # Resumed on another machine: metrics.json names both, in the order the epochs ran.
    monkeypatch.setattr("awconv.engine.history.describe_machine", lambda device: f"machine B ({device})")
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert "| fasterrcnn_aw_resnet18_fpn |" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["min_size"] == [56, 64] and config["milestones"] == [16, 22] and config["epochs"] == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["machines"] == [describe_machine(torch.device("cpu")), "machine B (cpu)"]
    assert set(METRIC_NAMES.values()) <= set(metrics) and set(metrics["AP_per_class"]) == {
        "circle",
        "square",
        "triangle",
    }
    spec = f"coco:{val_dir},{val_json}"
    # The resumed run's figures are what `detect eval` finds in the checkpoint it names.
    best = ["detect", "eval", "--weights", metrics["checkpoint"], "--data", spec, "--workers", "0"]
    assert main([*best, "--out", str(tmp_path / "best.json")]) == 0
    evaluated = json.loads((tmp_path / "best.json").read_text())
    assert evaluated == {k: v for k, v in metrics.items() if k not in ("model", "checkpoint", "machines")}
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    evaluate = ["detect", "eval", "--weights", str(ckpt), "--data", spec, "--workers", "0"]
    assert main([*evaluate, "--out", str(tmp_path / "m.json")]) == 0
    assert "box AP per category" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "m.json").read_text())) == set(METRIC_NAMES.values()) | {"AP_per_class"}
    report = ["detect", "report", str(tmp_path / "run"), "--data", spec]
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
    labels = ["fasterrcnn_aw_resnet18_fpn seed 0", f"fasterrcnn_aw_resnet18_fpn seed 0 ({tmp_path / 'run'})"]
    rows = [line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith(f"| {labels[0]}")]
    assert rows == labels  # one box-table row per run, labelled apart
    assert f"| category | {labels[0]} | {labels[1]} |" in text


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
    """Faster R-CNN with a plain and Mask R-CNN with an AW backbone, one seed: the same images in the
    same order (pairing by seed); the Mask R-CNN run reports mask figures beside box figures."""
    seen = []
    for model in ("fasterrcnn_resnet18_fpn", "maskrcnn_aw_resnet18_fpn"):
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
    metrics = json.loads((tmp_path / "maskrcnn_aw_resnet18_fpn" / "metrics.json").read_text())
    names = set(METRIC_NAMES.values())
    assert names | {f"mask_{n}" for n in names} | {"AP_per_class", "mask_AP_per_class"} <= set(metrics)
    assert metrics["machines"] == [describe_machine(torch.device("cpu"))]
