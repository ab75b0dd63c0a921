"""The small JSON results a notebook writes for the pages, and how pages read them back."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.io import write_json

SITE = Path("notebooks/_executed/site")
"""Where the pages read from, relative to the project root: a copy of one profile's executed notebooks."""


def save_results(path: str | Path | None, data: dict[str, Any]) -> dict[str, Any]:
    """Write `data` atomically to `path` (skipped when None, e.g. run by hand) and return it."""
    if path is not None:
        write_json(path, data)
    return data


def load_results(stem: str, site_dir: str | Path = SITE) -> dict[str, Any]:
    """The results JSON the notebook `stem` wrote, as published for the site."""
    path = Path(site_dir) / "results" / f"{stem}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m paper build` (or `quarto render`, whose "
                                "pre-render step publishes the executed notebooks)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_manifest(site_dir: str | Path = SITE) -> dict[str, Any]:
    """The manifest of the published executions (profile, commit, device, wall time per notebook)."""
    return json.loads((Path(site_dir) / "manifest.json").read_text(encoding="utf-8"))
