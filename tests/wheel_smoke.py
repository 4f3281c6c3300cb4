"""Smoke test of an installed awconv wheel, run by ``make test-wheel`` in a virtual environment of its own.

Usage: ``python -P tests/wheel_smoke.py library|cli`` from a directory outside the source tree.
``library`` checks the base install (no extras): the package files, the version, a forward of
``AWConv2d`` against a float64 per-sample reference (and ``impl="cpp"`` without its compiled
kernel), a converted torchvision ResNet and a timm model.
``cli`` checks, on the same base install, ``awconv --help`` and every ``awconv COMMAND --help``,
``awconv profile``, and that ``train`` says in one line that it needs the ``[train]`` extra.
Each check raises on failure; exit status 0 means everything passed. Not collected by pytest
(the name does not start with ``test_``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

SOURCE = Path(__file__).resolve().parents[1]
RESNET18_PARAMS = 11_689_512  # torchvision's and timm's resnet18
RESNET18_GMACS = 1.81  # at 224 px, as torchvision's model documentation lists it


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def check_installed_package() -> None:
    import awconv

    package = Path(awconv.__file__).resolve().parent
    _check(
        package.is_relative_to(Path(sys.prefix).resolve()),
        f"awconv comes from {package}, not from the virtual environment {sys.prefix}",
    )
    _check(not package.is_relative_to(SOURCE / "src"), f"awconv comes from the source tree: {package}")
    distribution = importlib.metadata.distribution("awconv")
    _check(
        awconv.__version__ == distribution.version,
        f"awconv.__version__ {awconv.__version__} != installed {distribution.version}",
    )
    _check((package / "py.typed").is_file(), "py.typed is not installed")
    files = {Path(str(f)).name for f in distribution.files or []}
    _check("LICENSE" in files, "LICENSE is not in the wheel's metadata folder")
    metadata = distribution.read_text("METADATA") or ""
    header, _, description = metadata.partition("\n\n")
    for field in ("License-Expression: Apache-2.0", "Classifier: Typing :: Typed", "Project-URL: Repository"):
        _check(field in header, f"METADATA lacks {field!r}")
    _check(
        description.strip() == (SOURCE / "docs" / "pypi.md").read_text().strip(),
        "the long description is not docs/pypi.md",
    )
    _check(importlib.util.find_spec("lightning") is None, "the base install pulled in Lightning")


def check_layer_forward() -> None:
    from awconv import AWConv2d

    torch.manual_seed(0)
    layer = AWConv2d(6, 4, 3, padding=1, reduction=2).double()
    with torch.no_grad():  # move Pointconv2 off its zero init so the attention is not 0
        for parameter in layer.generator.parameters():
            parameter.normal_(0, 0.5)
    x = torch.randn(3, 6, 7, 7, dtype=torch.float64)
    gen = layer.generator
    pooled = F.adaptive_avg_pool2d(x, (3, 3))  # (N, C1, 3, 3)
    hidden = F.relu(F.conv2d(pooled, gen.pointconv1.weight, gen.pointconv1.bias))
    attention = torch.tanh(F.conv2d(hidden, gen.pointconv2.weight, gen.pointconv2.bias)).view(3, 4, 6, 3, 3)
    expected = torch.cat(
        [
            F.conv2d(x[n : n + 1], (1 + attention[n]) * layer.weight, layer.bias, padding=1)
            for n in range(x.shape[0])
        ]
    )
    error = ((layer(x) - expected).abs().max() / expected.abs().max()).item()
    _check(error < 1e-10, f"AWConv2d differs from the per-sample reference by {error:.2e} (relative)")
    check_cpp_fallback(layer.float(), x.float(), expected)


def check_cpp_fallback(layer, x: torch.Tensor, expected: torch.Tensor) -> None:
    """A wheel ships the C++ source, not a compiled kernel: impl="cpp" runs the pure-PyTorch one."""
    from awconv.ops import cpu_extension

    _check(
        cpu_extension.SOURCE.is_file(), f"the kernel's source {cpu_extension.SOURCE.name} is not installed"
    )
    _check(not cpu_extension.available(), "a compiled CPU kernel came with the wheel")
    layer.impl = "cpp"
    error = ((layer(x).double() - expected).abs().max() / expected.abs().max()).item()
    _check(error < 1e-5, f"AWConv2d(impl='cpp') without its library differs by {error:.2e} (relative)")


def check_converted_resnet_and_timm() -> None:
    import timm
    import torchvision

    from awconv import AWConv2d, convert

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model, converted = convert(model)
        after = model(x)
    _check(len(converted) == 16, f"convert changed {len(converted)} convolutions, expected the 16 3x3 ones")
    _check(isinstance(model.layer1[0].conv1, AWConv2d), "layer1[0].conv1 is not an AWConv2d")
    _check(torch.allclose(after, before, rtol=1e-4, atol=1e-5), "the converted ResNet changed its outputs")
    network = timm.create_model("aw_resnet18", num_classes=10, generator="lowrank", rank=2).eval()
    with torch.no_grad():
        logits = network(x)
    _check(tuple(logits.shape) == (2, 10), f"aw_resnet18 gave logits of shape {tuple(logits.shape)}")


def _awconv(*args: str) -> str:
    command = [str(Path(sys.executable).parent / "awconv"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    _check(result.returncode == 0, f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def check_command_line() -> None:
    from awconv.cli import COMMANDS

    text = _awconv("--help")
    for command in (name.replace("_", "-") for name in COMMANDS):
        _check(command in text, f"awconv --help does not list {command}")
        _check("usage: awconv" in _awconv(command, "--help"), f"awconv {command} --help printed no usage")
    needs = subprocess.run(
        [str(Path(sys.executable).parent / "awconv"), "train", "resnet18", "--data", "digits"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    _check(
        needs.returncode == 2 and "awconv[train]" in needs.stderr and len(needs.stderr.splitlines()) == 1,
        f"train on the base install did not say in one line that it needs awconv[train]: {needs.stderr!r}",
    )
    rows = json.loads(
        _awconv(
            "profile",
            "aw_resnet18",
            "--model-arg",
            "generator=lowrank",
            "--model-arg",
            "rank=4",
            "--format",
            "json",
        )
    )
    row = rows[0]
    _check(row["baseline"] == "resnet18", f"the baseline is {row['baseline']!r}")
    _check(row["baseline_params"] == RESNET18_PARAMS, f"resnet18 has {row['baseline_params']} parameters")
    gmacs = row["baseline_macs"] / 1e9
    _check(abs(gmacs - RESNET18_GMACS) < 0.01, f"resnet18 counts {gmacs:.3f} GMACs")
    _check(0 < row["extra_params"] < row["baseline_params"], f"lowrank adds {row['extra_params']} parameters")


PARTS = {
    "library": (check_installed_package, check_layer_forward, check_converted_resnet_and_timm),
    "cli": (check_command_line,),
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PARTS:
        raise SystemExit(f"usage: python -P {Path(__file__).name} {'|'.join(PARTS)}")
    for check in PARTS[sys.argv[1]]:
        check()
        print(f"ok  {check.__name__}")
