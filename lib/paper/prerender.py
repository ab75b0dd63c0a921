"""Quarto pre-render hook: publish the active profile's executed notebooks to notebooks/_executed/site/.

It executes nothing: a render uses the committed executed notebooks, and warns when they are stale.
Quarto runs it as a script with the Python on PATH (or $QUARTO_PYTHON); that interpreter needs PyYAML.
"""
import sys
from pathlib import Path


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "lib"))
    try:
        from paper.__main__ import main as cli
    except ImportError as err:
        print(f"pre-render: cannot import the paper package ({err}); render with the project's environment, "
              "e.g. QUARTO_PYTHON=.venv/bin/python quarto render, or use `make site`", file=sys.stderr)
        return 1
    return cli(["--root", str(root), "publish"])


if __name__ == "__main__":
    sys.exit(main())
