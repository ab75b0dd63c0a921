"""Figures and tables of a metabolism run, read from its run directory.

Every function takes the directory written by `metabolism.pipeline` (config.yaml, system.npz, learned.npz,
metrics.json, figures.npz) and returns a matplotlib Figure or a pandas DataFrame; nothing is recomputed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import yaml
from matplotlib.figure import Figure

from common.numbers import MISSING, decimals_for, fmt, fmt_column, pm, pm_decimals

if TYPE_CHECKING:
    import pandas as pd

TYPE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _color(t: int) -> str:
    return TYPE_COLORS[int(t) % len(TYPE_COLORS)]


def _npz(run_dir: str | Path, name: str) -> dict[str, np.ndarray]:
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {run_dir} a complete run directory?")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The metrics.json of a run."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The config.yaml of a run, as a dict."""
    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}


def provenance(run_dir: str | Path) -> str:
    """One line naming what produced a run: regime, size, seed, training steps, device, commit."""
    cfg = load_run_config(run_dir)
    net, sim, train = cfg.get("network", {}), cfg.get("simulation", {}), cfg.get("training", {})
    parts = [f"regime {cfg.get('regime', '?')}", f"n={net.get('n_metabolites', '?')}",
             f"m={net.get('n_reactions', '?')}", f"{sim.get('n_frames', '?')} frames",
             f"seed {cfg.get('seed', '?')}"]
    metrics_path = Path(run_dir) / "metrics.json"
    if metrics_path.is_file():
        metrics = load_metrics(run_dir)
        parts += [f"{train.get('steps', '?')} training steps", f"device {metrics.get('device', '?')}",
                  f"commit {str(metrics.get('commit', 'unknown'))[:10]}"]
    return ", ".join(parts)


def stamp(fig: Figure, run_dir: str | Path) -> Figure:
    """Write the run's provenance line in small print under the axes of `fig`, and return it."""
    fig.text(0.01, 0.005, provenance(run_dir), fontsize=8, color="0.4", ha="left", va="bottom")
    fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.2))
    return fig


def system_summary(run_dir: str | Path) -> dict[str, Any]:
    """Size, sampling and activity rank of the simulated system of a run (from system.npz)."""
    from .simulate import activity_rank

    sysd = _npz(run_dir, "system.npz")
    c = sysd["c"] if sysd["c"].ndim == 2 else sysd["c"][0]
    return {
        "n_metabolites": int(sysd["S"].shape[0]),
        "n_reactions": int(sysd["S"].shape[1]),
        "n_frames": int(c.shape[0]),
        "dt": float(sysd["dt"]),
        "activity_rank": activity_rank(c),
        "c_min": float(c.min()),
        "c_max": float(c.max()),
    }


