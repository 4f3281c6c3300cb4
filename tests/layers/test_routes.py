"""AWConv2d along the routes users take a model: torch.compile, torch.export, torch.fx,
torch.jit.trace, torch.func and double backward, each checked against eager or a float64 reference."""

from __future__ import annotations

import pytest
import torch
import torchvision
from reference import aw_layer_reference, randomize_generator, relative_error
from torch import nn
from torch.export import Dim
from torch.func import functional_call, grad, jvp, vmap

import awconv
from awconv import AWConv2d


def _small_model() -> nn.Sequential:
    """Every generator, both pools, groups, stride 2 and a padding mode, with non-zero attention."""
    model = nn.Sequential(
        AWConv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        AWConv2d(8, 8, 3, stride=2, padding=1, groups=2, generator="lowrank", rank=2, pool="global"),
        AWConv2d(8, 8, 3, padding=1, padding_mode="reflect", gate="sigmoid"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    for module in model:
        if isinstance(module, AWConv2d):
            randomize_generator(module, 0.3)
    return model


def _gradients(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradients of a loss w.r.t. the input (key ``"input"``) and every parameter, by name."""
    x = x.detach().requires_grad_(True)
    names, parameters = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(model(x).square().sum(), [x, *parameters])
    names = [name.removeprefix("_orig_mod.") for name in names]  # torch.compile's wrapper
    return dict(zip(("input", *names), grads, strict=True))


def _assert_same_gradients(got: dict, want: dict, tolerance: float) -> None:
    assert got.keys() == want.keys()
    for name, expected in want.items():
        assert relative_error(got[name], expected) < tolerance, name


def test_compile_traces_one_graph_for_every_batch_size_with_the_operators_inside():
    """One graph with a symbolic batch for the whole model (so no graph break in an AW layer),
    the operators as single nodes of AOTAutograd's forward and backward, results equal to eager."""
    from torch._functorch.aot_autograd import aot_module_simplified

    torch.manual_seed(0)
    model = _small_model()
    graphs = []

    def record(graph_module, _):
        graphs.append({str(node.target) for node in graph_module.graph.nodes})
        return graph_module

    def backend(graph_module, example_inputs):
        return aot_module_simplified(graph_module, example_inputs, fw_compiler=record, bw_compiler=record)

    compiled = torch.compile(model, backend=backend, dynamic=True)
    for batch in (2, 3, 5):
        x = torch.randn(batch, 3, 8, 8)
        _assert_same_gradients(_gradients(compiled, x), _gradients(model, x), 1e-5)
    assert len(graphs) == 2  # one forward and one backward graph for every batch size
    forward, backward = graphs
    assert "awconv.aw_conv2d_fused.default" in forward
    assert "awconv.aw_conv2d_fused_backward.default" in backward


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_export_with_a_dynamic_batch_runs_at_other_batch_sizes(mode):
    torch.manual_seed(2)
    model = getattr(_small_model(), mode)()
    program = torch.export.export(model, (torch.randn(3, 3, 8, 8),), dynamic_shapes=({0: Dim("batch")},))
    exported = program.module()
    for batch in (2, 6):
        x = torch.randn(batch, 3, 8, 8)
        _assert_same_gradients(_gradients(exported, x), _gradients(model, x), 1e-5)


def test_fx_symbolic_trace_and_feature_extractor_on_a_converted_torchvision_resnet():
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(3)
    model, converted = awconv.convert(torchvision.models.resnet18(num_classes=10))
    assert len(converted) == 16
    for module in model.modules():
        if isinstance(module, AWConv2d):
            randomize_generator(module, 0.05)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    traced = torch.fx.symbolic_trace(model)
    targets = [node.target for node in traced.graph.nodes if node.op == "call_function"]
    assert awconv.aw_conv2d_fused in targets  # called with its checks, not traced through
    assert relative_error(traced(x), expected) < 1e-6
    extractor = create_feature_extractor(model, return_nodes={"layer3": "layer3", "fc": "logits"})
    features = extractor(x)
    assert features["layer3"].shape == (2, 256, 2, 2)
    assert relative_error(features["logits"], expected) < 1e-6


def test_jit_trace_records_standard_operators_and_keeps_the_batch_dynamic():
    torch.manual_seed(4)
    model = _small_model().eval()
    traced = torch.jit.trace(model, torch.randn(2, 3, 8, 8))
    assert "awconv::" not in str(traced.graph)  # runs without awconv, e.g. from C++
    for batch in (1, 5):
        x = torch.randn(batch, 3, 8, 8)
        assert relative_error(traced(x), model(x)) < 1e-5


def _layer() -> AWConv2d:
    layer = AWConv2d(4, 6, 3, padding=1, groups=2, generator="lowrank", rank=2, gate="sigmoid").double()
    randomize_generator(layer)
    return layer


def test_func_grad_over_functional_call_matches_autograd_of_the_reference():
    torch.manual_seed(5)
    layer = _layer()
    params = {name: p.detach() for name, p in layer.named_parameters()}
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    grads = grad(lambda p: functional_call(layer, p, (x,)).square().sum())(params)
    layer(x).square().sum().backward()
    for name, parameter in layer.named_parameters():
        assert relative_error(grads[name], parameter.grad) < 1e-12, name


def test_vmap_of_grad_gives_per_sample_gradients_and_vmap_and_jvp_match_the_reference():
    torch.manual_seed(6)
    layer = _layer()
    params = {name: p.detach() for name, p in layer.named_parameters()}
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)

    def loss(p, sample):  # sample: (C1, H, W), unbatched as nn.Conv2d takes it
        return functional_call(layer, p, (sample,)).square().sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)
    for n in range(3):
        layer.zero_grad()
        layer(x[n : n + 1]).square().sum().backward()
        for name, parameter in layer.named_parameters():
            assert relative_error(per_sample[name][n], parameter.grad) < 1e-12, (n, name)
    out = vmap(lambda sample: functional_call(layer, params, (sample,)))(x)
    assert relative_error(out, aw_layer_reference(layer, x)) < 1e-12
    tangent = torch.randn_like(x)
    _, derivative = jvp(lambda inputs: layer(inputs), (x,), (tangent,))
    _, expected = torch.autograd.functional.jvp(lambda inputs: aw_layer_reference(layer, inputs), x, tangent)
    assert relative_error(derivative, expected) < 1e-12


def test_double_backward_through_the_layer_matches_the_reference():
    """A gradient penalty on the input: the generator's features depend on x, so the second
    derivative needs each operator argument's own partial derivative."""
    torch.manual_seed(7)
    layer = _layer()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)

    def penalty_gradient(function):
        inputs = x.clone().requires_grad_(True)
        (grad_x,) = torch.autograd.grad(function(inputs).square().sum(), inputs, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), inputs)[0]

    expected = penalty_gradient(lambda inputs: aw_layer_reference(layer, inputs))
    assert relative_error(penalty_gradient(layer), expected) < 1e-12
