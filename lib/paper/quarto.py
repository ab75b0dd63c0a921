"""The HTML step: `quarto render` when Quarto is installed, otherwise a clear note on how to get it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

INSTALL_URL = "https://quarto.org/docs/get-started/"


def quarto_available() -> bool:
    return shutil.which("quarto") is not None


def render_command(profile: str) -> list[str]:
    """`quarto render`, with `--profile <profile>` for every profile except `default`."""
    return ["quarto", "render"] + ([] if profile == "default" else ["--profile", profile])


def render(root: Path, profile: str, log=print) -> int:
    """Render the site in `root` with Quarto; without Quarto print how to install it and return 0."""
    if not quarto_available():
        log("Notebooks executed; executed outputs are in notebooks/_executed/.\n"
            "The HTML step needs Quarto, which is not on PATH. Install it from "
            f"{INSTALL_URL} and run `{' '.join(render_command(profile))}` (or `make site` again).")
        return 0
    cmd = render_command(profile)
    log("Rendering the site: " + " ".join(cmd))
    env = dict(os.environ, QUARTO_PYTHON=sys.executable)
    return subprocess.run(cmd, cwd=root, env=env).returncode
