"""What the wheel tells an index page and an installer stays true to the repository.

The wheel itself is built, installed and exercised by ``make test-wheel`` (tests/wheel_smoke.py);
these fast checks cover the texts it is made from: pyproject.toml, docs/pypi.md (the long
description) and the README's list of dependencies.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import awconv

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DESCRIPTION = ROOT / PROJECT["readme"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_version_has_one_source():
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "awconv.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", awconv.__version__)
    assert f"## {awconv.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_license_file_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 200


def test_long_description_links_are_absolute_and_name_files_that_exist():
    text = DESCRIPTION.read_text()
    links = LINK.findall(text)
    assert links, f"{DESCRIPTION.name} has no links"
    repository = PROJECT["urls"]["Repository"]
    for link in links:
        assert link.startswith("https://"), f"{DESCRIPTION.name}: {link} is relative; index pages break it"
        if link.startswith(repository + "/blob/main/"):
            path = link.removeprefix(repository + "/blob/main/")
            assert (ROOT / path).is_file(), f"{DESCRIPTION.name} links to {path}, which does not exist"


def test_long_description_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DESCRIPTION.read_text(), flags=re.DOTALL)
    assert blocks, f"{DESCRIPTION.name} has no python example"
    for block in blocks:
        exec(compile(block, str(DESCRIPTION), "exec"), {})
    assert "convolutions are now AWConv2d" in capsys.readouterr().out


def test_readme_and_description_list_every_dependency_with_its_bound():
    readme = (ROOT / "README.md").read_text()
    minimum_python = PROJECT["requires-python"].removeprefix(">=")
    for requirement in PROJECT["dependencies"]:
        assert f"`{requirement}`" in readme, f"README.md does not list the dependency `{requirement}`"
        name = re.match(r"[a-z0-9_-]+", requirement).group()
        assert name in DESCRIPTION.read_text(), f"{DESCRIPTION.name} does not name {name}"
    assert f"Python {minimum_python}" in readme and f"Python {minimum_python}" in DESCRIPTION.read_text()
