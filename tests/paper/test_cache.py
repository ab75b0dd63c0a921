"""The content-hash cache: what is part of a notebook's key, and when the runner re-executes."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from paper.cache import imported_names, module_closure
from paper.notebooks import Notebook, NotebookError, discover, execution_order
from paper.params import ParamsError, load_profile
from paper.runner import Project, build, plan



def _stale(project: Project) -> dict[str, str]:
    return {s.stem: s.reason for s in plan(project, "default").steps if not s.up_to_date}


def test_imported_names_handle_magics_from_and_relative_imports():
    src = "%matplotlib inline\nimport numpy as np\nfrom metabolism.config import load_config\n"
    assert imported_names(src) == {"numpy", "metabolism.config", "metabolism.config.load_config"}
    assert imported_names("import a.b, c\nfrom .x import y\nfrom d import e") == {"a.b", "c", "d", "d.e"}
    assert imported_names("from .x import y\nfrom .. import z", package="p.q") == {"p.q.x", "p.q.x.y", "p", "p.z"}


def test_the_closure_follows_modules_not_packages(tmp_path: Path):
    files = {"a/__init__.py": "", "a/used.py": "from .helper import f\nimport b.inner\n", "a/helper.py": "",
             "a/unused.py": "import c\n", "a/regime.yaml": "x: 1\n", "b/__init__.py": "", "b/inner.py": "",
             "c/__init__.py": ""}
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    got = {f.relative_to(tmp_path).as_posix() for f in module_closure(["from a import used", "import numpy"],
                                                                       tmp_path)}
    assert got == {"a/__init__.py", "a/used.py", "a/helper.py", "a/regime.yaml", "b/__init__.py", "b/inner.py"}


def test_key_ignores_outputs_and_cell_ids(tiny_project: Project):
    nb_path = tiny_project.notebooks_dir / "tiny.ipynb"
    key = plan(tiny_project, "default")["tiny"].key
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="noise")]
    nb.cells[2].execution_count = 7
    nb.cells[2].id = "another-id"
    nbformat.write(nb, nb_path)
    assert plan(tiny_project, "default")["tiny"].key == key


@pytest.mark.integration
def test_cache_reruns_only_when_parameters_or_imported_lib_code_change(tiny_project: Project):
    log: list[str] = []
    first = build(tiny_project, progress_bar=False, log=log.append)
    assert first["tiny"].status == "executed"
    store = tiny_project.store("default")
    manifest = json.loads((store / "manifest.json").read_text())["notebooks"]["tiny"]
    assert {"hash", "profile", "commit", "device", "wall_time_s", "timestamp"} <= manifest.keys()
    assert manifest["profile"] == "default" and manifest["device"] in ("cpu", "cuda")
    assert json.loads((store / "results" / "tiny.json").read_text()) == {"value": 6, "profile": "default"}
    assert not list(store.glob(".*")), "no temporary files may remain"

    assert build(tiny_project, progress_bar=False, log=log.append)["tiny"].status == "skipped"

    (tiny_project.lib_dir / "otherpkg" / "__init__.py").write_text("X = 2\n")
    assert _stale(tiny_project) == {}, "a package the notebook does not import is not part of its key"

    (tiny_project.params_dir / "default.yaml").write_text("tiny:\n  scale: 5\n")
    assert "parameters changed" in _stale(tiny_project)["tiny"]
    assert build(tiny_project, progress_bar=False, log=log.append)["tiny"].status == "executed"
    assert json.loads((store / "results" / "tiny.json").read_text())["value"] == 10

    (tiny_project.lib_dir / "tinypkg" / "__init__.py").write_text("def value():\n    return 7\n")
    assert "lib code changed (tinypkg/__init__.py)" in _stale(tiny_project)["tiny"]
    assert build(tiny_project, progress_bar=False, log=log.append)["tiny"].status == "executed"
    assert json.loads((store / "results" / "tiny.json").read_text())["value"] == 35

    assert build(tiny_project, force=True, only=["tiny"], progress_bar=False, log=log.append)["tiny"].status \
        == "executed"
    assert any("forced" in line for line in log)


@pytest.mark.integration
def test_failed_execution_leaves_previous_output_untouched(tiny_project: Project, make_notebook, tiny_sources):
    build(tiny_project, progress_bar=False, log=lambda s: None)
    store = tiny_project.store("default")
    before = {p.name: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    make_notebook(tiny_project.notebooks_dir / "tiny.ipynb", *tiny_sources, "raise RuntimeError('boom')")
    with pytest.raises(Exception, match="boom"):
        build(tiny_project, progress_bar=False, log=lambda s: None)
    after = {p.name: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert after == before
    assert (tiny_project.work_dir / "default" / "failed" / "tiny.ipynb").is_file()


def test_unknown_notebook_in_params_is_an_error_naming_it(tiny_project: Project):
    (tiny_project.params_dir / "default.yaml").write_text("tiny: {}\nrecoverry:\n  seed: 1\n")
    with pytest.raises(ParamsError, match="recoverry"):
        plan(tiny_project, "default")


def test_unknown_parameter_and_injected_parameter_are_errors(tiny_project: Project):
    notebooks = discover(tiny_project.notebooks_dir)
    (tiny_project.params_dir / "default.yaml").write_text("tiny:\n  scael: 1\n")
    with pytest.raises(ParamsError, match="scael"):
        load_profile(tiny_project.params_dir, "default", notebooks)
    (tiny_project.params_dir / "default.yaml").write_text("tiny:\n  profile: x\n")
    with pytest.raises(ParamsError, match="set by the runner"):
        load_profile(tiny_project.params_dir, "default", notebooks)
    with pytest.raises(ParamsError, match="no parameters file"):
        load_profile(tiny_project.params_dir, "nope", notebooks)


def test_only_rejects_unknown_stems(tiny_project: Project):
    with pytest.raises(NotebookError, match="'nope'"):
        plan(tiny_project, "default", only=["nope"])


def test_dependencies_order_and_key_propagation(tiny_project: Project, make_notebook, tiny_sources):
    nbdir = tiny_project.notebooks_dir
    params, body = tiny_sources
    make_notebook(nbdir / "a_last.ipynb", params, "x = 1", depends=["tiny"])
    assert execution_order(discover(nbdir)) == ["tiny", "a_last"]
    before = plan(tiny_project, "default")["a_last"].key
    (tiny_project.params_dir / "default.yaml").write_text("tiny:\n  scale: 4\n")
    assert plan(tiny_project, "default")["a_last"].key != before
    make_notebook(nbdir / "tiny.ipynb", params, body, depends=["a_last"])
    with pytest.raises(NotebookError, match="cycle"):
        execution_order(discover(nbdir))


def test_parameters_cell_is_required(tmp_path: Path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))
    nbformat.write(nb, tmp_path / "x.ipynb")
    with pytest.raises(NotebookError, match="parameters"):
        Notebook.read(tmp_path / "x.ipynb").parameter_names()


def test_declared_input_files_are_part_of_the_key(tiny_project: Project):
    nb_path = tiny_project.notebooks_dir / "tiny.ipynb"
    key = plan(tiny_project, "default")["tiny"].key
    data = tiny_project.root / "data" / "runs"
    data.mkdir(parents=True)
    (data / "a.json").write_text("{}")
    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata["paper"] = {"inputs": ["data/runs/*.json"]}
    nbformat.write(nb, nb_path)
    with_input = plan(tiny_project, "default")["tiny"]
    assert with_input.key != key and with_input.parts["inputs"] == {"data/runs/a.json": with_input.parts["inputs"]
                                                                   ["data/runs/a.json"]}
    (data / "a.json").write_text('{"changed": 1}')
    assert plan(tiny_project, "default")["tiny"].key != with_input.key
    (data / "b.json").write_text("{}")
    assert set(plan(tiny_project, "default")["tiny"].parts["inputs"]) == {"data/runs/a.json", "data/runs/b.json"}


def test_inputs_must_be_a_list_of_patterns(tmp_path: Path, make_notebook, tiny_sources):
    make_notebook(tmp_path / "x.ipynb", *tiny_sources)
    nb = nbformat.read(tmp_path / "x.ipynb", as_version=4)
    nb.metadata["paper"] = {"inputs": "data/*.json"}
    nbformat.write(nb, tmp_path / "x.ipynb")
    with pytest.raises(NotebookError, match="inputs must be a list"):
        Notebook.read(tmp_path / "x.ipynb")


def test_input_patterns_follow_the_profile_parameters(tiny_project: Project, make_notebook):
    """`{name}` in an input pattern is the profile's parameter (else the cell's default): a list gives one
    pattern per element, a dict one per value, None none; files another profile reads are not part of this
    profile's key."""
    params = 'root = None\nruns = ["data/a"]\nnamed = {"short": "data/b"}\nprofile = "interactive"\nresults_path = None\nwork_dir = "w"\n'
    nb_path = tiny_project.notebooks_dir / "tiny.ipynb"
    make_notebook(nb_path, params, "print(1)")
    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata["paper"] = {"inputs": ["{root}/*.json", "{runs}/m.json", "{named}/n.json"]}
    nbformat.write(nb, nb_path)
    for d in ("mine", "other", "data/a", "data/b"):
        (tiny_project.root / d).mkdir(parents=True)
    for f in ("mine/x.json", "other/x.json", "data/a/m.json", "data/b/m.json", "data/b/n.json"):
        (tiny_project.root / f).write_text("{}")
    (tiny_project.notebooks_dir / "params" / "default.yaml").write_text(
        "tiny:\n  root: mine\n  runs: [data/a, data/b]\n")
    (tiny_project.notebooks_dir / "params" / "other.yaml").write_text("tiny: {}\n")
    steps = {p: plan(tiny_project, p)["tiny"] for p in ("default", "other")}
    assert set(steps["default"].parts["inputs"]) == {"mine/x.json", "data/a/m.json", "data/b/m.json",
                                                     "data/b/n.json"}
    assert set(steps["other"].parts["inputs"]) == {"data/a/m.json", "data/b/n.json"}  # root None: no pattern; runs: the default
    (tiny_project.root / "mine" / "x.json").write_text('{"changed": 1}')
    assert plan(tiny_project, "other")["tiny"].key == steps["other"].key
    assert plan(tiny_project, "default")["tiny"].key != steps["default"].key
    nb.metadata["paper"] = {"inputs": ["{missing}/*.json"]}
    nbformat.write(nb, nb_path)
    with pytest.raises(NotebookError, match="'missing'"):
        plan(tiny_project, "default")
