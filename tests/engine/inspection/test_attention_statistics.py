"""attention_statistics against statistics computed by hand in numpy float64 on a tiny model.

The reference attention comes from ``tests/reference.attention_reference`` (float64, from the
generator's parameters); every statistic is then computed from its definition with numpy, not with
the streaming sums of the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from reference import attention_reference, randomize_generator
from tiny_aw import tiny_model_and_batches
from torch import nn

from awconv import convert
from awconv.engine.inspection import attention_statistics
from awconv.engine.inspection.accumulator import Reservoir
from awconv.engine.inspection.layer_statistics import (
    GATE_BOUNDS,
    HISTOGRAM_BINS,
    SATURATION_MARGIN,
    UNBOUNDED_RANGE,
    gaussian_matrix_energy,
)
from awconv.layers import AWConv2d

RTOL = 1e-4


def _reference_attention(model: nn.Module, batches, images: int) -> dict[str, np.ndarray]:
    """Each AW layer's input captured by a hook of the test, its attention in float64."""
    inputs: dict[str, list[torch.Tensor]] = {}
    layers = {name: m for name, m in model.named_modules() if isinstance(m, AWConv2d)}
    handles = [
        layer.register_forward_hook(
            lambda m, args, out, name=name: inputs.setdefault(name, []).append(args[0])
        )
        for name, layer in layers.items()
    ]
    model.eval()
    with torch.no_grad():
        model(torch.cat([b[0] for b in batches])[:images])
        for handle in handles:
            handle.remove()
        return {name: attention_reference(layers[name], torch.cat(inputs[name])).numpy() for name in layers}


def _shares(energies: np.ndarray) -> np.ndarray:
    return energies / energies.sum()


def _effective_rank(energies: np.ndarray) -> float:
    p = _shares(energies)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _expected(
    attention: np.ndarray, labels: np.ndarray, weight: np.ndarray, gate: str, options: dict
) -> dict:
    """Every statistic from its definition. attention: (N, C2, C1g, kh, kw) float64."""
    n, c2, c1, kh, kw = attention.shape
    flat = attention.reshape(n, -1)
    modulation = 1 + attention
    low, high = GATE_BOUNDS[gate] or UNBOUNDED_RANGE
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    residual = attention - attention.mean(0)  # the part that changes between images
    expected = {
        "histogram": np.histogram(np.clip(modulation, low, high), edges)[0],
        "modulation_mean": modulation.mean(),
        "modulation_std": modulation.std(),
        "modulation_min": modulation.min(),
        "modulation_max": modulation.max(),
        "attention_rms": np.sqrt((attention**2).mean()),
        "static_rms": np.sqrt((attention.mean(0) ** 2).mean()),
        "image_std": np.sqrt(flat.var(0).mean()),
        "image_share": (residual**2).mean() / (attention**2).mean(),
        # The between-image variance left inside one image across the output channels, ... taps.
        "output_channel_share": residual.var(1).mean() / (residual**2).mean(),
        "input_channel_share": residual.var(2).mean() / (residual**2).mean(),
        "tap_share": residual.reshape(n, c2, c1, -1).var(3).mean() / (residual**2).mean(),
        "within_output_channels": np.sqrt(attention.var(1).mean()),
        "within_input_channels": np.sqrt(attention.var(2).mean()),
        "within_taps": np.sqrt(attention.reshape(n, c2, c1, -1).var(3).mean()),
        "kernel_distances": np.array([np.linalg.norm(a * weight) for a in attention])
        / np.linalg.norm(weight),
        "kernel_spread": np.sqrt(np.mean([np.linalg.norm(r * weight) ** 2 for r in residual]))
        / np.linalg.norm(weight),
        "mean_attention": attention.mean(0),
    }
    if GATE_BOUNDS[gate] is not None:
        expected["saturated_low"] = (modulation <= low + SATURATION_MARGIN).mean()
        expected["saturated_high"] = (modulation >= high - SATURATION_MARGIN).mean()
    tracked = flat if options.get("tracked") is None else flat[:, options["tracked"]]
    classes = np.unique(labels)
    between = sum(
        (labels == k).sum() * ((tracked[labels == k].mean(0) - tracked.mean(0)) ** 2).sum() for k in classes
    )
    expected["class_share"] = between / ((tracked - tracked.mean(0)) ** 2).sum()
    expected["class_share_chance"] = (len(classes) - 1) / (n - 1)
    sample = tracked[options["spectrum_indices"]]
    singular = np.linalg.svd(sample - sample.mean(0), compute_uv=False)
    spectrum = np.zeros(len(sample))
    spectrum[: len(singular)] = _shares(singular**2)
    expected["spectrum"] = spectrum
    expected["effective_rank"] = _effective_rank(singular**2)
    expected["directions_90"] = int(np.argmax(np.cumsum(spectrum) >= 0.9)) + 1
    expected["directions_99"] = int(np.argmax(np.cumsum(spectrum) >= 0.99)) + 1
    for key, tensor in (("matrix", attention), ("deviation", residual)):
        matrices = [
            tensor[i, :, :, a, b] for i in options["matrix_indices"] for a in range(kh) for b in range(kw)
        ]
        energies = [np.linalg.svd(m, compute_uv=False) ** 2 for m in matrices]
        total = sum(e.sum() for e in energies)
        expected[f"{key}_energy"] = {r: sum(e[:r].sum() for e in energies) / total for r in (1, 4)}
        expected[f"{key}_effective_rank"] = np.mean([_effective_rank(e) for e in energies])
    return expected


