"""The recipe toolbox on tiny data: accumulation, EMA, mixing, augmentation, top-k and averaging, resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning.pytorch as pl
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tiny_data import make_cifar, make_image_folder
from torch import nn

from awconv.data.augment import Augmentation
from awconv.data.classification import build_classification_data
from awconv.engine.classification import ClassifierModule, TrainConfig, evaluate_classifier, train_classifier
from awconv.engine.classification.average import average_checkpoints, ranked_top_checkpoints
from awconv.engine.classification.mixing import batch_mixer
from awconv.engine.history import read_history
from awconv.engine.loaders import SeededSamples

LINEAR = "linear_probe_test"  # no BatchNorm: accumulation is exact


@timm.models.register_model
def linear_probe_test(
    pretrained: bool = False, *, num_classes: int = 2, in_chans: int = 3, **kwargs
) -> nn.Module:
    """A linear classifier of 8x8 images, registered with timm for these tests."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 64, num_classes))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(data: str, run_dir: Path, **overrides) -> TrainConfig:
    values = dict(
        model=LINEAR,
        data=data,
        run_dir=str(run_dir),
        epochs=1,
        batch_size=8,
        image_size=8,
        workers=0,
        lr=0.1,
        weight_decay=0.01,
        accelerator="cpu",
        progress_bar=False,
    )
    return TrainConfig(**{**values, **overrides})


