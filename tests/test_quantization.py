"""int8 inference through ONNX Runtime's static quantization of the exported model (the one route
that quantizes AW layers), its one-line errors, and what each torch.ao.quantization route does."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import onnxruntime
import pytest
import timm
import torch
from onnx import TensorProto
from reference import randomize_generator, relative_error
from safetensors.torch import save_file
from torch import nn
from torch.ao import quantization as tq

from awconv import AWConv2d
from awconv.cli import main
from awconv.data.classification import build_classification_data
from awconv.export import export_model
from awconv.quantization import calibration_images, check_quantized, quantize_onnx

ROUTE = re.compile(r"awconv export MODEL --format onnx --quantize int8")


def _tiny_aw_model() -> nn.Sequential:
    """For 1-channel 8x8 digits: a plain conv, a full and a low-rank AW layer (non-zero attention)."""
    torch.manual_seed(0)
    full = AWConv2d(4, 8, 3, padding=1)
    lowrank = AWConv2d(8, 8, 3, stride=2, padding=1, generator="lowrank", rank=2, pool="global")
    for layer in (full, lowrank):
        randomize_generator(layer, 0.3)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        full,
        nn.ReLU(),
        lowrank,
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[nn.Module, Path, torch.Tensor]:
    """The tiny model, its float ONNX file, and 64 calibration images from digits' training split."""
    model = _tiny_aw_model()
    images = calibration_images("digits", 64)
    path = export_model(model, tmp_path_factory.mktemp("float") / "float.onnx", "onnx", images[:2])
    return model, path, images


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory) -> Path:
    _, path, images = exported
    return quantize_onnx(path, tmp_path_factory.mktemp("int8") / "int8.onnx", images)


def _validation_images(count: int) -> torch.Tensor:
    val = build_classification_data("digits").val
    return torch.stack([val[index][0] for index in range(count)])


def test_int8_model_runs_at_any_batch_close_to_the_float_model(exported, quantized) -> None:
    """Bound: int8 rounds each tensor to 1/255 of its calibrated range (an RMS error of ~0.1% of the
    range); about ten quantized tensors lie on the way to the logits, so their errors stay within a
    few percent (0.3% measured): 5% fails a wrong scale or an unquantized range (errors of order 1).
    Floor: the float export matches PyTorch to 1e-5, so a difference above 1e-4 is quantization."""
    model, float_path, _ = exported
    batch_axis = onnx.load(str(quantized)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param and not batch_axis.HasField("dim_value")
    float_session = onnxruntime.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    int8_session = onnxruntime.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
    images = _validation_images(4)  # not among the calibration images
    for batch in (1, 3):
        x = {"input": images[:batch].numpy()}
        (expected,), (got,) = float_session.run(None, x), int8_session.run(None, x)
        assert got.shape == (batch, 10)
        assert 1e-4 < relative_error(torch.from_numpy(got), torch.from_numpy(expected)) < 0.05
    error, agreement = check_quantized(quantized, model, _validation_images(64))
    assert 1e-4 < error < 0.05 and agreement >= 0.9


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in graph.node for output in node.output}


