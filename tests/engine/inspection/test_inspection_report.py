"""write_inspection_report: the tables show the statistics, the figures and statistics.json exist."""

from __future__ import annotations

import json
from pathlib import Path

from tiny_aw import tiny_model_and_batches

from awconv.engine.inspection import attention_statistics
from awconv.engine.inspection.report import write_inspection_report


def test_report_tables_figures_and_json_hold_the_statistics(tmp_path: Path) -> None:
    model, batches = tiny_model_and_batches()
    result = attention_statistics(model, batches, draw=1, matrix_images=3)
    configuration = {"model": "tiny", "data": "random", "weights": "none"}
    path = write_inspection_report(
        result, tmp_path, title="Tiny", configuration=configuration, classes=("a", "b", "c")
    )
    markdown, page = path.read_text(), (tmp_path / "report.html").read_text()
    for stats in result.layers:
        shape = " x ".join(map(str, stats.shape))
        assert (
            f"| {stats.name} | {shape} | {stats.modulation_mean:.3f} ± {stats.modulation_std:.3f} |"
            in markdown
        )
        chance = f"{100 * stats.class_share:.1f} ({100 * stats.class_share_chance:.1f})"
        assert f"| {100 * stats.image_share:.1f} | {chance} |" in markdown
        assert f"<td>{stats.name}</td><td>{shape}</td>" in page
        assert (tmp_path / "attention" / f"{stats.name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "n/a (no gate)" in markdown  # aw3 has gate "none"
    assert f"{result.images} images" in markdown and "<h2>Definitions</h2>" in page
    for figure in ("modulation_histograms", "layer_profile", "spectra", "kernel_distances"):
        assert (tmp_path / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "statistics.json").read_text())
    assert saved["configuration"] == configuration and saved["images"] == result.images
    for row, stats in zip(saved["layers"], result.layers, strict=True):
        assert row["name"] == stats.name and row["class_share"] == stats.class_share
        assert row["matrix_energy"]["4"] == stats.matrix_energy[4]
        assert row["kernel_distance_mean"] == float(stats.kernel_distances.mean())
