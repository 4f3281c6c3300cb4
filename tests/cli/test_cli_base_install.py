"""The command line on the base install: help without torch, profile and make-shapes without Lightning,
one line naming the extra for the commands that need it; defaults, --version and option names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from awconv.cli import build_parser, main

# Runs the command line with Lightning hidden, as on `pip install awconv` without extras. First checks
# that `import awconv` loads no torch, and that the package keeps its public names and registrations.
_WITHOUT_LIGHTNING = """
import contextlib, io, json, sys
sys.modules["lightning"] = None
import awconv
assert "torch" not in sys.modules, "import awconv imported torch"
import awconv.convert  # binds the submodule to the package's attribute of the same name
from awconv import AWConv2d, convert
import timm
assert callable(convert) and not isinstance(convert, type(sys)), convert
assert timm.is_model("aw_resnet20_cifar"), "the families were not registered with timm"
from awconv.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    results[name] = [status, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def test_the_cli_without_lightning(tmp_path: Path) -> None:
    """Also: ``import awconv`` alone imports no torch, and still registers the families with timm."""
    commands = {
        "help": ["--help"],
        "train-help": ["train", "--help"],
        "detect-help": ["detect", "train", "--help"],
        "profile": ["profile", "resnet20_cifar", "--image-size", "8"],
        "make-shapes": ["make-shapes", str(tmp_path / "shapes"), "--images", "4", "--size", "32"],
        "train": ["train", "resnet20_cifar", "--data", "digits"],
        "eval": ["eval", "resnet20_cifar", "--weights", "w.safetensors", "--data", "digits"],
        "compare": ["compare", "--models", "resnet20_cifar", "--data", "digits"],
        "detect": ["detect", "train", "--data", "coco:a,b.json", "--val-data", "coco:a,b.json"],
    }
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LIGHTNING, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.splitlines()[-1])
    for name in ("help", "train-help", "detect-help"):
        assert results[name][0] == 0 and "usage: awconv" in results[name][1], name
    status, out, err = results["profile"]
    assert status == 0 and "resnet20_cifar" in out and "GMACs" in out, err
    assert results["make-shapes"][0] == 0 and (tmp_path / "shapes" / "train").is_dir()
    for name in ("train", "eval", "compare"):
        status, _, err = results[name]
        assert status == 2 and err.strip().splitlines() == [
            f"awconv {name}: error: this command needs 'lightning', which the base install lacks: "
            "pip install 'awconv[train]'"
        ], err
    assert results["detect"][0] == 2 and "pip install 'awconv[train,detect]'" in results["detect"][2]


def test_help_imports_neither_torch_nor_lightning() -> None:
    """What makes `awconv --help` answer at once (benchmarks/bench_cli.py measures it)."""
    code = textwrap.dedent(
        """
        import sys
        import awconv.cli
        awconv.cli.build_parser()
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "timm", "lightning", "numpy"})
        print(heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_help_shows_defaults_and_plain_percent_signs(capsys) -> None:
    parser = build_parser()
    actions = parser._subparsers._group_actions[0].choices
    train_help = actions["train"].format_help()
    for shown in ("(default: 128)", "default: 90", "default: 0.9", "default: cosine", "GPUs only"):
        assert shown in train_help, shown
    compare_help = actions["compare"].format_help()
    assert "95% CI" in compare_help and "%%" not in compare_help
    assert "--image-size" in actions["profile"].format_help()
    assert "--img-size" not in actions["profile"].format_help()  # the old name works but is not shown


def test_version(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as exit:
        assert exit.code == 0
    assert capsys.readouterr().out.startswith("awconv 0.")


def test_profile_takes_image_size_and_the_old_img_size(capsys) -> None:
    assert main(["profile", "resnet20_cifar", "--image-size", "16", "--format", "json"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert main(["profile", "resnet20_cifar", "--img-size", "16", "--format", "json"]) == 0
    old = json.loads(capsys.readouterr().out)
    assert new == old and new[0]["input_size"][-1] == 16


def test_profile_formats_are_the_library_s() -> None:
    from awconv.cli.profile import FORMATS
    from awconv.profiling import FORMATS as LIBRARY_FORMATS

    assert FORMATS == LIBRARY_FORMATS