def _last_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_accumulating_two_batches_equals_one_batch_of_twice_the_size(tmp_path: Path) -> None:
    data = f"imagefolder:{make_image_folder(tmp_path / 'data', per_class=4)}"  # 8 training images
    one = _config(data, tmp_path / "one", batch_size=8)
    accumulated = _config(data, tmp_path / "accumulated", batch_size=4, grad_accum=2)
    train_classifier(one)
    train_classifier(accumulated)
    a, b = _last_state(tmp_path / "one"), _last_state(tmp_path / "accumulated")
    steps = [
        torch.load(p / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        for p in (
            tmp_path / "one",
            tmp_path / "accumulated",
        )
    ]
    assert steps == [1, 1]
    start = timm.create_model(LINEAR, num_classes=2)  # the update is not zero: the runs did learn
    assert not torch.allclose(a["model.1.weight"], start.state_dict()["1.weight"])
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


class _RawWeights(pl.Callback):
    """The raw weights after every optimiser step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self._seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self._seen:
            self._seen = trainer.global_step
            self.steps.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_is_the_hand_computed_average_of_the_optimiser_steps(tmp_path: Path, warmup: bool) -> None:
    data = f"imagefolder:{make_image_folder(tmp_path / 'data', per_class=8)}"  # 16 images: 4 steps
    run_dir = tmp_path / "run"
    raw = _RawWeights()
    config = _config(data, run_dir, batch_size=2, grad_accum=2, ema=0.5, ema_warmup=warmup)
    summary = train_classifier(config, callbacks=[raw])
    assert len(raw.steps) == 4
    expected = None
    for step, weights in enumerate(raw.steps, start=1):
        # timm's ModelEmaV3: step 1 copies; then decay d (with warm-up: min(d, 1 - t ** (-2/3))).
        decay = 0.0 if step == 1 else (min(0.5, 1 - step ** (-2 / 3)) if warmup else 0.5)
        expected = (
            {k: decay * expected[k] + (1 - decay) * v for k, v in weights.items()} if expected else weights
        )
    state = _last_state(run_dir)
    exported = load_file(run_dir / "best-ema.safetensors")  # one epoch: the best EMA is the last
    for key, value in expected.items():
        torch.testing.assert_close(state[f"ema.module.{key}"], value, rtol=1e-6, atol=1e-7, msg=key)
        torch.testing.assert_close(exported[key], value, rtol=1e-6, atol=1e-7, msg=key)
    assert not torch.allclose(expected["1.weight"], raw.steps[-1]["1.weight"])  # not the raw weights

    (row,) = read_history(run_dir / "history.json")
    assert summary["best_ema_val_top1"] == row["val_ema_top1"] and "val_top1" in row
    ema_eval = evaluate_classifier(
        None, None, None, run_dir=str(run_dir), ema=True, workers=0, progress_bar=False
    )
    raw_eval = evaluate_classifier(None, None, None, run_dir=str(run_dir), workers=0, progress_bar=False)
    assert ema_eval["val_loss"] == pytest.approx(row["val_ema_loss"], rel=1e-5)
    assert raw_eval["val_loss"] == pytest.approx(row["val_loss"], rel=1e-5)
    assert 0 < row["train_images_per_s"] == summary["train_images_per_s"]


def test_mixup_targets_sum_to_one_and_mix_each_image_with_the_previous() -> None:
    torch.manual_seed(0)
    images, labels = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    one_hot = F.one_hot(labels, 5).float()
    mixed, targets = batch_mixer(0.4, 0.0, 0.5, 5)(images, labels)
    lam = float(targets[1, 1])  # image 1 (class 1) mixed with image 0 (class 0)
    assert 0 < lam < 1
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    torch.testing.assert_close(targets, lam * one_hot + (1 - lam) * one_hot.roll(1, 0))
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images.roll(1, 0))


def test_cutmix_pastes_the_previous_image_in_proportion_to_its_target() -> None:
    torch.manual_seed(1)
    images, labels = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    for _ in range(5):
        mixed, targets = batch_mixer(0.0, 1.0, 0.5, 4)(images, labels)  # CutMix only
        torch.testing.assert_close(targets.sum(1), torch.ones(4))
        own = (mixed == images).all(1)  # (N, H, W): pixels of the image itself
        pasted = (mixed == images.roll(1, 0)).all(1)
        assert bool((own | pasted).all())
        kept = own.float().mean((1, 2))
        torch.testing.assert_close(targets[torch.arange(4), labels], kept)
        torch.testing.assert_close(targets[torch.arange(4), labels.roll(1)], 1 - kept)


@pytest.mark.parametrize(("switch_prob", "kind"), [(0.0, "MixUp"), (1.0, "CutMix")])
def test_switch_probability_picks_mixup_or_cutmix(switch_prob: float, kind: str) -> None:
    mixer = batch_mixer(0.5, 1.0, switch_prob, 3)
    assert [type(t).__name__ for t in mixer.transforms] == ["MixUp", "CutMix"]
    assert mixer.p == ([1.0, 0.0] if kind == "MixUp" else [0.0, 1.0])
    assert batch_mixer(0.0, 0.0, 0.5, 3) is None


def test_validation_is_not_mixed_and_training_is() -> None:
    module = ClassifierModule(LINEAR, num_classes=3, mixup=1.0, cutmix=1.0)
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    torch.manual_seed(0)
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    plain = F.cross_entropy(module.model(images), labels)
    module.validation_step((images, labels), 0)
    assert float(logged["val_loss"]) == pytest.approx(float(plain), rel=1e-6)
    module.training_step((images, labels), 0)
    assert float(logged["train_loss"]) != pytest.approx(float(plain), rel=1e-3)


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5", "trivial", "augmix", "imagenet"])
def test_policies_and_erasing_are_seeded_and_leave_validation_alone(tmp_path: Path, policy: str) -> None:
    root = make_image_folder(tmp_path / "data", per_class=2, size=12)
    plain = build_classification_data(f"imagefolder:{root}", image_size=8)
    augmented = build_classification_data(
        f"imagefolder:{root}", image_size=8, augmentation=Augmentation(auto_augment=policy, random_erase=1.0)
    )
    torch.testing.assert_close(augmented.val[1][0], plain.val[1][0])
    samples = SeededSamples(augmented.train, host_generators=Augmentation(auto_augment=policy).host_random)
    first, again = samples[(1, 7)][0], samples[(1, 7)][0]
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    images = [samples[(1, seed)][0] for seed in range(6)]
    assert any(not torch.equal(images[0], image) for image in images[1:])
    assert not torch.equal(first, SeededSamples(plain.train)[(1, 7)][0])


def test_validation_crop_and_interpolation(tmp_path: Path) -> None:
    from torchvision.transforms.v2 import functional as TF

    root = make_image_folder(tmp_path / "data", per_class=2, size=12)
    data = build_classification_data(
        f"imagefolder:{root}",
        image_size=8,
        augmentation=Augmentation(val_crop_pct=0.5, interpolation="nearest"),
    )
    path, _ = data.val.samples[0]
    from PIL import Image

    with Image.open(path) as image:
        pixels = TF.pil_to_tensor(image.convert("RGB"))
    expected = TF.center_crop(TF.resize(pixels, [16], interpolation=TF.InterpolationMode.NEAREST), [8])
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(data.val[0][0], (expected.float() / 255 - mean) / std)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auto_augment": "rand-x9"}, "--auto-augment must be one of"),
        ({"interpolation": "cubic"}, "--interpolation must be one of"),
        ({"ema": 1.0}, "--ema must be a decay in (0, 1)"),
        ({"betas": [0.9]}, "--betas must be two numbers in [0, 1)"),
        ({"layer_decay": 0.0}, "--layer-decay must be a number in (0, 1]"),
        ({"min_lr": 0.5}, "--min-lr must be below --lr 0.1"),
        ({"mixup_switch_prob": 1.5}, "--mixup-switch-prob must be a probability in [0, 1]"),
        ({"grad_accum": 0}, "--grad-accum must be a positive int"),
        ({"keep_top": -1}, "--keep-top must be an int >= 0"),
    ],
)
def test_bad_recipe_values_name_the_option(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(
        ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        _config("digits", tmp_path, **overrides)


class _StopAfter(pl.Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def _recipe_run(data: str, run_dir: Path) -> TrainConfig:
    return _config(
        data,
        run_dir,
        epochs=3,
        lr=0.05,
        keep_top=2,
        ema=0.9,
        mixup=0.2,
        cutmix=1.0,
        auto_augment="trivial",
        random_erase=0.25,
    )


def test_keep_top_keeps_exactly_k_and_averaging_is_their_mean(tmp_path: Path) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=24, num_classes=3)}"
    run_dir = tmp_path / "run"
    train_classifier(_recipe_run(data, run_dir))
    history = read_history(run_dir / "history.json")
    ranked = ranked_top_checkpoints(run_dir)
    assert len(list((run_dir / "checkpoints" / "top").iterdir())) == 2 == len(ranked)  # K of 3 epochs
    best_two = sorted((row["val_top1"] for row in history), reverse=True)[:2]
    assert [score for _, _, score in ranked] == best_two

    result = average_checkpoints(run_dir, top=2, workers=0, progress_bar=False)
    averaged = load_file(run_dir / result["weights"])
    states = [torch.load(path, weights_only=True)["state_dict"] for path, _, _ in ranked]
    assert not torch.equal(states[0]["model.1.weight"], states[1]["model.1.weight"])
    for key, value in averaged.items():
        torch.testing.assert_close(
            value, (states[0][f"model.{key}"] + states[1][f"model.{key}"]) / 2, msg=key
        )
    assert result["epochs"] == [epoch for _, epoch, _ in ranked]
    assert 0 <= result["val_top1"] <= 1
    with pytest.raises(ValueError, match=r"--top must be an int in \[1, 2\]"):
        average_checkpoints(run_dir, top=3)


@pytest.mark.slow
def test_a_run_with_ema_keep_top_and_mixing_resumes_exactly(tmp_path: Path) -> None:
    data = f"cifar:{make_cifar(tmp_path / 'data', train=24, num_classes=3)}"
    train_classifier(dataclasses.replace(_recipe_run(data, tmp_path / "straight"), model="test_resnet"))
    resumed = dataclasses.replace(_recipe_run(data, tmp_path / "resumed"), model="test_resnet")
    train_classifier(resumed, callbacks=[_StopAfter(1)])
    train_classifier(dataclasses.replace(resumed, resume="last"))
    a, b = _last_state(tmp_path / "straight"), _last_state(tmp_path / "resumed")
    assert any(key.startswith("ema.module.") for key in a)
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0, msg=key)
    for folder in ("checkpoints/top", "checkpoints"):  # the same top-k epochs kept, best-ema.ckpt too
        names = [
            sorted(p.name for p in (tmp_path / run / folder).glob("*.ckpt"))
            for run in ("straight", "resumed")
        ]
        assert names[0] == names[1] and names[0], folder
    for name in ("best.safetensors", "best-ema.safetensors"):
        x, y = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert all(torch.equal(x[k], y[k]) for k in x), name


def test_the_compare_report_names_the_toolbox_options_a_recipe_changes() -> None:
    from awconv.engine.classification.compare import _toolbox_text

    recipe = TrainConfig(model="", data="digits", run_dir="", ema=0.99, mixup=0.2, auto_augment="trivial")
    assert _toolbox_text(recipe) == ", ema 0.99, mixup 0.2, auto-augment trivial"
    assert _toolbox_text(TrainConfig(model="", data="digits", run_dir="")) == ""


@pytest.mark.parametrize(("policy", "host"), [("rand-m9-mstd0.5", True), ("trivial", False), (None, False)])
def test_the_loader_seeds_python_and_numpy_only_for_timm_randaugment(
    tmp_path: Path, policy, host: bool
) -> None:
    from awconv.engine.classification import ClassificationDataModule

    root = make_image_folder(tmp_path / "data", per_class=2)
    module = ClassificationDataModule(
        f"imagefolder:{root}", batch_size=2, image_size=8, augmentation=Augmentation(auto_augment=policy)
    )
    assert module.train_dataloader().dataset.host_generators is host