def _near_edges(values: np.ndarray, edges: np.ndarray, tolerance: float = 1e-5) -> int:
    return int(sum((np.abs(values - edge) < tolerance).sum() for edge in edges))


def _check_layer(stats, attention: np.ndarray, labels: np.ndarray, weight: np.ndarray, options: dict) -> None:
    expected = _expected(attention, labels, weight, stats.gate, options)
    counts, edges = stats.histogram_counts, stats.histogram_edges
    np.testing.assert_allclose(
        edges, np.linspace(*(GATE_BOUNDS[stats.gate] or UNBOUNDED_RANGE), HISTOGRAM_BINS + 1), atol=1e-12
    )
    assert counts.sum() == attention.size
    # float32 attention may fall on the other side of a bin edge than the float64 reference
    assert np.abs(counts - expected["histogram"]).sum() <= 2 * _near_edges(1 + attention, edges)
    for key in ("modulation_min", "modulation_max"):  # float32 resolution of a saturated tanh
        assert getattr(stats, key) == pytest.approx(expected[key], rel=RTOL, abs=1e-6), key
    for key in (
        "modulation_mean",
        "modulation_std",
        "attention_rms",
        "static_rms",
        "image_std",
        "image_share",
        "output_channel_share",
        "input_channel_share",
        "tap_share",
        "kernel_spread",
        "class_share",
        "class_share_chance",
        "effective_rank",
        "matrix_effective_rank",
        "deviation_effective_rank",
        "directions_90",
        "directions_99",
    ):
        assert getattr(stats, key) == pytest.approx(expected[key], rel=RTOL, abs=1e-9), key
    for key in ("output_channels", "input_channels", "taps"):
        assert stats.within_image_std[key] == pytest.approx(expected[f"within_{key}"], rel=RTOL, abs=1e-7), (
            key
        )
    for key in ("saturated_low", "saturated_high"):
        if key in expected:
            near = _near_edges(
                1 + attention,
                np.array(GATE_BOUNDS[stats.gate]) + np.array([SATURATION_MARGIN, -SATURATION_MARGIN]),
            )
            assert abs(getattr(stats, key) - expected[key]) * attention.size <= near, key
        else:
            assert getattr(stats, key) is None
    np.testing.assert_allclose(stats.kernel_distances, expected["kernel_distances"], rtol=RTOL)
    np.testing.assert_allclose(stats.spectrum, expected["spectrum"], rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(stats.mean_attention, expected["mean_attention"], rtol=RTOL, atol=1e-6)
    for rank in (1, 4):
        assert stats.matrix_energy[rank] == pytest.approx(expected["matrix_energy"][rank], rel=RTOL)
        assert stats.deviation_energy[rank] == pytest.approx(expected["deviation_energy"][rank], rel=RTOL)
    np.testing.assert_allclose(stats.drawn, attention[: len(stats.drawn)], rtol=RTOL, atol=1e-6)
    assert stats.drawn_labels == labels[: len(stats.drawn)].tolist()


def test_statistics_equal_a_float64_numpy_computation() -> None:
    model, batches = tiny_model_and_batches()
    options = {"draw": 2, "spectrum_images": 9, "matrix_images": 4}
    result = attention_statistics(model, batches, images=14, max_positions=10_000, **options)
    labels = torch.cat([b[1] for b in batches])[:14].numpy()
    attention = _reference_attention(model, batches, 14)
    # uniform random samples of the 14 images, the same for every layer, not simply the first ones
    for indices, size in ((result.spectrum_indices, 9), (result.matrix_indices, 4)):
        assert len(set(indices)) == size and max(indices) < 14 and sorted(indices) != list(range(size))
    options |= {"spectrum_indices": result.spectrum_indices, "matrix_indices": result.matrix_indices}
    assert [layer.name for layer in result.layers] == ["aw1", "aw2", "aw3"]
    assert result.images == 14 and result.class_counts == np.bincount(labels).tolist()
    assert [len(layer.drawn) for layer in result.layers] == [2, 2, 2]
    for stats in result.layers:
        assert stats.images == 14 and stats.tracked_positions is None and stats.spectrum_images == 9
        layer = model.get_submodule(stats.name)
        _check_layer(stats, attention[stats.name], labels, layer.weight.detach().double().numpy(), options)
    first = result.layers[0]
    assert first.saturated_low > 0 and first.saturated_high > 0  # the test reaches the gate's bounds
    assert 0.05 < first.class_share < 0.95 and first.image_share > 0.01
    assert result.layers[1].tap_share == pytest.approx(0, abs=1e-9)  # global pool: the same for every tap
    # zero up to float64 cancellation in E[A^2] - E[mean^2], whose square root is ~1e-8
    assert result.layers[1].within_image_std["taps"] == pytest.approx(0, abs=1e-7)
    with torch.no_grad():
        logits = model(torch.cat([b[0] for b in batches])[:14])
    assert result.top1 == pytest.approx((logits.argmax(1).numpy() == labels).mean())


def test_large_layers_track_a_random_subset_of_positions() -> None:
    model, batches = tiny_model_and_batches(seed=1)
    options = {"draw": 0, "spectrum_images": 15, "matrix_images": 15}
    result = attention_statistics(model, batches, max_positions=50, **options)
    labels = torch.cat([b[1] for b in batches]).numpy()
    attention = _reference_attention(model, batches, 15)
    assert sorted(result.spectrum_indices) == sorted(result.matrix_indices) == list(range(15))
    options |= {"spectrum_indices": result.spectrum_indices, "matrix_indices": result.matrix_indices}
    for stats in result.layers:
        tracked = stats.tracked_positions
        assert tracked is not None and len(np.unique(tracked)) == 50 and tracked.max() < np.prod(stats.shape)
        weight = model.get_submodule(stats.name).weight.detach().double().numpy()
        _check_layer(stats, attention[stats.name], labels, weight, {**options, "tracked": tracked})
        assert stats.image_share > 1e-4  # the attention varies, so every share is checked


def test_a_converted_model_starts_with_no_attention() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    model, converted = convert(plain, include=lambda name, conv: True)
    batches = [(torch.randn(4, 2, 5, 5), torch.tensor([0, 1, 0, 1]))]
    result = attention_statistics(model, batches, draw=1)
    assert [layer.name for layer in result.layers] == converted == ["0", "2"]
    assert result.top1 is None  # the output is not (N, classes) logits
    for stats in result.layers:
        assert stats.modulation_min == stats.modulation_max == 1.0 and stats.attention_rms == 0
        one = np.searchsorted(stats.histogram_edges, 1.0, side="right") - 1
        assert stats.histogram_counts[one] == stats.histogram_counts.sum() == 4 * np.prod(stats.shape)
        assert stats.image_share is None and stats.class_share is None and stats.output_channel_share is None
        assert stats.effective_rank == 0 and stats.spectrum.size == 0 and not stats.kernel_distances.any()


def test_a_registered_aw_model_is_inspected_layer_by_layer() -> None:
    model = timm.create_model("aw_resnet20_cifar", num_classes=10, in_chans=1)
    for layer in model.modules():
        if isinstance(layer, AWConv2d):
            randomize_generator(layer, 0.1)
    batches = [(torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3]))]
    result = attention_statistics(model, batches, draw=1, matrix_images=1)
    names = [layer.name for layer in result.layers]
    assert names == [f"layer{s}.{b}.conv{k}" for s in (1, 2, 3) for b in (0, 1, 2) for k in (1, 2)]
    assert result.layers[-1].shape == (64, 64, 3, 3) and result.layers[-1].hidden == 8
    assert all(layer.image_share > 0 for layer in result.layers)
    assert model.training  # the mode is restored


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"images": 0}, "images must be an int >= 1"), ({"spectrum_images": 1}, "spectrum_images must be")],
)
def test_bad_options_and_models_without_aw_layers(kwargs, match) -> None:
    model, batches = tiny_model_and_batches()
    with pytest.raises(ValueError, match=match):
        attention_statistics(model, batches, **kwargs)
    with pytest.raises(ValueError, match="has no AWConv2d layer"):
        attention_statistics(nn.Sequential(nn.Conv2d(1, 1, 3)), batches)
    with pytest.raises(ValueError, match="class indices >= 0, got shape \\(5,\\) with minimum -1"):
        attention_statistics(model, [(batches[0][0], batches[0][1] - 1)])


