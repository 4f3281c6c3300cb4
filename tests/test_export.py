"""Export for deployment: ONNX with a dynamic batch checked in onnxruntime, TorchScript, safetensors,
the ``awconv export`` command and its one-line errors."""

from __future__ import annotations

import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import timm
import torch
from reference import randomize_generator, relative_error
from safetensors.torch import load_file, save_file
from torch import nn

from awconv import AWConv2d
from awconv.cli import main
from awconv.export import build_model, check_onnx, export_model

STANDARD_DOMAINS = {"", "ai.onnx"}


def _export_onnx(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    """The Python route: ``torch.onnx.export(dynamo=True)`` with a dynamic batch, as a user writes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    program.save(str(path))


def _check_dynamic_batch_and_standard_operators(path: Path) -> None:
    graph = onnx.load(str(path)).graph
    batch_axis = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param and not batch_axis.HasField("dim_value")
    assert {node.domain for node in graph.node} <= STANDARD_DOMAINS


def _onnxruntime_errors(path: Path, model: nn.Module, shape: tuple[int, ...]) -> list[float]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    errors = []
    for batch in (1, 3, 8):
        x = torch.randn(batch, *shape)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            errors.append(relative_error(torch.from_numpy(np.asarray(got)), model(x)))
    return errors


def _aw_model(configs: list[dict]) -> nn.Sequential:
    layers = [AWConv2d(4, 4, 3, padding=1, rank=2, **config) for config in configs]
    for layer in layers:
        randomize_generator(layer, 0.5)
    return nn.Sequential(*layers).eval()


# Every generator, pool and gate, groups and stride 2, each at least once.
COVERING = [
    {"generator": "full", "pool": "kernel", "gate": "tanh"},
    {"generator": "lowrank", "pool": "global", "gate": "sigmoid", "stride": 2, "groups": 2},
    {"generator": "lowrank", "pool": "kernel", "gate": "none", "groups": 2},
    {"generator": "full", "pool": "global", "gate": "sigmoid", "stride": 2},
]


def test_onnx_export_has_a_dynamic_batch_and_matches_pytorch_in_onnxruntime(tmp_path: Path) -> None:
    """The library route ``awconv export`` takes (``export_model``, ``check_onnx``) on a model that
    covers every generator, pool and gate, groups and stride 2; written atomically."""
    torch.manual_seed(0)
    model = _aw_model(COVERING)
    example = torch.randn(2, 4, 9, 9)
    path = export_model(model, tmp_path / "aw.onnx", "onnx", example)
    assert [p.name for p in tmp_path.iterdir()] == ["aw.onnx"]  # no temporary left
    _check_dynamic_batch_and_standard_operators(path)
    errors = check_onnx(path, model, example, batch_sizes=(1, 3, 8))
    assert set(errors) == {1, 3, 8} and max(errors.values()) <= 1e-4


GEOMETRIES = [{}, {"groups": 2}, {"stride": 2}]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("generator", "pool", "gate", "geometry"),
    list(
        itertools.product(["full", "lowrank"], ["kernel", "global"], ["tanh", "sigmoid", "none"], GEOMETRIES)
    ),
)
def test_onnx_every_generator_pool_gate_and_geometry(tmp_path, generator, pool, gate, geometry) -> None:
    """The Python route, ``torch.onnx.export(dynamo=True)``, over the whole product."""
    torch.manual_seed(1)
    model = _aw_model([{"generator": generator, "pool": pool, "gate": gate, **geometry}])
    path = tmp_path / "aw.onnx"
    _export_onnx(model, path, torch.randn(2, 4, 10, 10))
    _check_dynamic_batch_and_standard_operators(path)
    assert max(_onnxruntime_errors(path, model, (4, 10, 10))) <= 1e-4


@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory) -> Path:
    """An aw_resnet20_cifar state dict with non-zero attention, as a training run leaves it."""
    torch.manual_seed(2)
    model = timm.create_model("aw_resnet20_cifar", num_classes=4)
    for module in model.modules():
        if isinstance(module, AWConv2d):
            randomize_generator(module, 0.05)
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return path


def test_cli_export_safetensors_writes_the_state_dict(tmp_path: Path, trained_weights: Path, capsys) -> None:
    out = tmp_path / "out" / "model.safetensors"
    argv = ["export", "aw_resnet20_cifar", "--weights", str(trained_weights), "--out", str(out)]
    assert main([*argv, "--format", "safetensors", "--model-arg", "num_classes=4"]) == 0
    assert "wrote" in capsys.readouterr().out
    written, expected = load_file(out), load_file(trained_weights)
    assert written.keys() == expected.keys()
    assert all(torch.equal(written[key], expected[key]) for key in expected)
    assert [p.name for p in out.parent.iterdir()] == ["model.safetensors"]  # no temporary left


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_cli_export_torchscript_runs_at_any_batch_size(tmp_path: Path, trained_weights: Path) -> None:
    out = tmp_path / "model.pt"
    argv = ["export", "aw_resnet20_cifar", "--weights", str(trained_weights), "--out", str(out)]
    assert main([*argv, "--format", "torchscript", "--model-arg", "num_classes=4"]) == 0
    loaded = torch.jit.load(str(out))
    model = build_model("aw_resnet20_cifar", trained_weights, num_classes=4)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            assert relative_error(loaded(x), model(x)) < 1e-5


@pytest.mark.slow
def test_cli_export_onnx_of_a_registered_aw_model(tmp_path: Path, trained_weights: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    argv = ["export", "aw_resnet20_cifar", "--weights", str(trained_weights), "--out", str(out)]
    assert main([*argv, "--format", "onnx", "--model-arg", "num_classes=4"]) == 0
    assert "onnxruntime against PyTorch" in capsys.readouterr().out
    _check_dynamic_batch_and_standard_operators(out)
    model = build_model("aw_resnet20_cifar", trained_weights, num_classes=4)
    assert max(_onnxruntime_errors(out, model, (3, 32, 32))) <= 1e-4


@pytest.mark.slow
def test_onnx_export_of_a_converted_torchvision_resnet(tmp_path: Path) -> None:
    import torchvision

    import awconv

    torch.manual_seed(3)
    model, _ = awconv.convert(torchvision.models.resnet18(num_classes=10), generator="lowrank")
    for module in model.modules():
        if isinstance(module, AWConv2d):
            randomize_generator(module, 0.05)
    path = tmp_path / "resnet18.onnx"
    _export_onnx(model.eval(), path, torch.randn(2, 3, 64, 64))
    _check_dynamic_batch_and_standard_operators(path)
    assert max(_onnxruntime_errors(path, model, (3, 64, 64))) <= 1e-4


def _add_a_key(state: dict) -> None:
    state["extra.weight"] = torch.zeros(1)


def _reshape_the_classifier(state: dict) -> None:
    state["fc.weight"] = torch.zeros(3, 64)


@pytest.mark.parametrize(
    ("model", "weights", "mutate", "message"),
    [
        ("aw_resnet2_cifar", "WEIGHTS", None, "did you mean .*aw_resnet20_cifar"),
        ("aw_resnet20_cifar", "/no/such.pt", None, "not found"),
        (
            "aw_resnet20_cifar",
            "WEIGHTS",
            _add_a_key,
            r"missing \[\] \(0\), unexpected \[extra.weight\] \(1\)",
        ),
        ("aw_resnet20_cifar", "WEIGHTS", _reshape_the_classifier, "'fc.weight' has shape"),
    ],
    ids=["unknown-model", "missing-weights", "extra-key", "wrong-shape"],
)
def test_cli_export_errors_are_one_line(tmp_path: Path, model, weights, mutate, message, capsys) -> None:
    state = timm.create_model("aw_resnet20_cifar").state_dict()
    if mutate is not None:
        mutate(state)
    path = tmp_path / "w.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    weights = str(path) if weights == "WEIGHTS" else weights
    argv = ["export", model, "--weights", weights, "--format", "onnx", "--out", str(tmp_path / "o.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "o.onnx").exists()
