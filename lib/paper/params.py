"""Profile parameters: one YAML file per profile, `<params_dir>/<profile>.yaml`, mapping notebook stem -> dict.

`default` is small enough for a 2-core CPU in minutes; `paper` is the full-size run for a GPU. A notebook
without an entry runs with the defaults of its parameters cell.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .notebooks import INJECTED, Notebook

RESERVED_PROFILES = ("site",)
"""Names that cannot be profiles: `site` is the directory the Quarto pages read from."""


class ParamsError(ValueError):
    """A profile file that cannot be used; the message names the file and the offending entry."""


def profile_names(params_dir: str | Path) -> list[str]:
    """Profiles that have a parameters file."""
    return sorted(p.stem for p in Path(params_dir).glob("*.yaml"))


def load_profile(params_dir: str | Path, profile: str, notebooks: dict[str, Notebook]) -> dict[str, dict[str, Any]]:
    """Validated parameters of every notebook for `profile` (stems without an entry map to {}).

    Errors name the file and the unknown notebook or parameter, so a typo never silently runs the default.
    """
    if profile in RESERVED_PROFILES:
        raise ParamsError(f"{profile!r} is reserved and cannot be a profile name")
    path = Path(params_dir) / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(profile_names(params_dir)) or "none"
        raise ParamsError(f"no parameters file for profile {profile!r} ({path}); known profiles: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of notebook stem -> parameters")
    out: dict[str, dict[str, Any]] = {stem: {} for stem in notebooks}
    for stem, params in data.items():
        if stem not in notebooks:
            raise ParamsError(f"{path}: unknown notebook {stem!r}; notebooks: {', '.join(sorted(notebooks))}")
        if params is None:
            continue
        if not isinstance(params, dict):
            raise ParamsError(f"{path}: parameters of {stem!r} must be a mapping")
        declared = notebooks[stem].parameter_names()
        for name, value in params.items():
            if name in INJECTED:
                raise ParamsError(f"{path}: {stem}.{name} is set by the runner and cannot be given here")
            if name not in declared:
                raise ParamsError(f"{path}: {stem} has no parameter {name!r}; its parameters cell defines "
                                  f"{', '.join(sorted(declared - set(INJECTED)))}")
            try:
                json.dumps(value)
            except TypeError:
                raise ParamsError(f"{path}: {stem}.{name} is not plain data (numbers, strings, lists, maps)") from None
        out[stem] = dict(params)
    return out
