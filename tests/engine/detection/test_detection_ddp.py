"""DDP evaluation with 2 CPU processes (gloo) on 5 images gives the single-process figures exactly.

A ``DistributedSampler`` pads the two shards to 3 images each by repeating the first image; the
metric must count it once (unit-tested with the padding simulated in test_detection_metrics.py).
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from awconv.cli import main
from awconv.data.shapes import make_shapes
from awconv.engine.detection import DetectorModule

SMALL = {"rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20, "box_score_thresh": 0.0}


@pytest.mark.slow
def test_two_processes_give_the_single_process_figures_on_an_odd_set(tmp_path, capsys) -> None:
    images_dir, annotations = make_shapes(tmp_path / "shapes", images=6, size=64, seed=0, val_fraction=0.17)[
        "train"
    ]
    assert len(json.loads(annotations.read_text())["images"]) == 5
    torch.manual_seed(0)
    module = DetectorModule(
        "fasterrcnn_resnet18_fpn", num_classes=4, categories={1: "circle", 2: "square", 3: "triangle"},
        min_size=64, max_size=64, detector_kwargs=SMALL,
    )  # fmt: skip
    checkpoint = tmp_path / "detector.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, checkpoint)
    evaluate = ["detect", "eval", "--weights", str(checkpoint), "--data", f"coco:{images_dir},{annotations}"]
    evaluate += ["--workers", "0", "--accelerator", "cpu"]
    assert main([*evaluate, "--out", str(tmp_path / "one.json")]) == 0
    capsys.readouterr()
    # Lightning's DDP launcher starts the second process by running the same command again.
    two = subprocess.run(
        [sys.executable, "-m", "awconv", *evaluate, "--devices", "2", "--out", str(tmp_path / "two.json")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("box AP per category") == 1  # printed by the first process only
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert one["AR100"] > 0 and one["AP"] > 0  # untrained, yet some boxes match: a case that can differ
    assert two == one