def network_figure(run_dir: str | Path) -> Figure:
    """The stoichiometry S = P - R as a heatmap, and the degrees of the bipartite graph."""
    sysd = _npz(run_dir, "system.npz")
    S, R, P = sysd["S"], sysd["R"], sysd["P"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(8.4, 3.6), gridspec_kw={"width_ratios": [1.5, 1]})
    order = np.argsort(sysd["types"], kind="stable")
    lim = max(1.0, float(np.abs(S).max()))
    im = ax0.imshow(S[order], aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax0.set(xlabel="reaction j", ylabel="metabolite i (sorted by type)", title=r"stoichiometry $S_{ij}$")
    fig.colorbar(im, ax=ax0, fraction=0.04)
    met_degree = ((R + P) > 0).sum(1)
    n_sub, n_prod = (R > 0).sum(0), (P > 0).sum(0)
    bins = np.arange(0, max(met_degree.max(), n_sub.max(), n_prod.max()) + 2) - 0.5
    ax1.hist([met_degree, n_sub, n_prod], bins=bins,
             label=["reactions per metabolite", "substrates per reaction", "products per reaction"])
    ax1.set(xlabel="degree", ylabel="count", title="bipartite degrees")
    ax1.legend(fontsize=9)
    fig.tight_layout()
    return fig


def trajectories_figure(run_dir: str | Path, n_show: int = 6) -> Figure:
    """Concentrations of `n_show` metabolites (evenly spread over the indices) against time."""
    sysd = _npz(run_dir, "system.npz")
    c = sysd["c"] if sysd["c"].ndim == 2 else sysd["c"][0]
    t = np.arange(c.shape[0]) * float(sysd["dt"])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for i in np.linspace(0, c.shape[1] - 1, min(n_show, c.shape[1])).astype(int):
        ax.plot(t, c[:, i], lw=1.2, color=_color(sysd["types"][i]), alpha=0.85)
    ax.set(xlabel="time", ylabel=r"$c_i(t)$", title=f"{min(n_show, c.shape[1])} metabolites (colour = type)")
    fig.tight_layout()
    return fig


def rate_constants_figure(run_dir: str | Path) -> Figure:
    """Learned against true log10 k, with the line y = x and the run's R^2 and slope."""
    f = _npz(run_dir, "figures.npz")
    x, y = f["log_k_true"], f["log_k_learned"]
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    ax.scatter(x, y, s=12, alpha=0.7, edgecolor="none")
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    rk = load_metrics(run_dir).get("rate_constants", {}) if (Path(run_dir) / "metrics.json").is_file() else {}
    if rk:
        ax.set_title(f"$R^2$ = {rk['r2_log_k']:.3f}, slope = {rk['slope']:.3f}, "
                     f"outliers {rk['n_outliers']}/{rk['n_scored']}", fontsize=10)
    ax.set(xlabel=r"true $\log_{10} k_j$", ylabel=r"learned $\log_{10} k_j$")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def substrate_function_figure(run_dir: str | Path) -> Figure:
    """Learned MLP_sub(c, s) against the mass-action term c^s, one curve per stoichiometric order s."""
    f = _npz(run_dir, "figures.npz")
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    for k, s in enumerate(f["sub_orders"]):
        color = TYPE_COLORS[k % len(TYPE_COLORS)]
        ax.plot(f["sub_c"], f["sub_true"][k], "--", color=color, lw=1.5, label=f"$c^{{{int(s)}}}$ (true)")
        ax.plot(f["sub_c"], f["sub_learned"][k], color=color, lw=1.5, alpha=0.8, label=f"MLP$_{{sub}}$(c, {int(s)})")
    ax.set(xlabel="c", ylabel="substrate term", title="substrate function")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return fig


def homeostasis_figure(run_dir: str | Path) -> Figure:
    """Learned MLP_node(c, a_i) of every metabolite against -lambda_i (c - baseline_i), coloured by type."""
    f = _npz(run_dir, "figures.npz")
    types = f["types"]
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    for i in range(f["node_learned"].shape[0]):
        ax.plot(f["node_c"], f["node_learned"][i], color=_color(types[i]), lw=0.6, alpha=0.35)
    for t in np.unique(types):
        i = int(np.flatnonzero(types == t)[0])
        ax.plot(f["node_c"], f["node_true"][i], "k--", lw=1.2)
        ax.plot([], [], color=_color(t), label=f"type {int(t)} (learned)")
    ax.plot([], [], "k--", label=r"$-\lambda(c - c^{baseline})$ (true)")
    ax.set(xlabel="c", ylabel="homeostatic term", title="node function")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return fig


def embedding_figure(run_dir: str | Path) -> Figure:
    """The learned metabolite embeddings a_i, coloured by true type."""
    f = _npz(run_dir, "figures.npz")
    emb, types = f["embedding"], f["types"]
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    x, y = (emb[:, 0], emb[:, 1]) if emb.shape[1] > 1 else (np.arange(len(emb)), emb[:, 0])
    for t in np.unique(types):
        sel = types == t
        ax.scatter(x[sel], y[sel], s=16, color=_color(t), label=f"type {int(t)}")
    ax.set(xlabel="$a_{i,1}$" if emb.shape[1] > 1 else "metabolite i",
           ylabel="$a_{i,2}$" if emb.shape[1] > 1 else "$a_i$", title="embeddings")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def rollout_figure(run_dir: str | Path, n_show: int = 4) -> Figure:
    """Rollout of the learned model from an unseen initial condition against the true trajectory."""
    f = _npz(run_dir, "figures.npz")
    true, learned = f["rollout_true"], f["rollout_learned"]
    t = np.arange(true.shape[0]) * float(f["rollout_dt"])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for k, i in enumerate(np.linspace(0, true.shape[1] - 1, min(n_show, true.shape[1])).astype(int)):
        color = TYPE_COLORS[k % len(TYPE_COLORS)]
        ax.plot(t, true[:, i], color=color, lw=1.4, label="true" if k == 0 else None)
        ax.plot(t, learned[:, i], "--", color=color, lw=1.2, label="learned" if k == 0 else None)
    lo, hi = float(np.nanmin(true)), float(np.nanmax(true))
    pad = 0.25 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    finite = learned[np.isfinite(learned)]
    if finite.size < learned.size or (finite.size and (finite.max() > hi + pad or finite.min() < lo - pad)):
        ax.text(0.01, 0.98, "the learned rollout leaves the range shown", transform=ax.transAxes,
                fontsize=8, va="top", color="0.3")
    horizon = float(f["horizon_steps"])
    if 0 < horizon * float(f["rollout_dt"]) <= t[-1]:
        ax.axvline(horizon * float(f["rollout_dt"]), color="grey", ls=":", label="predictability horizon")
    ax.set(xlabel="time", ylabel="$c_i(t)$", title="rollout from an unseen initial condition")
    ax.legend(fontsize=9, loc="upper right")
    fig.tight_layout()
    return fig


METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "R² of log₁₀ k": ("rate_constants", "r2_log_k"),
    "slope of log₁₀ k": ("rate_constants", "slope"),
    "outliers (|Δ log₁₀ k| > 0.3)": ("rate_constants", "n_outliers"),
    "MLP_sub: largest rel. error": ("substrate_function", "max_rel_error"),
    "λ: rel. error, mean of types": ("homeostasis", "lambda_rel_error"),
    "baseline: abs. error, mean of types": ("homeostasis", "baseline_abs_error"),
    "rollout R²": ("rollout", "r2"),
    "rollout Pearson r": ("rollout", "pearson"),
    "horizon (frames)": ("rollout", "horizon_steps"),
    "embedding cluster accuracy": ("embedding", "cluster_accuracy"),
    "activity rank": ("system", "activity_rank"),
    "training time (s)": ("timing", "train"),
}
"""Label (with unit) -> path in metrics.json of each metric in the tables and the results JSON."""


