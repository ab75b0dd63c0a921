"""Figures of a fit to measured data: the rate constants with their intervals, and the learned functions.

Built with matplotlib's object API (``Figure``), which needs no pyplot backend: a fit writes its PNGs the same
from a script, a server or a notebook, and leaves the notebook's inline figures alone.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def _limits(k: np.ndarray, decades: float = 3.0) -> tuple[float, float]:
    """The y range of the rate-constant plot: the estimates' range widened by ``decades`` on each side, so that
    an interval the data leave open (its bound infinite, or beyond any float) is drawn to the edge."""
    pos = k[np.isfinite(k) & (k > 0)]
    if pos.size == 0:
        return 1e-6, 1e6
    return float(pos.min()) / 10 ** decades, float(pos.max()) * 10 ** decades


def fit_figures(result) -> dict:
    """{"rate_constants": Figure, "functions": Figure (GNN fits only)} of a ``fit.FitResult``."""
    figs = {}
    I = result.intervals
    order = np.argsort(result.k)
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    x = np.arange(order.size)
    det = ~I.flagged[order]
    k = result.k[order]
    bottom, top = _limits(k)
    lo = np.clip(np.nan_to_num(I.lo[order], nan=bottom, posinf=top, neginf=bottom), bottom, k)
    hi = np.clip(np.nan_to_num(I.hi[order], nan=top, posinf=top, neginf=top), k, top)
    for sel, colour, label in ((det, "tab:blue", "determined"), (~det, "tab:grey", "not determined")):
        if sel.any():
            ax.errorbar(x[sel], k[sel], yerr=[k[sel] - lo[sel], hi[sel] - k[sel]],
                        fmt="o", ms=2.5, lw=0.8, color=colour, label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
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
