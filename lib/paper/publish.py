"""Publish one profile's executed notebooks to `notebooks/_executed/site/`, the directory the pages embed from.

Quarto's embed shortcode takes a fixed path, so the pages cannot name the profile. Instead the executed
notebooks of each profile stay in `_executed/<profile>/` (committed), and the profile being rendered is
copied to `_executed/site/` (not committed) by `python -m paper build` and by Quarto's pre-render hook.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from common.io import readable
from .runner import Plan, Project, plan

SITE_NAME = "site"


def site_dir(project: Project) -> Path:
    return project.executed_dir / SITE_NAME


def status(project: Project, profile: str) -> tuple[Plan, list[str]]:
    """The plan of `profile` and the stems whose executed notebook is absent (a render would fail on them)."""
    p = plan(project, profile)
    missing = [s.stem for s in p.steps if not (project.store(profile) / f"{s.stem}.ipynb").is_file()]
    return p, missing


def publish(project: Project, profile: str) -> Path:
    """Replace `_executed/site/` by a copy of `_executed/<profile>/` (notebooks, results, manifest)."""
    store = project.store(profile)
    if not store.is_dir():
        raise FileNotFoundError(f"nothing executed for profile {profile!r} ({store}); "
                                f"run `python -m paper build --profile {profile}`")
    target = site_dir(project)
    staging = Path(tempfile.mkdtemp(prefix=".site.", dir=project.executed_dir))
    readable(staging, directory=True)
    try:
        for item in store.iterdir():
            if item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, staging / item.name, ignore=shutil.ignore_patterns(".*"))
            else:
                shutil.copy2(item, staging / item.name)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".site-old.", dir=project.executed_dir))
            os.replace(target, old / SITE_NAME)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
