"""Data flows one way: ops <- layers <- convert <- models <- data, detection, profiling, export <- engine
<- cli.

Every ``awconv`` import inside the package is read from the source (``ast``), so an import that
points upward fails here, whether or not it runs at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import awconv

SOURCE = Path(awconv.__file__).parent

# The rank of each part: a module may import from parts of its own rank or lower.
RANKS = {
    "ops": 0,
    "layers": 1,
    "convert": 2,
    "models": 3,
    "data": 4,
    "detection": 4,
    "profiling": 4,
    "export": 4,
    "engine": 5,
    "engine.classification": 6,
    "engine.detection": 6,
    "engine.inspection": 6,
    "cli": 7,
}


def _part(module: str) -> str | None:
    """``awconv.engine.detection.run`` -> ``engine.detection``; None for the package root."""
    names = module.split(".")[1:]
    if len(names) >= 2 and ".".join(names[:2]) in RANKS:
        return ".".join(names[:2])
    return names[0] if names and names[0] in RANKS else None


def _imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return [m for m in modules if m == "awconv" or m.startswith("awconv.")]


def test_no_module_imports_upward() -> None:
    upward = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = "awconv." + ".".join(path.relative_to(SOURCE).with_suffix("").parts)
        part = _part(module.removesuffix(".__init__"))
        if part is None:  # the package root and __main__ may use everything
            continue
        for imported in _imports(path):
            target = _part(imported)
            if imported == "awconv" or (target is not None and RANKS[target] > RANKS[part]):
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_every_part_has_a_rank() -> None:
    parts = {p.stem if p.is_file() else p.name for p in SOURCE.iterdir() if not p.name.startswith("_")}
    parts.discard("py")
    unranked = {p for p in parts if p not in RANKS and not p.endswith("egg-info")} - {"__pycache__"}
    assert unranked == set()
