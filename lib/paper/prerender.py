"""Quarto pre-render hook: publish the active profile's executed notebooks to notebooks/_executed/site/.

It executes nothing: a render uses the committed executed notebooks, and warns when they are stale.
Quarto runs it with the Python on PATH (or $QUARTO_PYTHON); that interpreter needs PyYAML.
"""
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(root / "lib"))

try:
    from paper.__main__ import main
except ImportError as err:
    sys.exit(f"pre-render: cannot import the paper package ({err}); render with the project's environment, "
             "e.g. QUARTO_PYTHON=.venv/bin/python quarto render, or use `make site`")

sys.exit(main(["--root", str(root), "publish"]))
