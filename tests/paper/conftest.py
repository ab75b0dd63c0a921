"""Helpers for the paper tests: a tiny project (one notebook, two lib packages) in a temporary directory."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from paper.runner import Project

REPO = Path(__file__).resolve().parents[2]

TINY_PARAMETERS = """\
scale = 1
profile = "interactive"
results_path = None
work_dir = "runs/interactive"
"""

TINY_BODY = """\
#| label: fig-tiny
from tinypkg import value
from paper.results import save_results
save_results(results_path, {"value": value() * scale, "profile": profile})
print(value() * scale)
"""


def write_notebook(path: Path, parameters: str, *cells: str, depends: list[str] | None = None) -> None:
    """A notebook with a tagged parameters cell followed by code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if depends:
        nb.metadata["paper"] = {"depends": depends}
    nb.cells.append(nbformat.v4.new_markdown_cell("# tiny"))
    nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(c) for c in cells)
    nbformat.write(nb, path)


@pytest.fixture
def make_notebook():
    """The `write_notebook` helper, for tests that add or rewrite notebooks."""
    return write_notebook


@pytest.fixture
def tiny_sources() -> tuple[str, str]:
    """(parameters cell, body cell) of the tiny notebook."""
    return TINY_PARAMETERS, TINY_BODY


@pytest.fixture
def tiny_project(tmp_path: Path) -> Project:
    """tmp_path/{notebooks/tiny.ipynb, notebooks/params/default.yaml, lib/tinypkg, lib/otherpkg, lib/paper}."""
    (tmp_path / "notebooks" / "params").mkdir(parents=True)
    (tmp_path / "lib" / "tinypkg").mkdir(parents=True)
    (tmp_path / "lib" / "tinypkg" / "__init__.py").write_text("def value():\n    return 2\n")
    (tmp_path / "lib" / "otherpkg").mkdir()
    (tmp_path / "lib" / "otherpkg" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "notebooks" / "params" / "default.yaml").write_text("tiny:\n  scale: 3\n")
    write_notebook(tmp_path / "notebooks" / "tiny.ipynb", TINY_PARAMETERS, TINY_BODY)
    return Project.at(tmp_path)
