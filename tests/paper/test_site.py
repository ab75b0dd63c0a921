"""The site: embeds resolve to labelled, executed cells; notebooks run with the default profile; Quarto renders."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from paper.notebooks import discover
from paper.params import load_profile, profile_names
from paper.publish import SITE_NAME
from paper.runner import Project, build

REPO = Path(__file__).resolve().parents[2]
EMBED = re.compile(r"\{\{<\s*embed\s+([^#\s>]+\.ipynb)#([^\s>]+)[^>]*>\}\}")
LABEL = re.compile(r"^#\|\s*label:\s*(\S+)\s*$", re.MULTILINE)
SITE_PREFIX = f"notebooks/_executed/{SITE_NAME}/"


def _pages() -> list[Path]:
    return sorted(REPO.glob("*.qmd"))


def _embeds() -> list[tuple[str, str, str]]:
    """(page, notebook path as written, label) of every embed shortcode."""
    return [(p.name, m.group(1), m.group(2)) for p in _pages() for m in EMBED.finditer(p.read_text())]


def _cell(nb: dict, label: str) -> dict | None:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and label in LABEL.findall("".join(cell["source"])):
            return cell
    return None


def _profile_stores() -> list[Path]:
    """The committed executed-notebook folders, one per profile (not the published site copy)."""
    return [d for d in (REPO / "notebooks" / "_executed").iterdir()
            if d.is_dir() and d.name != SITE_NAME and not d.name.startswith(".")]


def test_pages_embed_from_the_published_site_directory():
    embeds = _embeds()
    assert embeds, "the results page should embed notebook outputs"
    for page, path, _ in embeds:
        assert path.startswith(SITE_PREFIX), f"{page}: embed {path} should point into {SITE_PREFIX}"


@pytest.mark.parametrize("page,path,label", _embeds())
def test_embed_target_has_labelled_cell(page: str, path: str, label: str):
    stem = Path(path).stem
    source = REPO / "notebooks" / f"{stem}.ipynb"
    assert source.is_file(), f"{page}: no notebook {source.name} for embed {path}"
    assert _cell(json.loads(source.read_text()), label), f"{page}: {source.name} has no cell labelled {label}"


@pytest.mark.parametrize("page,path,label", _embeds())
def test_committed_executed_notebooks_have_outputs_for_every_embed(page: str, path: str, label: str):
    """The default profile's store is complete (the site renders from it); another profile's store may hold
    only the notebooks whose full runs are done, and each of those has outputs for every embed."""
    stores = _profile_stores()
    if not any(store.name == "default" for store in stores):
        pytest.fail("no executed notebooks in notebooks/_executed/default/: run `python -m paper build`")
    for store in stores:
        executed = store / Path(path).name
        if store.name != "default" and not executed.is_file():
            continue
        assert executed.is_file(), f"{page}: {executed} missing; run `python -m paper build --profile {store.name}`"
        cell = _cell(json.loads(executed.read_text()), label)
        assert cell is not None and cell.get("outputs"), f"{page}: {executed.name}#{label} has no outputs"


@pytest.mark.parametrize("page,path,label", [e for e in _embeds() if e[2].startswith("fig-")])
def test_embedded_figures_are_images(page: str, path: str, label: str):
    for store in _profile_stores():
        executed = store / Path(path).name
        if not executed.is_file():
            continue
        cell = _cell(json.loads(executed.read_text()), label) or {}
        kinds = {k for out in cell.get("outputs", []) for k in out.get("data", {})}
        assert "image/png" in kinds, f"{page}: {store.name}/{executed.name}#{label} shows no image (only {kinds})"


def test_profile_parameter_files_are_valid():
    notebooks = discover(REPO / "notebooks")
    assert {"default", "paper"} <= set(profile_names(REPO / "notebooks" / "params"))
    for profile in profile_names(REPO / "notebooks" / "params"):
        load_profile(REPO / "notebooks" / "params", profile, notebooks)


def test_quarto_project_lists_every_page():
    config = yaml.safe_load((REPO / "_quarto.yml").read_text())
    pages = {p.name for p in _pages()}
    assert set(config["project"]["render"]) == pages
    navbar = config["website"]["navbar"]["left"]
    linked = {item["href"] for item in navbar if "href" in item}
    linked |= {sub["href"] for item in navbar for sub in item.get("menu", [])}
    assert linked == pages
    assert (REPO / config["project"]["pre-render"]).is_file()


@pytest.mark.integration
def test_every_notebook_executes_with_the_default_profile(tmp_path: Path):
    project = dataclasses.replace(Project.at(REPO), executed_dir=tmp_path / "executed", work_dir=tmp_path / "runs")
    result = build(project, "default", progress_bar=False, threads=1, log=print)
    assert all(s.status == "executed" for s in result.steps)
    for page, path, label in _embeds():
        executed = project.store("default") / Path(path).name
        cell = _cell(json.loads(executed.read_text()), label)
        assert cell is not None and cell.get("outputs"), f"{page}: {executed.name}#{label} has no outputs"
    for stem in discover(REPO / "notebooks"):
        results = json.loads(project.results_path("default", stem).read_text())
        assert results["profile"] == "default"


@pytest.mark.integration
@pytest.mark.parametrize("profile", ["paper", "default"])
def test_quarto_renders_every_page_with_its_figures(rendered_site, profile: str):
    site = rendered_site(profile)
    print(f"quarto render --profile {profile}: {site.seconds:.0f} s")
    for page in _pages():
        html = site.path / page.with_suffix(".html").name
        assert html.is_file(), f"{html} not rendered"
        text = html.read_text()
        for p, _, label in _embeds():
            if p == page.name and label.startswith(("fig-", "tbl-")):
                assert f'id="{label}"' in text, f"{html.name} does not contain {label}"
        if any(p == page.name and label.startswith("fig-") for p, _, label in _embeds()):
            assert "<img" in text, f"{html.name} shows no figure"
    stems = {Path(path).stem for _, path, _ in _embeds()}
    for stem in stems:
        preview = site.path / SITE_PREFIX / f"{stem}-preview.html"
        assert preview.is_file(), f"no notebook preview for {stem}"
        assert (site.path / SITE_PREFIX / f"{stem}.ipynb").is_file(), f"the Download link of {stem} has no notebook"
    banner = "Quick CPU check"
    assert (banner in (site.path / "index.html").read_text()) == (profile == "default")


PY_CELL = re.compile(r"^```\{python\}\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("profile", ["default", "paper"])
@pytest.mark.parametrize("page", [p.name for p in _pages() if PY_CELL.search(p.read_text())])
def test_page_code_cells_run_on_the_published_results(page: str, profile: str, tmp_path: Path, monkeypatch, capsys):
    """A page's cells read only the published results and the committed benchmark results."""
    store = REPO / "notebooks" / "_executed" / profile
    if not (store / "manifest.json").is_file():
        pytest.fail(f"no executed {profile}-profile notebooks: run `python -m paper build --profile {profile}`")
    shutil.copytree(store, tmp_path / "notebooks" / "_executed" / SITE_NAME)
    shutil.copytree(REPO / "benchmarks" / "results", tmp_path / "benchmarks" / "results")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in PY_CELL.findall((REPO / page).read_text()):
        exec(compile(code, page, "exec"), namespace)
    assert capsys.readouterr().out.strip() or any(
        hasattr(v, "as_raw_html") for v in namespace.values()), f"{page}: its cells printed nothing"
