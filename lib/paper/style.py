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
    _show_figures_as_png()


def _show_figures_as_png() -> None:
    """Let a notebook cell that returns a bare `matplotlib.figure.Figure` (made without pyplot) display as PNG;
    without pyplot's inline backend IPython would only show its text repr, and the site would embed no image."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(
        Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))
