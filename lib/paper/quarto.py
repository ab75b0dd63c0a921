"""The HTML step: `quarto render` when Quarto is installed, otherwise a clear note on how to get it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

INSTALL_URL = "https://quarto.org/docs/get-started/"
SITE_PROFILE = "paper"
"""The profile the site shows by default (`make site`, `python -m paper build`, plain `quarto render`)."""


def quarto_executable() -> str | None:
    """`$QUARTO` when it names an executable, else `quarto` on PATH, else None."""
    explicit = os.environ.get("QUARTO")
    if explicit:
        return shutil.which(explicit)
    return shutil.which("quarto")


def quarto_available() -> bool:
    return quarto_executable() is not None


def render_command(profile: str, quarto: str = "quarto") -> list[str]:
    """`quarto render --profile <profile>`."""
    return [quarto, "render", "--profile", profile]


def render(root: Path, profile: str, log: Callable[[str], None] = print) -> int:
    """Render the site in `root` with Quarto; without Quarto print how to install it and return 0."""
    quarto = quarto_executable()
    if quarto is None:
        log("Notebooks executed; executed outputs are in notebooks/_executed/.\n"
            "The HTML step needs Quarto, which is neither on PATH nor named by $QUARTO. Install it from "
            f"{INSTALL_URL} (or `pip install quarto-cli`) and run `{' '.join(render_command(profile))}` "
            "(or `make site` again).")
        return 0
    cmd = render_command(profile, quarto)
    log("Rendering the site: " + " ".join(render_command(profile)))
    env = dict(os.environ, QUARTO_PYTHON=sys.executable)
    return subprocess.run(cmd, cwd=root, env=env).returncode