def _metric(metrics: dict[str, Any], path: Sequence[str]) -> float:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return float("nan")
        value = value[key]
    if isinstance(value, (list, tuple)):
        return float(np.mean(value)) if len(value) else float("nan")
    return float(value) if value is not None else float("nan")


def metrics_table(run_dirs: Sequence[str | Path]):
    """One row per metric and one column per run (named by seed), plus the mean and standard deviation
    over runs when there are several. Per-type lists (homeostasis errors) are averaged over types.
    """
    import pandas as pd

    columns = {}
    for d in run_dirs:
        m = load_metrics(d)
        columns[f"seed {m.get('seed', Path(d).name)}"] = {name: _metric(m, path) for name, path in METRIC_COLUMNS.items()}
    df = pd.DataFrame(columns)
    if len(columns) > 1:
        runs = df[list(columns)]
        df["mean"], df["std"] = runs.mean(axis=1), runs.std(axis=1, ddof=1)
    return df


def metrics_display(table) -> pd.DataFrame:
    """`metrics_table` for reading: the metric as the first column, then each seed and mean ± std in one cell,
    all with the row's decimals (enough for the values and for two significant digits of the spread)."""
    import pandas as pd

    seeds = [c for c in table.columns if c not in ("mean", "std")]
    rows = []
    for label, row in table.iterrows():
        values = [row[c] for c in seeds]
        d = decimals_for(values)
        if "mean" in table:
            d = max(d, pm_decimals([row["mean"]], [row["std"]]))
        cells = [fmt(v, d) for v in values]
        if "mean" in table:
            cells.append(pm(row["mean"], row["std"], d))
        rows.append([label, *cells])
    return pd.DataFrame(rows, columns=["metric", *seeds, *(["mean ± std"] if "mean" in table else [])])