def test_int8_graph_quantizes_weights_and_the_per_sample_product(quantized) -> None:
    """Every Conv, Gemm and MatMul (the AW layer's product with its per-sample weights included) reads
    dequantized int8 tensors, and every weight is stored as int8."""
    graph = onnx.load(str(quantized)).graph
    producers = _producers(graph)
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    compute = [node for node in graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    assert sum(node.op_type == "MatMul" for node in compute) >= 2  # one per AW layer at least
    for node in compute:
        operands = [producers.get(name) for name in node.input[:2]]
        assert all(p is not None and p.op_type == "DequantizeLinear" for p in operands), node.name
        if node.op_type in ("Conv", "Gemm"):
            weight = initializers[operands[1].input[0]]
            assert weight.data_type == TensorProto.INT8, node.name


def test_calibration_sets_the_input_range_from_the_images(exported, quantized) -> None:
    """MinMax calibration of an int8 activation: scale = (max(x, 0) - min(x, 0)) / 255 over the images."""
    _, _, images = exported
    graph = onnx.load(str(quantized)).graph
    (quantize,) = [node for node in graph.node if node.input and node.input[0] == graph.input[0].name]
    assert quantize.op_type == "QuantizeLinear"
    scale = {t.name: t for t in graph.initializer}[quantize.input[1]]
    low, high = min(images.min().item(), 0.0), max(images.max().item(), 0.0)
    assert onnx.numpy_helper.to_array(scale).item() == pytest.approx((high - low) / 255, rel=1e-5)


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.onnx"
    path.write_text("not a model")
    return path


@pytest.mark.parametrize(
    ("model", "images", "options", "message"),
    [
        ("/no/such.onnx", None, {}, "model file '/no/such.onnx' not found"),
        ("TEXT", None, {}, "is not an ONNX model"),
        ("FLOAT", "RGB", {}, r"images must have the model's input shape \(N, 1, 8, 8\), got \(4, 3, 8, 8\)"),
        ("FLOAT", "UINT8", {}, r"images must be a non-empty float tensor \(N, C, H, W\), got torch.uint8"),
        ("FLOAT", "EMPTY", {}, r"non-empty float tensor .*got torch.float32 \(0, 1, 8, 8\)"),
        ("FLOAT", None, {"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ("FLOAT", None, {"out": "SAME"}, "out_path must differ from model_path"),
    ],
    ids=["missing", "not-onnx", "channels", "dtype", "empty", "batch-size", "same-path"],
)
def test_quantize_onnx_errors_are_one_line(tmp_path, exported, model, images, options, message) -> None:
    _, float_path, calibration = exported
    model_path = {"FLOAT": float_path, "TEXT": _text_file(tmp_path)}.get(model, Path(model))
    images = {
        "RGB": calibration[:4].expand(-1, 3, -1, -1),
        "UINT8": calibration[:4].to(torch.uint8),
        "EMPTY": calibration[:0],
    }.get(images, calibration[:4])
    out = model_path if options.pop("out", None) == "SAME" else tmp_path / "int8.onnx"
    with pytest.raises((ValueError, FileNotFoundError)) as caught:
        quantize_onnx(model_path, out, images, **options)
    assert len(str(caught.value).splitlines()) == 1 and re.search(message, str(caught.value))
    assert not (tmp_path / "int8.onnx").exists()


@pytest.mark.parametrize(
    ("count", "message"),
    [(0, "positive int, got 0"), (10**6, "at most the 1437 training images of 'digits', got 1000000")],
)
def test_calibration_image_count_errors(count, message) -> None:
    with pytest.raises(ValueError, match=message):
        calibration_images("digits", count)


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "test_resnet.safetensors"
    state = timm.create_model("test_resnet").state_dict()
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--format", "torchscript", "--quantize", "int8"], "--quantize int8 needs --format onnx"),
        (["--format", "onnx", "--quantize", "int8"], "--quantize int8 needs --calibration-data SPEC"),
        (["--format", "onnx", "--calibration-data", "digits"], "--calibration-data is only used with"),
        (
            [
                "--format",
                "onnx",
                "--quantize",
                "int8",
                "--calibration-data",
                "digits",
                "--calibration-images",
                "0",
            ],
            "--calibration-images must be a positive int, got 0",
        ),
        (
            ["--format", "onnx", "--quantize", "int8", "--calibration-data", "nosuch"],
            "unknown data set 'nosuch'",
        ),
        (
            ["--format", "onnx", "--quantize", "int8", "--calibration-data", "digits", "--image-size", "8"],
            r"gives images \(1, 8, 8\) but the model takes \(3, 8, 8\)",
        ),
    ],
    ids=["format", "no-data", "data-without-quantize", "count", "unknown-data", "channels"],
)
def test_cli_quantize_errors_are_one_line(tmp_path, plain_weights, options, message, capsys) -> None:
    """Each is caught before the model is exported (no file is written)."""
    out = tmp_path / "model.onnx"
    assert main(["export", "test_resnet", "--weights", str(plain_weights), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_cli_export_help_needs_no_onnxruntime() -> None:
    """The base install has no onnx or onnxruntime (they are the export extra)."""
    blocked = "import sys; sys.modules.update(onnx=None, onnxruntime=None); from awconv.cli import main; "
    result = subprocess.run(
        [sys.executable, "-c", blocked + "main(['export', '--help'])"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "--quantize" in result.stdout and "--calibration-data" in result.stdout


@pytest.mark.slow
def test_cli_export_int8_of_a_registered_aw_model(tmp_path: Path, capsys) -> None:
    torch.manual_seed(4)
    model = timm.create_model("aw_resnet20_cifar", num_classes=10, in_chans=1)
    for module in model.modules():
        if isinstance(module, AWConv2d):
            randomize_generator(module, 0.05)
    weights = tmp_path / "model.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(weights))
    out = tmp_path / "int8" / "model.onnx"
    argv = ["export", "aw_resnet20_cifar", "--weights", str(weights), "--format", "onnx", "--out", str(out)]
    model_args = ["--model-arg", "num_classes=10", "--model-arg", "in_chans=1", "--image-size", "8"]
    quantize = ["--quantize", "int8", "--calibration-data", "digits", "--calibration-images", "32"]
    assert main([*argv, *model_args, *quantize]) == 0
    printed = capsys.readouterr().out
    assert "onnx int8" in printed and "top-1 agreement" in printed
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # no float model or temporary left
    error, _ = check_quantized(out, model.eval(), _validation_images(16))
    assert 1e-4 < error < 0.1


def _quantized_input(x: torch.Tensor) -> torch.Tensor:
    return torch.quantize_per_tensor(x, 0.05, 128, torch.quint8)


def test_aw_layer_refuses_a_quantized_input_naming_the_onnx_route() -> None:
    with pytest.raises(TypeError, match=ROUTE) as caught:
        AWConv2d(4, 4, 3)(_quantized_input(torch.randn(1, 4, 6, 6)))
    assert len(str(caught.value).splitlines()) == 1 and "torch.quint8" in str(caught.value)


def test_torch_ao_eager_prepare_convert_refuses_naming_the_onnx_route() -> None:
    model = tq.QuantWrapper(_tiny_aw_model())
    model.qconfig = tq.get_default_qconfig("x86")
    x = _validation_images(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notes
        tq.prepare(model, inplace=True)
        model(x)
        tq.convert(model, inplace=True)
    with pytest.raises(TypeError, match=ROUTE):
        model(x)


def test_torch_ao_fx_and_dynamic_quantization_leave_aw_layers_float() -> None:
    """What docs/deployment.md says: prepare_fx/convert_fx runs, but each AW operator reads a
    dequantized float input; quantize_dynamic swaps the Linear only."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model, x = _tiny_aw_model(), _validation_images(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(_tiny_aw_model(), tq.get_default_qconfig_mapping("x86"), (x,))
        prepared(x)
        converted = convert_fx(prepared)
    aw_calls = [
        node for node in converted.graph.nodes if getattr(node.target, "__name__", "") == "aw_conv2d_fused"
    ]
    assert len(aw_calls) == 2
    assert all(node.args[0].target == "dequantize" for node in aw_calls)
    with torch.no_grad():
        assert relative_error(converted(x), model(x)) < 0.05
    dynamic = tq.quantize_dynamic(_tiny_aw_model())
    assert [type(m) for m in dynamic.modules() if isinstance(m, AWConv2d)] == [AWConv2d, AWConv2d]
    assert isinstance(dynamic[-1], torch.ao.nn.quantized.dynamic.Linear)
    with torch.no_grad():
        assert torch.equal(dynamic[:-1](x), model[:-1](x))
