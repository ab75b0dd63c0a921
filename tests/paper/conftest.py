"""Helpers for the paper tests: a tiny project (one notebook, two lib packages) in a temporary directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from browser import skip_or_fail
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


@dataclass
class RenderedSite:
    """A copy of the site Quarto rendered for one profile, and how long the render took."""

    profile: str
    path: Path
    seconds: float
    log: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that render the site share one pytest-xdist worker (`--dist loadgroup`): a render writes
    `_site/` and `notebooks/_executed/site/` in the repository, so two at once would mix, and one worker
    renders each profile once."""
    for item in items:
        if "rendered_site" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("site"))


@pytest.fixture(scope="session")
def rendered_site(tmp_path_factory):
    """`rendered_site(profile)`: render the site with the committed executions of `profile` (once per session,
    or per pytest-xdist worker) and return a RenderedSite whose `path` is a copy of `_site`."""
    from paper.quarto import quarto_executable, render_command

    done: dict[str, RenderedSite] = {}

    def render(profile: str) -> RenderedSite:
        if profile not in done:
            quarto = quarto_executable()
            if quarto is None:
                skip_or_fail("Quarto is neither on PATH nor named by $QUARTO (https://quarto.org/docs/get-started/)")
            t0 = time.monotonic()
            res = subprocess.run(render_command(profile, quarto), cwd=REPO, capture_output=True, text=True,
                                 env={**os.environ, "QUARTO_PYTHON": sys.executable})
            seconds = time.monotonic() - t0
            assert res.returncode == 0, f"quarto render --profile {profile} failed:\n{res.stderr[-3000:]}"
            copy = tmp_path_factory.mktemp(f"site-{profile}") / "_site"
            shutil.copytree(REPO / "_site", copy)
            done[profile] = RenderedSite(profile, copy, seconds, res.stdout + res.stderr)
        return done[profile]

    return render
