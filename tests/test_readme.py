"""Every python block of the README runs exactly as written, in order, each in a fresh namespace.

The blocks run in a temporary directory. The one that saves torchvision's ImageNet weights as
``resnet50.safetensors`` "downloads" them from a fixture (random weights of ResNet-50's shapes):
tests never reach the network. The blocks after it read that file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
WEIGHTS_URL = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url


@pytest.fixture
def offline_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """ResNet-50 tensors that torchvision's weight download returns instead of the real file."""
    with torch.device("meta"):
        shapes = torchvision.models.resnet50().state_dict()
    generator = torch.Generator().manual_seed(0)
    weights = {
        k: torch.randn(v.shape, generator=generator)
        if v.is_floating_point()
        else torch.zeros(v.shape, dtype=v.dtype)
        for k, v in shapes.items()
    }

    def download(url: str, *args, **kwargs) -> dict[str, torch.Tensor]:
        assert url == WEIGHTS_URL, f"the README downloads {url}"
        return {k: v.clone() for k, v in weights.items()}

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", download)
    monkeypatch.chdir(tmp_path)
    return weights


def test_readme_has_the_usage_blocks() -> None:
    assert len(BLOCKS) == 3
    assert "resnet50.safetensors" in BLOCKS[1] and "load_pretrained" in BLOCKS[2]


def test_readme_python_blocks_run_as_written(offline_weights: dict, tmp_path: Path, capsys) -> None:
    namespaces = []
    for block in BLOCKS:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
        namespaces.append(namespace)
    out = capsys.readouterr().out
    assert "16 convolutions are now AWConv2d" in out
    saved = load_file(tmp_path / "resnet50.safetensors")
    assert saved.keys() == offline_weights.keys()
    assert all(torch.equal(saved[k], offline_weights[k]) for k in saved)
    result = namespaces[2]["result"]
    assert result.summary() in out and set(result.reset) == {"fc.weight", "fc.bias"}
    assert all(".se." in k or ".generator." in k or k.startswith("fc.") for k in result.new)
    model = namespaces[2]["model"]  # the one timm's route built
    assert model.num_classes == 10
    torch.testing.assert_close(model.layer4[2].conv2.weight, saved["layer4.2.conv2.weight"])