def provenance_display(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """What produced each run, one row per run: seed, system size, training steps, device and commit."""
    import pandas as pd

    rows = []
    for d in run_dirs:
        cfg = load_run_config(d)
        net, sim, train = cfg.get("network", {}), cfg.get("simulation", {}), cfg.get("training", {})
        m = load_metrics(d) if (Path(d) / "metrics.json").is_file() else {}
        rows.append({"seed": str(cfg.get("seed", "?")), "regime": f"`{cfg.get('regime', '?')}`",
                     "metabolites": str(net.get("n_metabolites", "?")), "reactions": str(net.get("n_reactions", "?")),
                     "frames": fmt(sim.get("n_frames", "?"), 0), "training steps": fmt(train.get("steps", "?"), 0),
                     "device": str(m.get("device", "?")), "commit": f"`{str(m.get('commit', '?'))[:10]}`"})
    return pd.DataFrame(rows)


FORM_TOLERANCE = 0.1
"""Relative error up to which a learned function counts as the true one."""
SEPARATED = 0.9
"""Cluster accuracy from which the embeddings count as separating the metabolite types."""


def _mean_text(entry: dict[str, Any], digits: int = 2, percent: bool = False) -> str:
    scale = 100 if percent else 1
    mean, std = entry.get("mean"), entry.get("std")
    text = pm(scale * mean, None if std is None else scale * std, digits)
    return text + ("%" if percent else "")


def recovery_findings(summary: dict[str, Any], n_types: int | None = None) -> dict[str, tuple[bool, str]]:
    """What the learned functions and embeddings achieved, from the `summarize` dict of a recovery (means ± std
    over seeds): for "substrate", "homeostasis" and "embedding", whether the model learned what it should
    (within FORM_TOLERANCE, or cluster accuracy >= SEPARATED) and a sentence saying so, or where it falls short."""
    n = len(summary["rate_constants.r2_log_k"]["values"])
    over = f"mean ± std over {n} seeds" if n > 1 else "one seed"
    sub, lam = summary["substrate_function.max_rel_error"], summary["homeostasis.lambda_rel_error"]
    base, emb = summary["homeostasis.baseline_abs_error"], summary["embedding.cluster_accuracy"]
    out: dict[str, tuple[bool, str]] = {}
    if sub["mean"] is None:
        out["substrate"] = (False, "The substrate function was not evaluated.")
    elif sub["mean"] <= FORM_TOLERANCE:
        out["substrate"] = (True, f"The learned substrate function matches $c^s$: its largest relative error is "
                                  f"{_mean_text(sub, 1, True)} ({over}).")
    else:
        out["substrate"] = (False, f"The learned substrate function falls short of $c^s$: its largest relative "
                                   f"error over the concentrations shown is {_mean_text(sub, 0, True)} ({over}; "
                                   f"{100 * FORM_TOLERANCE:.0f}% would count as a match).")
    if lam["mean"] is None:
        out["homeostasis"] = (False, "The homeostasis was not evaluated.")
    else:
        met = lam["mean"] <= FORM_TOLERANCE
        verdict = "matches the true homeostasis" if met else "does not reduce to the true linear homeostasis"
        out["homeostasis"] = (met, f"The learned node function {verdict}: the learned $\\lambda$ is off by "
                                   f"{_mean_text(lam, 0, True)} of the true value on average over the types, and "
                                   f"the baseline by {_mean_text(base, 2)} in concentration ({over}).")
    if emb["mean"] is None:
        out["embedding"] = (False, "The embedding cluster accuracy was not evaluated.")
    else:
        chance = 1 / n_types if n_types else 0.5
        met = emb["mean"] >= SEPARATED
        verdict = ("separate the metabolite types" if met else "separate the metabolite types only partly"
                   if emb["mean"] > chance + 0.1 else "do not separate the metabolite types")
        note = f"; {chance:.2f} is what a random split of {n_types} types gives" if n_types else ""
        out["embedding"] = (met, f"The embeddings {verdict}: k-means clusters of them agree with the true types "
                                 f"for {_mean_text(emb, 2)} of the metabolites ({over}{note}).")
    return out


def summarize(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """Mean, std and per-seed values of each metric over runs, for a results JSON."""
    per_seed = [load_metrics(d) for d in run_dirs]
    out: dict[str, Any] = {}
    for name, path in METRIC_COLUMNS.items():
        values = [_metric(m, path) for m in per_seed]
        finite = [v for v in values if np.isfinite(v)]
        out[".".join(path)] = {
            "label": name,
            "values": [v if np.isfinite(v) else None for v in values],
            "mean": float(np.mean(finite)) if finite else None,
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
        }
    return out


def benchmark_table(paths: Sequence[str | Path]):
    """The rows of `benchmarks/metabolism_targets.py` result files as one table, with each file's provenance."""
    import pandas as pd

    frames = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        frame = pd.DataFrame(data["rows"])
        frame["overrides"] = " ".join(data.get("overrides") or []) or "defaults"
        frame["commit"], frame["device"] = data.get("commit"), data.get("device")
        frames.append(frame)
    columns = ["regime", "seed", "r2_log_k", "n_outliers", "max_dlogk", "horizon", "rollout_r2", "stats_std",
               "lambda_rel", "baseline_abs", "cluster_acc", "wall_s", "overrides", "commit", "device"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return table[[c for c in columns if c in table]].sort_values(["regime", "seed"]).reset_index(drop=True)


def benchmark_display(table) -> dict[str, pd.DataFrame]:
    """`benchmark_table` for reading, as three tables that fit a text column: "accuracy" (rate constants and
    rollout), "functions" (per-type homeostasis errors, embeddings, wall time) and "provenance" (overrides,
    commit and device of each result file)."""
    import pandas as pd

    def per_type(values: Any, digits: int) -> str:
        if isinstance(values, (list, tuple)):
            return " / ".join(fmt(v, digits) for v in values)
        return fmt(values, digits)

    key = [f"`{r}`" for r in table["regime"]], [str(s) for s in table["seed"]]
    accuracy = pd.DataFrame({"regime": key[0], "seed": key[1]})
    for col, label, sig in (("r2_log_k", "R² of log₁₀ k", 5), ("n_outliers", "outliers", 3),
                            ("max_dlogk", "largest |Δ log₁₀ k|", 2), ("horizon", "horizon (frames)", 3),
                            ("rollout_r2", "rollout R²", 3), ("stats_std", "std rel. error", 2)):
        if col in table:
            accuracy[label] = fmt_column(table[col].tolist(), sig)
    functions = pd.DataFrame({"regime": key[0], "seed": key[1]})
    if "lambda_rel" in table:
        functions["λ rel. error per type"] = [per_type(v, 2) for v in table["lambda_rel"]]
    if "baseline_abs" in table:
        functions["baseline abs. error per type"] = [per_type(v, 2) for v in table["baseline_abs"]]
    if "cluster_acc" in table:
        functions["cluster accuracy"] = fmt_column(table["cluster_acc"].tolist(), 2)
    if "wall_s" in table:
        functions["wall time (min)"] = [MISSING if v is None or v != v else fmt(v / 60, 1) for v in table["wall_s"]]
    cols = [c for c in ("regime", "overrides", "commit", "device") if c in table]
    prov = table[cols].astype(str).groupby(cols, sort=False).size().reset_index(name="runs")
    prov["runs"] = prov["runs"].astype(str)
    prov["regime"] = [f"`{r}`" for r in prov["regime"]]
    if "overrides" in prov:
        prov["overrides"] = [f"`{o}`" if o != "defaults" else o for o in prov["overrides"]]
    if "commit" in prov:
        prov["commit"] = [f"`{c[:10]}`" for c in prov["commit"]]
    return {"accuracy": accuracy, "functions": functions, "provenance": prov}
