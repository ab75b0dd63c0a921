"""Execute the site's notebooks with papermill, skipping those whose cache key is unchanged.

Layout (all paths relative to the project root, which is also the working directory of every notebook):
  notebooks/*.ipynb                       sources (no outputs needed)
  notebooks/params/<profile>.yaml         parameters per profile
  notebooks/_executed/<profile>/          executed notebooks, manifest.json, results/<stem>.json (committed)
  runs/notebooks/<profile>/<stem>/        scratch space of a notebook (`work_dir`, emptied before each
                                          execution so nothing from an older run is reused; not committed)
Each notebook receives `profile`, `results_path` (the JSON the pages read) and `work_dir` on top of its
profile parameters. An execution writes to a temporary file that replaces the output only on success.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from .cache import Manifest, cache_key, explain_change, key_parts
from common.io import readable
from common.provenance import git_commit
from .notebooks import INJECTED, NotebookError, discover, execution_order, with_dependencies
from .params import load_profile

Log = Callable[[str], None]


class BuildError(RuntimeError):
    """A notebook failed to execute; the message names it and where its partial output was kept."""


def _print(msg: str) -> None:
    print(msg, flush=True)


@dataclass(frozen=True)
class Project:
    """Where the notebooks, their parameters, the lib/ packages and the outputs live."""

    root: Path
    notebooks_dir: Path
    lib_dir: Path
    params_dir: Path
    executed_dir: Path
    work_dir: Path

    @classmethod
    def at(cls, root: str | Path) -> "Project":
        """The standard layout under `root` (see the module docstring)."""
        root = Path(root).resolve()
        nb = root / "notebooks"
        return cls(root=root, notebooks_dir=nb, lib_dir=root / "lib", params_dir=nb / "params",
                   executed_dir=nb / "_executed", work_dir=root / "runs" / "notebooks")

    def store(self, profile: str) -> Path:
        """Directory of the executed notebooks, manifest and results of `profile`."""
        return self.executed_dir / profile

    def results_path(self, profile: str, stem: str) -> Path:
        return self.store(profile) / "results" / f"{stem}.json"

    def rel(self, path: Path) -> str:
        """`path` relative to the root when inside it (what notebooks receive, as they run in the root)."""
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def find_root(start: str | Path = ".") -> Path:
    """The nearest directory at or above `start` holding `notebooks/params/`."""
    here = Path(start).resolve()
    for d in (here, *here.parents):
        if (d / "notebooks" / "params").is_dir():
            return d
    raise FileNotFoundError(f"no notebooks/params/ directory at or above {here}")


@dataclass
class Step:
    """What the build does with one notebook."""

    stem: str
    path: Path
    key: str
    parts: dict[str, Any]
    parameters: dict[str, Any]
    up_to_date: bool
    reason: str
    status: str = "pending"
    seconds: float = 0.0


@dataclass
class Plan:
    """The notebooks of one profile, in execution order, with their keys and freshness."""

    profile: str
    steps: list[Step] = field(default_factory=list)

    def __getitem__(self, stem: str) -> Step:
        return next(s for s in self.steps if s.stem == stem)


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _staleness(project: Project, profile: str, stem: str, entry: dict[str, Any] | None, key: str,
               parts: dict[str, Any]) -> str | None:
    """None if the recorded execution of `stem` is current and intact, else why it is not."""
    if not entry:
        return "no previous execution recorded"
    if not (project.store(profile) / f"{stem}.ipynb").is_file():
        return "executed notebook missing"
    if entry.get("results_sha256") != file_digest(project.results_path(profile, stem)):
        return "results file missing or modified since the execution"
    if entry.get("hash") != key:
        return explain_change(entry.get("parts"), parts)
    return None


def plan(project: Project, profile: str, only: list[str] | None = None) -> Plan:
    """Compute keys and freshness of the notebooks to build (`only` and their dependencies, or all)."""
    notebooks = discover(project.notebooks_dir)
    if not notebooks:
        raise NotebookError(f"no notebooks in {project.notebooks_dir}")
    order = execution_order(notebooks)
    params = load_profile(project.params_dir, profile, notebooks)
    for nb in notebooks.values():
        missing = [p for p in INJECTED if p not in nb.parameter_names()]
        if missing:
            raise NotebookError(f"{nb.path.name}: the parameters cell must define {', '.join(missing)} "
                                "(the runner sets them)")
    if only:
        unknown = [s for s in only if s not in notebooks]
        if unknown:
            raise NotebookError(f"unknown notebook {unknown[0]!r}; notebooks: {', '.join(order)}")
        selected = with_dependencies(notebooks, list(only))
    else:
        selected = set(order)
    manifest = Manifest(project.store(profile), profile)
    keys: dict[str, str] = {}
    out = Plan(profile)
    for stem in order:
        if stem not in selected:
            continue
        nb = notebooks[stem]
        parts = key_parts(nb, profile, params[stem], project.lib_dir, {d: keys[d] for d in nb.depends},
                          project.root)
        key = keys[stem] = cache_key(parts)
        problem = _staleness(project, profile, stem, manifest.get(stem), key, parts)
        out.steps.append(Step(stem, nb.path, key, parts, params[stem], problem is None, problem or "up to date"))
    return out


def git_dirty(root: Path, exclude: str) -> bool | None:
    """Whether tracked files outside `exclude` (a path relative to `root`) differ from HEAD; None if unknown."""
    try:
        res = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                              f":(exclude){exclude}"], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(res.stdout.strip()) if res.returncode == 0 else None


def detect_device() -> str:
    """"cuda" if torch sees a GPU, else "cpu" (also when torch is not installed)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def _kernel_env(lib_dir: Path, threads: int | None) -> Iterator[None]:
    """Environment of kernels started inside the block: `lib_dir` first on PYTHONPATH and, when `threads`
    is given, OMP_NUM_THREADS / MKL_NUM_THREADS set to it."""
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(lib_dir)] + ([old["PYTHONPATH"]] if old["PYTHONPATH"] else []))
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_notebook(source: Path, output: Path, parameters: dict[str, Any], cwd: Path, lib_dir: Path,
                     failed_dir: Path, progress_bar: bool = True, kernel: str = "python3",
                     threads: int | None = None) -> None:
    """Run `source` with papermill into a temporary file next to `output`, then rename it to `output`.

    The kernel runs in `cwd` with `lib_dir` first on its path (and `threads` CPU threads when given).
    On failure the partial notebook is moved to `failed_dir/<name>` and BuildError is raised.
    """
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".partial.ipynb", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _kernel_env(lib_dir, threads):
            pm.execute_notebook(str(source), str(tmp), parameters=parameters, kernel_name=kernel,
                                cwd=str(cwd), progress_bar=progress_bar, log_output=False)
    except BaseException as err:
        failed_dir.mkdir(parents=True, exist_ok=True)
        kept = failed_dir / output.name
        if tmp.exists() and tmp.stat().st_size:
            os.replace(tmp, kept)
        else:
            tmp.unlink(missing_ok=True)
            kept = None
        if isinstance(err, Exception):
            where = f"; the partial output is in {kept}" if kept else ""
            raise BuildError(f"notebook {source.name} failed{where}:\n{err}") from err
        raise
    readable(tmp)
    os.replace(tmp, output)


