"""Parameter and MAC counting, and the ``awconv profile`` command."""

from __future__ import annotations

import json

import pytest

from awconv.cli import main
from awconv.engine.options import parse_key_values
from awconv.profiling import format_profiles, plain_baseline, profile_model


@pytest.mark.parametrize(
    ("name", "baseline"),
    [
        ("aw_seresnet50", "resnet50"),
        ("cbamresnet101", "resnet101"),
        ("resnet18", "resnet18"),
        ("aw_cbamresnet110_cifar", "resnet110_cifar"),
        ("efficientnet_b0", None),
    ],
)
def test_plain_baseline(name: str, baseline: str | None) -> None:
    assert plain_baseline(name) == baseline


def test_resnet50_overheads_match_the_method_notes() -> None:
    # docs/method.md: full generator, r = 16: about +33 M parameters and +0.29 GMACs on
    # ResNet-50 (25.6 M, 4.09 GMACs).
    profile = profile_model("aw_resnet50")
    assert profile.baseline == "resnet50"
    assert round(profile.baseline_params / 1e6, 1) == 25.6
    assert round(profile.baseline_macs / 1e9, 2) == 4.09
    assert 32e6 < profile.extra_params < 35e6
    assert 0.27e9 < profile.extra_macs < 0.31e9
    lowrank = profile_model("aw_resnet50", generator="lowrank", rank=4)
    assert 0 < lowrank.extra_params < profile.extra_params / 10
    assert 0 < lowrank.extra_macs < profile.extra_macs


def test_aw_convolution_is_counted_on_every_path() -> None:
    # Batch 1 takes the per-sample loop, batch 4 the bmm path: both count the same MACs per sample.
    one = profile_model("aw_resnet20_cifar")
    four = profile_model("aw_resnet20_cifar", batch_size=4)
    assert four.macs == 4 * one.macs
    assert one.macs > one.baseline_macs and one.params > one.baseline_params
    assert one.input_size == (1, 3, 32, 32)


def test_img_size_and_in_chans() -> None:
    profile = profile_model("resnet20_cifar", img_size=28, in_chans=1)
    assert profile.input_size == (1, 1, 28, 28)
    assert profile.macs < profile_model("resnet20_cifar").macs


def test_unknown_model_suggests_names() -> None:
    with pytest.raises(ValueError, match=r"'aw_resnet51'.*aw_resnet50"):
        profile_model("aw_resnet51")


def test_formats() -> None:
    profiles = [profile_model("resnet20_cifar"), profile_model("aw_resnet20_cifar", generator="lowrank")]
    markdown = format_profiles(profiles, "markdown").splitlines()
    assert markdown[0].startswith("| model |") and len(markdown) == 4
    assert "aw_resnet20_cifar (generator=lowrank)" in markdown[3]
    rows = json.loads(format_profiles(profiles, "json"))
    assert rows[1]["extra_params"] == profiles[1].params - profiles[0].params
    table = format_profiles(profiles, "table").splitlines()
    assert len({len(line) for line in table[:1]}) == 1 and "resnet20_cifar" in table[1]
    with pytest.raises(ValueError, match="fmt"):
        format_profiles(profiles, "csv")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rank=4", ("rank", 4)),
        ("drop_rate=0.1", ("drop_rate", 0.1)),
        ("generator=lowrank", ("generator", "lowrank")),
        ("aw_stages=[2,3]", ("aw_stages", [2, 3])),
    ],
)
def test_parse_model_arg(text: str, expected: tuple) -> None:
    assert parse_key_values([text], "--model-arg") == dict([expected])


def test_list_valued_model_args_are_counted_and_cached() -> None:
    """``aw_stages=[2, 3]`` (a list) keys the count cache; fewer AW stages, fewer parameters."""
    everywhere = profile_model("aw_resnet20_cifar", img_size=8)
    limited = profile_model("aw_resnet20_cifar", img_size=8, aw_stages=[2, 3])
    assert limited.params < everywhere.params and limited.macs < everywhere.macs
    assert profile_model("aw_resnet20_cifar", img_size=8, aw_stages=(2, 3)).params == limited.params


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["profile", "aw_resnet20_cifar", "resnet20_cifar", "--format", "json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["model"] for row in rows] == ["aw_resnet20_cifar", "resnet20_cifar"]


def test_cli_table_with_model_args(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["profile", "aw_seresnet20_cifar", "--img-size", "28", "--model-arg", "generator=lowrank"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[0] == "model" and "generator=lowrank" in out[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "aw_resnet51"], "aw_resnet51"),
        (["profile", "resnet20_cifar", "--model-arg", "rank"], "KEY=VALUE"),
        (["profile", "resnet20_cifar", "--batch-size", "0"], "batch_size"),
    ],
)
def test_cli_user_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("awconv profile: error:") and message in err[0]