@pytest.mark.parametrize("shape", [(16, 16), (32, 8), (3, 2)])
def test_gaussian_reference_matches_an_independent_simulation(shape) -> None:
    rng = np.random.default_rng(1)
    energies = np.array(
        [np.linalg.svd(rng.standard_normal(shape), compute_uv=False) ** 2 for _ in range(400)]
    )
    shares = energies / energies.sum(1, keepdims=True)
    reference = gaussian_matrix_energy(*shape)
    for rank in (1, 4):
        expected = shares[:, :rank].sum(1).mean()  # rank >= min(shape) keeps everything
        assert reference[rank] == pytest.approx(expected, abs=0.02), rank
    assert reference[1] < reference[4]
    if min(shape) <= 4:
        assert reference[4] == pytest.approx(1.0)


def test_reservoir_keeps_a_uniform_sample_whatever_the_batches() -> None:
    def kept(batch_sizes, seed):
        reservoir, assigned = Reservoir(3, seed), []
        for size in batch_sizes:
            slots = reservoir.assign(size)
            taken = slots[slots >= 0].tolist()
            assert len(taken) == len(set(taken))  # one image per slot and batch
            assigned.append(slots)
        # the slots handed out, the last one winning, are where the kept images lie
        final = {slot: position for position, slot in enumerate(torch.cat(assigned).tolist()) if slot >= 0}
        assert [final[slot] for slot in range(3)] == reservoir.indices
        return reservoir.indices

    assert kept([10], 0) == kept([3, 7], 0) == kept([1] * 10, 0)
    counts = np.zeros(10)
    for seed in range(1000):
        counts[kept([4, 6], seed)] += 1
    np.testing.assert_allclose(counts / 1000, 0.3, atol=0.05)  # each image kept with probability 3/10
