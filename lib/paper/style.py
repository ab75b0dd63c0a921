"""Figure style shared by the notebooks behind the site."""
from __future__ import annotations

import warnings

import matplotlib as mpl


def setup(dpi: int = 110) -> None:
    """PNG figures at `dpi` with a compact, readable style (call once at the top of a notebook, before
    importing code that uses tqdm, whose notebook progress bars need ipywidgets and would only warn)."""
    warnings.filterwarnings("ignore", message="IProgress not found")
    mpl.rcParams.update({
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
    })
