"""Figures of a fit to measured data: the rate constants with their intervals, and the learned functions.

Built with matplotlib's object API (``Figure``), which needs no pyplot backend: a fit writes its PNGs the same
from a script, a server or a notebook, and leaves the notebook's inline figures alone.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def fit_figures(result) -> dict:
    """{"rate_constants": Figure, "functions": Figure (GNN fits only)} of a ``fit.FitResult``."""
    figs = {}
    I = result.intervals
    order = np.argsort(result.k)
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    x = np.arange(order.size)
    det = ~I.flagged[order]
    for sel, colour, label in ((det, "tab:blue", "determined"), (~det, "tab:grey", "not determined")):
        if sel.any():
            ax.errorbar(x[sel], result.k[order][sel],
                        yerr=[result.k[order][sel] - I.lo[order][sel], I.hi[order][sel] - result.k[order][sel]],
                        fmt="o", ms=2.5, lw=0.8, color=colour, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("reaction (sorted by k)")
    ax.set_ylabel("k")
    ax.set_title(f"Rate constants with {int(I.level * 100)}% intervals")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    figs["rate_constants"] = fig
    f = result.functions
    if "substrate" in f:
        fig = Figure(figsize=(8, 3.2))
        a1, a2 = fig.subplots(1, 2)
        for s, curve in zip(f["orders"], f["substrate"]):
            a1.loglog(f["grid"], curve, label=f"learned, order {s:g}")
            a1.loglog(f["grid"], f["grid"] ** s, "k:", lw=0.8)
        a1.set_xlabel("c")
        a1.set_ylabel("MLP_sub(c, s)")
        a1.set_title("Substrate function (dotted: c^s)")
        a1.legend(frameon=False, fontsize=7)
        a2.plot(f["grid"], f["node"].T, lw=0.6, alpha=0.6)
        a2.set_xlabel("c")
        a2.set_ylabel("MLP_node(c, a_i)")
        a2.set_title("Node term per metabolite")
        fig.tight_layout()
        figs["functions"] = fig
    return figs