def build(project: Project, profile: str = "default", force: bool = False, only: list[str] | None = None,
          progress_bar: bool = True, threads: int | None = None, log: Log = _print) -> Plan:
    """Execute the out-of-date notebooks of `profile` (all of `only` when `force`), updating the manifest.

    `only` restricts the build to those notebooks and their dependencies; `force` re-executes the
    notebooks named in `only` (or all) even when their key is unchanged. Returns the plan with each
    step's status ("executed" or "skipped") and wall time. `threads` caps the CPU threads of the kernels
    (on a shared CPU, idle OpenMP threads spinning for a busy core cost several times the useful work).
    """
    p = plan(project, profile, only)
    forced = set(only or [s.stem for s in p.steps]) if force else set()
    store = project.store(profile)
    manifest = Manifest(store, profile)
    device = commit = dirty = None
    start = time.monotonic()
    total = len(p.steps)
    for i, step in enumerate(p.steps, 1):
        tag = f"[{i}/{total}] {step.stem} ({profile})"
        if step.up_to_date and step.stem not in forced:
            step.status = "skipped"
            log(f"{tag}: up to date (key {step.key[:12]}), skipped")
            continue
        reason = "forced" if step.stem in forced else step.reason
        log(f"{tag}: executing ({reason}); elapsed {time.monotonic() - start:.0f} s")
        device = device or detect_device()
        if commit is None:
            commit, dirty = git_commit(project.root), git_dirty(project.root, project.rel(project.executed_dir))
        results = project.results_path(profile, step.stem)
        work = project.work_dir / profile / step.stem
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        parameters = dict(step.parameters, profile=profile, results_path=project.rel(results),
                          work_dir=project.rel(work))
        backup = _backup(results)
        t0 = time.monotonic()
        try:
            execute_notebook(step.path, store / f"{step.stem}.ipynb", parameters, project.root, project.lib_dir,
                             project.work_dir / profile / "failed", progress_bar, threads=threads)
        except BaseException:
            _restore(results, backup)
            raise
        if backup:
            backup.unlink(missing_ok=True)
        step.seconds = time.monotonic() - t0
        step.status = "executed"
        manifest.set(step.stem, {
            "hash": step.key,
            "profile": profile,
            "commit": commit,
            "dirty": dirty,
            "device": device,
            "wall_time_s": round(step.seconds, 2),
            "threads": threads if threads is not None else os.environ.get("OMP_NUM_THREADS"),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "parameters": parameters,
            "results": project.rel(results) if results.is_file() else None,
            "results_sha256": file_digest(results),
            "parts": step.parts,
        })
        log(f"{tag}: done in {step.seconds:.1f} s; elapsed {time.monotonic() - start:.0f} s")
    return p


def _backup(path: Path) -> Path | None:
    if not path.is_file():
        return None
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".bak", dir=path.parent)
    os.close(fd)
    shutil.copy2(path, name)
    return Path(name)


def _restore(path: Path, backup: Path | None) -> None:
    """Put back the results of the last good execution (or remove those of a failed one)."""
    if backup is not None:
        os.replace(backup, path)
    else:
        path.unlink(missing_ok=True)
