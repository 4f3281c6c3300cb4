"""Training augmentation policies, random erasing and validation resizing of classification data.

``Augmentation`` names what a recipe adds to a data set's own augmentation (``awconv.data.
classification``), each transform from torchvision.transforms.v2 or timm.data:

- ``auto_augment``: ``"rand-m9-mstd0.5"`` or any timm RandAugment string (``rand-m6-mstd0.5-inc1``),
  by ``timm.data.rand_augment_transform``; ``"trivial"`` (``v2.TrivialAugmentWide``), ``"augmix"``
  (``v2.AugMix``), ``"imagenet"``, ``"cifar10"``, ``"svhn"`` (``v2.AutoAugment`` with that policy);
- ``random_erase``: ``v2.RandomErasing`` with this probability, on the normalised image, filled with
  normal noise (timm's ``--remode pixel``);
- ``val_crop_pct``: validation resizes to ``size / val_crop_pct`` and centre-crops ``size``;
- ``interpolation``: of every resize and of the policies.

This module imports torchvision only when it builds a transform, so the command line can offer its
choices at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchvision.transforms import v2

__all__ = ["AUTO_AUGMENT", "INTERPOLATIONS", "Augmentation", "check_augmentation"]

# ``--auto-augment`` policies besides timm's ``rand-...`` strings.
AUTO_AUGMENT = ("trivial", "augmix", "imagenet", "cifar10", "svhn")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def check_augmentation(auto_augment: str | None, interpolation: str) -> None:
    """Raises a one-line ``ValueError`` naming ``--auto-augment`` or ``--interpolation`` when invalid."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"--interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    if auto_augment is None or auto_augment in AUTO_AUGMENT:
        return
    if isinstance(auto_augment, str) and auto_augment.startswith("rand-"):
        from timm.data import rand_augment_transform

        try:
            rand_augment_transform(auto_augment, {})
            return
        except (AssertionError, ValueError, KeyError, IndexError):
            pass
    raise ValueError(
        f"--auto-augment must be one of {list(AUTO_AUGMENT)} or a timm RandAugment string such as "
        f"'rand-m9-mstd0.5', got {auto_augment!r}"
    )


@dataclass(frozen=True)
class Augmentation:
    """What a recipe adds to a data set's augmentation; the defaults add nothing.

    Attributes:
        auto_augment: a policy (module docstring) or ``None``.
        random_erase: probability of erasing a random rectangle of a training image.
        val_crop_pct: the centre crop's share of the resized validation image; ``None``: the data
            set's default (0.875 for ImageFolder, no crop for the others).
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
    """

    auto_augment: str | None = None
    random_erase: float = 0.0
    val_crop_pct: float | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        check_augmentation(self.auto_augment, self.interpolation)

    @property
    def host_random(self) -> bool:
        """The policy draws from Python's and NumPy's generators (timm's RandAugment), not torch's."""
        return self.auto_augment is not None and self.auto_augment.startswith("rand-")

    @property
    def mode(self) -> v2.InterpolationMode:
        """The interpolation as torchvision's enum."""
        from torchvision.transforms import v2

        return v2.InterpolationMode(self.interpolation)

    def policy(self, size: int, in_chans: int) -> list[v2.Transform]:
        """The ``auto_augment`` transform of a (C, size, size) uint8 image, or nothing."""
        from torchvision.transforms import v2

        name = self.auto_augment
        if name is None:
            return []
        if name == "trivial":
            return [v2.TrivialAugmentWide(interpolation=self.mode)]
        if name == "augmix":
            return [v2.AugMix(interpolation=self.mode)]
        if name in ("imagenet", "cifar10", "svhn"):
            return [v2.AutoAugment(v2.AutoAugmentPolicy[name.upper()], interpolation=self.mode)]
        from timm.data import rand_augment_transform
        from timm.data.transforms import str_to_pil_interp

        from awconv.data.classification import IMAGENET_MEAN

        fill = tuple(round(255 * m) for m in IMAGENET_MEAN) if in_chans == 3 else 128
        hparams = {
            "translate_const": int(size * 0.45),
            "img_mean": fill,
            "interpolation": str_to_pil_interp(self.interpolation),
        }
        # timm's RandAugment works on PIL images (and draws from Python's generator).
        return [v2.ToPILImage(), rand_augment_transform(name, hparams), v2.PILToTensor()]

    def erase(self) -> list[v2.Transform]:
        """``v2.RandomErasing`` of a normalised float image (noise-filled), or nothing."""
        from torchvision.transforms import v2

        return [v2.RandomErasing(p=self.random_erase, value="random")] if self.random_erase > 0 else []
