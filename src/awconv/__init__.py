"""awconv: AW-convolution (Zhu et al., arXiv 2108.08205) for PyTorch.

Per-sample attention with the shape of a convolution's weights, multiplied into the weights.
Importing this package registers the ResNet families of ``awconv.models`` with timm: at once when
timm is already imported, otherwise right after timm is. The names below are imported when first
used (PEP 562), so ``import awconv`` alone loads neither torch nor timm, and the ``awconv`` command
line answers ``--help`` without them.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["AWConv2d", "AttentionGenerator", "aw_conv2d", "aw_conv2d_fused", "convert", "load_pretrained"]
__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "AWConv2d": "awconv.layers",
    "AttentionGenerator": "awconv.layers",
    "aw_conv2d": "awconv.ops",
    "aw_conv2d_fused": "awconv.ops",
    "convert": "awconv.convert",
    "load_pretrained": "awconv.models",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'awconv' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(ModuleType):
    """The package module: ``awconv.convert`` stays the function when the submodule of that name loads.

    Python binds a submodule to its parent's attribute of the same name once it is imported;
    ``convert`` is both, and the function is the public name.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


class _RegisterWithTimm:
    """Imports ``awconv.models``, which registers the families, once ``timm`` has been imported.

    When timm is imported by an awconv module (``awconv.layers`` needs it), the registration waits
    until the outermost awconv import has finished, so that ``awconv.models`` never meets a module
    that is still half imported. The finder removes itself once the families are registered.
    """

    def __init__(self) -> None:
        self._depth = 0  # awconv modules being imported, one inside another
        self._timm_imported = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "timm" and not name.startswith("awconv."):
            return None
        spec = next(
            (
                found
                for finder in sys.meta_path
                if finder is not self
                and hasattr(finder, "find_spec")
                and (found := finder.find_spec(name, path, target)) is not None
            ),
            None,
        )
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            self._depth += name != "timm"
            try:
                exec_module(module)
            finally:
                self._depth -= name != "timm"
            self._timm_imported |= name == "timm"
            if self._timm_imported and self._depth == 0 and self in sys.meta_path:
                sys.meta_path.remove(self)
                importlib.import_module("awconv.models")

        spec.loader.exec_module = exec_then_register
        return spec


sys.modules[__name__].__class__ = _Package
if "timm" in sys.modules:
    importlib.import_module("awconv.models")
elif not any(isinstance(finder, _RegisterWithTimm) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithTimm())
