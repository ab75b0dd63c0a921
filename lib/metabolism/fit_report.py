"""What the site says about fits from measurements: tables, a figure and sentences, each computed from the
committed benchmark results (``benchmarks/metabolism_measurements.py``, ``benchmarks/metabolism_scale.py``).

The targets (issue "Metabolism from measurements"): R^2 of log10 k over the determined reactions >= 0.99 at
0% and 1% noise, >= 0.95 at 5%; no outlier at 0-1%; at every noise level at least as accurate as the best
derivative-based peer and within 0.02 of the mass-action oracle on the same objective; interval coverage of
the true k between 90% and 98%; the flagged set shrinking as sampling gets denser.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from metabolism.config import RefineConfig
from metabolism.fit import FIRST_SEGMENT, resolve_first_segment

ESTIMATORS = {"gnn": "GNN, integral objective only", "mass-action": "mass-action oracle, integral objective only",
              "fd-ls": "least squares, finite differences", "spline-ls": "least squares, spline derivatives",
              "pypesto": "pyPESTO + AMICI", "sindy": "weak SINDy", "sindy-stoich": "weak SINDy, S diag(k) imposed",
              "mass-action+refine": "mass-action oracle, refined by trajectory matching",
              "gnn+refine": "GNN, k refined by trajectory matching (functions held)",
              "gnn+refine-functions": "GNN (the default fit: integral objective, then trajectory matching)"}
SHORT = {"gnn": "GNN", "mass-action": "oracle", "fd-ls": "LS, finite diff.", "spline-ls": "LS, spline",
         "pypesto": "pyPESTO", "sindy": "SINDy", "sindy-stoich": "SINDy, S diag(k)",
         "gnn+refine-functions": "GNN, refined", "mass-action+refine": "oracle, refined"}
DEFAULT = "gnn+refine-functions"
"""What ``metabolism fit`` runs by default: the GNN on the integral objective, then trajectory matching of k
with its learned functions corrected. The page's targets are scored on it."""
ORACLE = "mass-action+refine"
"""The mass-action least squares fitted the same way (integral objective, then trajectory matching): the upper
bound for a form-free estimator on the same data."""
REFINED = {DEFAULT: "gnn", ORACLE: "mass-action"}
"""Each refined estimator and the estimator on the integral objective it starts from."""
COLOURS = {"gnn": "tab:red", "mass-action": "tab:blue", "fd-ls": "tab:orange", "spline-ls": "tab:green",
           DEFAULT: "darkred", ORACLE: "navy"}
TARGET_R2 = {0.0: 0.99, 0.01: 0.99, 0.05: 0.95}
DERIVATIVE_PEERS = ("fd-ls", "spline-ls")


def load_rows(*paths: str | Path) -> pd.DataFrame:
    """The benchmark rows of the given result files that exist, as one frame (failed fits keep their error)."""
    rows, found = [], False
    for p in paths:
        p = Path(p)
        if p.exists():
            found = True
            rows += json.loads(p.read_text())["rows"]
    if not found:
        raise FileNotFoundError("none of the benchmark's result files exists: " + ", ".join(map(str, paths))
                                + " (python benchmarks/metabolism_measurements.py writes them)")
    frame = pd.DataFrame(rows)
    if "error" not in frame:
        frame["error"] = None
    return frame


def network_name(network: str) -> str:
    """A network's id as the page writes it ("ecoli_core" -> "ecoli core")."""
    return network.replace("_", " ")


def _pct(v: float) -> str:
    """A fraction as a whole percentage, "–" where there is none."""
    return "–" if not np.isfinite(v) else f"{100 * v:.0f}%"


def _gauge(rows: pd.DataFrame) -> pd.Series:
    """Each row's gauge c_ref; a row without one was fitted before the gauge was recorded, at the then only 1."""
    return (rows["c_ref"] if "c_ref" in rows else pd.Series(np.nan, index=rows.index)).fillna(1.0).astype(float)


def at_default(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per data set and estimator, the fit as it runs now where one was made: a fit that succeeded
    before one that failed, then the gauge at the data's scale (``model.c_ref=auto``) before c_ref = 1 (the
    gauge before ``auto``), then, for the default GNN fit, the default node correction
    (``refine.node_degree``) before another, then, for a refined fit, the default first stage
    (``refine.first_segment``, resolved for the row's segment) before another."""
    keys = ["network", "seed", "dt", "noise", "estimator"]
    off_degree = (rows["estimator"] == DEFAULT) & (_node_degree(rows) != default_node_degree())
    order = rows.assign(_failed=rows["error"].notna(), _fixed=_gauge(rows) == 1.0, _off=off_degree,
                        _stage=rows["estimator"].isin(list(REFINED)) & ~_default_first_stage(rows))
    order = order.sort_values(["_failed", "_fixed", "_off", "_stage"], kind="stable")
    return order.drop_duplicates(keys).drop(columns=["_failed", "_fixed", "_off", "_stage"]).sort_index()


def _default_first_stage(rows: pd.DataFrame) -> pd.Series:
    """Whether each row's first refinement stage (``first_segment``, None for one stage) is the one the default
    ``refine.first_segment`` gives its segment; rows that recorded no segment count as default."""
    if "segment" not in rows or "first_segment" not in rows:
        return pd.Series(True, index=rows.index)
    config = RefineConfig()

    def default(segment, first) -> bool:
        if pd.isna(segment):
            return True
        want = resolve_first_segment(config, int(segment))
        return (None if pd.isna(first) else int(first)) == want
    return pd.Series([default(s, f) for s, f in zip(rows["segment"], rows["first_segment"])], index=rows.index)


def _mean_sd(values: pd.Series, digits: int = 3) -> str:
    v = values.dropna().to_numpy(float)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per network, sampling interval, noise and estimator: mean over seeds of the scores, and the seeds."""
    ok = rows[rows["error"].isna()]
    keys = ["network", "dt", "noise", "estimator"]
    agg = ok.groupby(keys).agg(
        seeds=("seed", "nunique"), r2_determined=("r2_determined", "mean"),
        r2_determined_sd=("r2_determined", "std"), r2_all=("r2_all", "mean"), flagged=("flagged", "mean"),
        outliers=("outliers_determined", "sum"), coverage=("coverage_determined", "mean"),
        median_error=("median_abs_error", "mean"), seconds=("seconds", "mean"), n_reactions=("n_reactions", "first"))
    return agg.reset_index()


def recovery_table(rows: pd.DataFrame, estimators=("gnn", "mass-action", "fd-ls", "spline-ls")) -> pd.DataFrame:
    """R^2 of log10 k over the determined reactions (mean ± sd over seeds) and the flagged count, one row per
    network, sampling interval and noise, one column per estimator."""
    ok = rows[rows["error"].isna()]
    out = []
    for (net, dt, noise), g in ok.groupby(["network", "dt", "noise"]):
        row = {"network": network_name(net), "every": f"{dt:g}", "noise (%)": f"{100 * noise:.0f}"}
        for est in estimators:
            e = g[g["estimator"] == est]
            row[SHORT[est]] = (f"{_mean_sd(e['r2_determined'])} ({e['flagged'].mean():.0f})" if len(e) else "–")
        out.append(row)
    return pd.DataFrame(out)


def targets(rows: pd.DataFrame, estimator: str = DEFAULT, oracle: str = ORACLE) -> pd.DataFrame:
    """Every target per condition for one estimator: the value measured and whether it is met, beside
    ``oracle`` (the mass-action form fitted the same way) and the better derivative-based least squares. The
    others are averaged over the seeds that ``estimator`` ran in that condition, so that every comparison is
    on the same data sets."""
    ok = rows[rows["error"].isna()]
    cond = ["network", "dt", "noise", "seed"]
    ran = ok.loc[ok["estimator"] == estimator, cond].drop_duplicates()
    s = summary(ok.merge(ran, on=cond))
    out = []
    for (net, dt, noise), g in s.groupby(["network", "dt", "noise"]):
        mine = g[g["estimator"] == estimator]
        if mine.empty:
            continue
        me = mine.iloc[0]
        peer = g[g["estimator"] == oracle]
        peers = g[g["estimator"].isin(DERIVATIVE_PEERS)]
        best_peer = peers["r2_determined"].max() if len(peers) else np.nan
        target = TARGET_R2.get(noise)
        row = {"network": net, "dt": dt, "noise": noise, "seeds": int(me["seeds"]), "r2": me["r2_determined"],
               "r2_target": target, "r2_met": bool(target is not None and me["r2_determined"] >= target),
               "outliers": int(me["outliers"]), "outliers_met": bool(noise > 0.01 or me["outliers"] == 0),
               "best_derivative_peer_r2": best_peer,
               "beats_derivative_peers": bool(np.isnan(best_peer) or me["r2_determined"] >= best_peer),
               "oracle_r2": peer["r2_determined"].iloc[0] if len(peer) else np.nan,
               "coverage": me["coverage"],
               "coverage_met": bool(0.90 <= me["coverage"] <= 0.98) if noise > 0 else None,
               "flagged": me["flagged"]}
        row["within_oracle"] = bool(np.isnan(row["oracle_r2"]) or row["oracle_r2"] - row["r2"] <= 0.02)
        out.append(row)
    return pd.DataFrame(out)


def flagged_shrinks(rows: pd.DataFrame, estimator: str = DEFAULT) -> pd.DataFrame:
    """Flagged reactions at sampling 1.0 against 0.1, per network and noise (the set must shrink)."""
    s = summary(rows)
    s = s[s["estimator"] == estimator]
    out = []
    for (net, noise), g in s.groupby(["network", "noise"]):
        by_dt = dict(zip(g["dt"], g["flagged"]))
        if 0.1 in by_dt and 1.0 in by_dt:
            out.append({"network": net, "noise": noise, "flagged_dt_1.0": by_dt[1.0], "flagged_dt_0.1": by_dt[0.1],
                        "shrinks": by_dt[0.1] <= by_dt[1.0]})
    return pd.DataFrame(out)


def sentences(rows: pd.DataFrame, estimator: str = DEFAULT, oracle: str = ORACLE) -> list[str]:
    """The findings in words, each computed from the results (nothing here is typed by hand)."""
    t = targets(rows, estimator, oracle)
    if t.empty:
        return ["No benchmark results are committed yet."]
    out = []
    scored = t[t["r2_target"].notna()]
    met = scored[scored["r2_met"]]
    name = ESTIMATORS[estimator]
    out.append(f"The {name} meets the accuracy target (R² of log10 k over the determined reactions at least 0.99 "
               f"at 0–1% noise, 0.95 at 5%) in {len(met)} of {len(scored)} conditions"
               + ("." if len(met) == len(scored) else "; it falls short in "
                  + ", ".join(f"{network_name(r.network)} sampled every {r.dt:g} at {r.noise:.0%} noise "
                              f"(R² {r.r2:.3f})" for r in scored[~scored["r2_met"]].itertuples()) + "."))
    within = t[t["within_oracle"]]
    out.append(f"It is within 0.02 of the {ESTIMATORS[oracle]}, in {len(within)} of {len(t)} conditions, and at "
               f"least as accurate as the better derivative-based least squares in "
               f"{int(t['beats_derivative_peers'].sum())} of {len(t)}.")
    noisy = t[(t["noise"] > 0) & t["coverage"].notna()]
    if len(noisy):
        cov = noisy["coverage"]
        out.append(f"With noise, its 95% intervals cover the true k in {cov.min():.0%} to {cov.max():.0%} of the "
                   f"determined reactions (target 90–98%; met in {int(noisy['coverage_met'].sum())} of "
                   f"{len(noisy)} conditions; without noise the intervals shrink to the fit's numerical error, "
                   "which they are not built to cover).")
    f = flagged_shrinks(rows, estimator)
    if len(f):
        out.append(f"Denser sampling determines more reactions: the flagged set is no larger at 0.1 than at 1.0 "
                   f"in {int(f['shrinks'].sum())} of {len(f)} network and noise conditions.")
    return out


def peers_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The estimators on the peers' subset of conditions: accuracy and CPU seconds side by side (none for a fit
    resumed across processes, whose cost is not whole)."""
    ok = rows[rows["error"].isna()]
    peer_keys = ok[ok["estimator"] == "pypesto"][["network", "seed", "dt", "noise"]].drop_duplicates()
    if peer_keys.empty:
        peer_keys = ok[ok["estimator"].isin(["sindy", "sindy-stoich"])][["network", "seed", "dt", "noise"]]
        peer_keys = peer_keys.drop_duplicates()
    sub = ok.merge(peer_keys, on=["network", "seed", "dt", "noise"])
    out = []
    for r in sub.itertuples():
        out.append({"network": network_name(r.network), "noise (%)": round(100 * r.noise),
                    "sampled every": r.dt, "estimator": ESTIMATORS.get(r.estimator, r.estimator),
                    "R² log10 k (determined)": r.r2_determined, "flagged": r.flagged,
                    "outliers": r.outliers_determined,
                    "CPU time (s)": r.cpu_seconds if _complete_cost(r) else np.nan})
    return pd.DataFrame(out)


def refinement_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per network, sampling interval and noise: each refined estimator's R^2 over the determined reactions
    and interval coverage on the integral objective alone (``*_integral``) and refined, as means over the seeds
    both ran, and the CPU seconds of a whole refined fit (mean over the fits whose cost is whole)."""
    ok = rows[rows["error"].isna()]
    out = []
    for (net, dt, noise), g in ok.groupby(["network", "dt", "noise"]):
        row: dict = {"network": net, "dt": dt, "noise": noise}
        seeds: set = set()
        for refined, base in REFINED.items():
            r = g[g["estimator"] == refined]
            b = g[(g["estimator"] == base) & g["seed"].isin(r["seed"])]
            r = r[r["seed"].isin(b["seed"])]
            seeds |= set(r["seed"])
            cost = [x.cpu_seconds for x in r.itertuples() if _complete_cost(x)]
            row.update({f"{base}_r2_integral": b["r2_determined"].mean(), f"{base}_r2": r["r2_determined"].mean(),
                        f"{base}_coverage_integral": b["coverage_determined"].mean(),
                        f"{base}_coverage": r["coverage_determined"].mean(),
                        f"{base}_cpu_s": float(np.mean(cost)) if cost else np.nan, f"{base}_seeds": len(r)})
        if seeds:
            out.append({**row, "seeds": ", ".join(map(str, sorted(seeds)))})
    return pd.DataFrame(out)


def refinement_sentence(rows: pd.DataFrame) -> str:
    """Where trajectory matching helps: per refined estimator, in how many conditions it is more accurate than
    on the integral objective alone (same seeds), how many of its coverages are in 90-98%, at what cost."""
    t = refinement_table(rows)
    if t.empty:
        return "No trajectory refinement has been run yet."
    parts = []
    for refined, base in REFINED.items():
        both = t[t[f"{base}_seeds"] > 0]
        if both.empty:
            continue
        better = int((both[f"{base}_r2"] > both[f"{base}_r2_integral"]).sum())
        in_band = int(both[f"{base}_coverage"].between(0.90, 0.98).sum())
        in_band_plain = int(both[f"{base}_coverage_integral"].between(0.90, 0.98).sum())
        name = "GNN" if base == "gnn" else "mass-action oracle"
        parts.append(f"Refined by trajectory matching, the {name} is more accurate than on the integral objective "
                     f"alone in {better} of {len(both)} conditions, and its intervals cover the true k at 90–98% in "
                     f"{in_band} of {len(both)} (on the integral objective alone: {in_band_plain}).")
    return " ".join(parts)


def gauge_table(rows: pd.DataFrame, estimator: str = DEFAULT) -> pd.DataFrame:
    """The GNN's gauge c_ref at 1 against at the data's geometric mean (``model.c_ref=auto``, the fit's default
    since the gauge benchmark), on the data sets where both ran: R^2 over the determined reactions, coverage,
    flagged count and median |delta log10 k| of each. A row without ``c_ref`` was fitted before the gauge was
    recorded, at the then only gauge 1."""
    ok = rows[(rows["error"].isna()) & (rows["estimator"] == estimator)].copy()
    if ok.empty:
        return pd.DataFrame()
    ok["gauge"] = _gauge(ok)
    ok["fixed"] = ok["gauge"] == 1.0
    scaled = ok[~ok["fixed"]].drop(columns="c_ref", errors="ignore").rename(columns={"gauge": "c_ref"})
    return _paired(ok[ok["fixed"]], scaled, ("1", "data"), ("c_ref",))


DATA_SET = ["network", "seed", "dt", "noise"]
SCORES = ("r2_determined", "coverage_determined", "flagged", "median_abs_error")


def _paired(first: pd.DataFrame, second: pd.DataFrame, names: tuple[str, str],
            carry: tuple[str, ...] = ()) -> pd.DataFrame:
    """The scores of two fits of the same data sets side by side, one row per data set fitted both ways (the
    first row of each): the data set, the ``carry`` columns of the second fit, then ``{score}_{name}``."""
    a, b = (f.drop_duplicates(DATA_SET).set_index(DATA_SET) for f in (first, second))
    return pd.DataFrame([{**dict(zip(DATA_SET, key)), **{c: b.loc[key][c] for c in carry},
                          **{f"{what}_{name}": r[what] for name, r in zip(names, (a.loc[key], b.loc[key]))
                             for what in SCORES}}
                         for key in sorted(a.index.intersection(b.index))])


def default_node_degree() -> int:
    """The degree of the node correction that ``metabolism fit`` uses by default (``refine.node_degree``)."""
    return RefineConfig().node_degree


def _node_degree(rows: pd.DataFrame) -> pd.Series:
    """Each row's ``refine.node_degree``: as the benchmark recorded it (``node_degree``), else its override,
    else 1 (a row from before the degree was recorded was fitted at the then default, 1)."""
    def degree(overrides) -> int:
        for o in overrides if isinstance(overrides, list) else []:
            if o.startswith("refine.node_degree="):
                return int(o.partition("=")[2])
        return 1
    parsed = (rows["overrides"] if "overrides" in rows else pd.Series(None, index=rows.index)).map(degree)
    recorded = rows["node_degree"] if "node_degree" in rows else pd.Series(np.nan, index=rows.index)
    return recorded.fillna(parsed).astype(int)


def _pair_counts(table: pd.DataFrame, names: tuple[str, str]) -> tuple[int, int, dict[str, int]]:
    """Over a ``_paired`` table: the data sets, on how many the second fit is the more accurate (R^2 over the
    determined reactions), and per fit on how many its intervals cover the true k at 90-98%."""
    a, b = names
    better = int((table[f"r2_determined_{b}"] > table[f"r2_determined_{a}"]).sum())
    return len(table), better, {g: int(table[f"coverage_determined_{g}"].between(0.90, 0.98).sum()) for g in names}


def curvature_table(rows: pd.DataFrame, estimator: str = DEFAULT) -> pd.DataFrame:
    """The GNN fit with node corrections alpha + beta c against the same fit with the node terms' curvature
    (``refine.node_degree`` > 1), both at the gauge at the data's scale (a fit at c_ref = 1 differs in more than
    the curvature), on the data sets where both ran; columns ``{score}_line`` and ``{score}_curved`` and the
    degree."""
    ok = rows[rows["error"].isna() & (rows["estimator"] == estimator) & (_gauge(rows) != 1.0)]
    ok = ok.assign(degree=_node_degree(ok))
    return _paired(ok[ok["degree"] == 1], ok[ok["degree"] > 1], ("line", "curved"), ("degree",))


def curvature_sentence(table: pd.DataFrame) -> str:
    """What the node curvature did, counted over the data sets fitted both ways."""
    if table.empty:
        return "The refinement has not yet been run with the node terms' curvature on the data of the tables above."
    n, better, band = _pair_counts(table, ("line", "curved"))
    degrees = "/".join(str(d) for d in sorted(set(table["degree"])))
    return (f"With the node terms' curvature (Legendre polynomials up to degree {degrees} over each metabolite's "
            f"measured range, `refine.node_degree`) the refined GNN is more accurate on {better} of the {n} data "
            f"sets fitted both ways (R² of log10 k over the determined reactions, median "
            f"{table['r2_determined_line'].median():.3f} with the line and "
            f"{table['r2_determined_curved'].median():.3f} with the curvature: a median, since one data set where "
            f"both fail would dominate a mean), with a mean coverage of "
            f"{table['coverage_determined_line'].mean():.0%} and "
            f"{table['coverage_determined_curved'].mean():.0%}; its intervals cover the true k at 90–98% in "
            f"{band['curved']} of {n} (with the line: {band['line']}).")


def curvature_display(table: pd.DataFrame) -> pd.DataFrame:
    """``curvature_table`` as display strings: each score as the line → with the curvature."""
    if table.empty:
        return pd.DataFrame([{"network": "no data set has been fitted with the node curvature yet"}])
    return _pair_display(table, ("line", "curved"), {"degree": lambda r: f"{r['degree']:.0f}"})


def first_stage_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Each refined estimator in one stage against with the short first stage that ``refine.first_segment=auto``
    adds where the segment is 20 intervals or shorter (sparse samples), the GNN at the gauge at the data's scale
    and the default node correction, on the data sets fitted both ways: columns ``{score}_one`` and
    ``{score}_two``, the estimator and the two stages' segments."""
    ok = rows[rows["error"].isna() & rows["estimator"].isin(list(REFINED))]
    ok = ok[(ok["estimator"] != DEFAULT) | ((_gauge(ok) != 1.0) & (_node_degree(ok) == default_node_degree()))]
    if ok.empty or "first_segment" not in ok or "segment" not in ok:
        return pd.DataFrame()
    short = ok["segment"] <= FIRST_SEGMENT
    one, two = ok[short & ok["first_segment"].isna()], ok[short & ok["first_segment"].notna()]
    parts = [_paired(one[one["estimator"] == e], two[two["estimator"] == e], ("one", "two"),
                     ("first_segment", "segment")).assign(estimator=e) for e in REFINED]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def first_stage_sentence(table: pd.DataFrame) -> str:
    """What the short first stage did on sparse samples, per refined estimator, counted over the data sets
    fitted both ways."""
    if table.empty:
        return "No refinement has yet been run both in one stage and with the short first stage on the same data."
    parts = []
    for est in REFINED:
        t = table[table["estimator"] == est]
        if t.empty:
            continue
        n, better, band = _pair_counts(t, ("one", "two"))
        name = "refined GNN" if est == DEFAULT else "refined oracle"
        score = "R² of log10 k over the determined reactions" if not parts else "R²"
        parts.append(f"the {name} is more accurate on {better} of {n} data sets (median {score} "
                     f"{t['r2_determined_one'].median():.3f} in one stage and "
                     f"{t['r2_determined_two'].median():.3f} in two; flagged reactions "
                     f"{t['flagged_one'].sum():.0f} and {t['flagged_two'].sum():.0f} in all), its intervals "
                     f"covering the true k at 90–98% in {band['two']} of {n} (in one stage: {band['one']})")
    where = ", ".join(sorted({f"{network_name(r.network)} sampled every {r.dt:g}" for r in table.itertuples()}))
    segs = "–".join(f"{v:.0f}" for v in sorted({table["segment"].min(), table["segment"].max()}))
    firsts = "–".join(f"{v:.0f}" for v in sorted({table["first_segment"].min(), table["first_segment"].max()}))
    return (f"Where the samples are sparse ({where}: segments of {segs} intervals), a first stage on {firsts}-"
            f"interval segments before them: " + "; ".join(parts) + ".")


def first_stage_count(rows: pd.DataFrame) -> str:
    """How many refined fits on sparse samples (segment of at most 20 intervals) in the tables above ran the
    short first stage that the fit now runs there, and how many one stage (fitted before it), per estimator."""
    ok = rows[rows["error"].isna() & rows["estimator"].isin(list(REFINED))]
    if ok.empty or "segment" not in ok or "first_segment" not in ok:
        return ""
    ok = ok[ok["segment"] <= FIRST_SEGMENT]
    if ok.empty:
        return ""
    one = ok["first_segment"].isna()
    counts = {"GNN" if e == DEFAULT else "oracle": (int((one & (ok["estimator"] == e)).sum()),
                                                   int((ok["estimator"] == e).sum()))
              for e in REFINED if (ok["estimator"] == e).any()}
    if not one.any():
        return (f"All the refined fits on sparse samples in the tables above ("
                + " and ".join(f"{n} {name}" for name, (_, n) in counts.items()) + ") ran the first stage.")
    parts = [f"{k} of the {n} {name} fits" for name, (k, n) in counts.items()]
    return (f"Of the refined fits on sparse samples in the tables above, {' and '.join(parts)} were made in one "
            f"stage, before the first stage followed the segment.")


def first_stage_display(table: pd.DataFrame) -> pd.DataFrame:
    """``first_stage_table`` as display strings: each score as one stage → two stages."""
    if table.empty:
        return pd.DataFrame([{"network": "no data set has been refined both ways yet"}])
    return _pair_display(table, ("one", "two"), {
        "estimator": lambda r: SHORT[r["estimator"]],
        "segments": lambda r: f"{r['first_segment']:.0f}, {r['segment']:.0f}"})


def _pair_display(table: pd.DataFrame, names: tuple[str, str], extra: dict) -> pd.DataFrame:
    """A ``_paired`` table as display strings, each score as first → second, after the data set and ``extra``
    (column -> the cell of a row)."""
    from common.numbers import fmt

    a, b = names
    return pd.DataFrame([{
        "network": network_name(r["network"]), "seed": str(r["seed"]), "every": f"{r['dt']:g}",
        "noise (%)": f"{100 * r['noise']:.0f}", **{k: f(r) for k, f in extra.items()},
        "R²": f"{fmt(r[f'r2_determined_{a}'], 4)} → {fmt(r[f'r2_determined_{b}'], 4)}",
        "coverage": f"{_pct(r[f'coverage_determined_{a}'])} → {_pct(r[f'coverage_determined_{b}'])}",
        "flagged": f"{r[f'flagged_{a}']:.0f} → {r[f'flagged_{b}']:.0f}",
        "median |Δlog₁₀ k|": f"{fmt(r[f'median_abs_error_{a}'], 3)} → {fmt(r[f'median_abs_error_{b}'], 3)}"}
        for r in table.to_dict("records")])


def gauge_sentence(table: pd.DataFrame) -> str:
    """What moving the gauge into the data did, counted over the data sets where both gauges ran."""
    if table.empty:
        return "The GNN has not yet been run at both gauges on the same data."
    n, better, band = _pair_counts(table, ("1", "data"))
    noisy = table[table["noise"] > 0]
    cover = (f"; its intervals cover the true k at 90–98% in {band['data']} of {n} (at c_ref = 1: {band['1']}), "
             f"a mean coverage on the noisy data of {noisy['coverage_determined_1'].mean():.0%} at c_ref = 1 and "
             f"{noisy['coverage_determined_data'].mean():.0%} at the data's scale") if len(noisy) else ""
    lo, hi = table["c_ref"].min(), table["c_ref"].max()
    where = f"c_ref {lo:.2g}" if f"{lo:.2g}" == f"{hi:.2g}" else f"c_ref from {lo:.2g} to {hi:.2g}"
    return (f"With its gauge at the data's geometric mean concentration ({where}) instead of 1, the default GNN "
            f"fit is more "
            f"accurate on {better} of the {n} data sets where both ran (R² of log10 k over the determined reactions, "
            f"mean {table['r2_determined_1'].mean():.3f} at c_ref = 1 and {table['r2_determined_data'].mean():.3f} at "
            f"the data's scale){cover}.")


def fit_count(rows: pd.DataFrame) -> str:
    """How the GNN fits of the benchmark tables were made: at which gauge (rows without ``c_ref``: at 1) and,
    at the data's scale, with which node correction; and which of these is the fit as it runs now."""
    gnn = rows[(rows["error"].isna()) & rows["estimator"].isin(["gnn", DEFAULT])]
    if gnn.empty:
        return ""
    fixed = _gauge(gnn) == 1.0
    degree = _node_degree(gnn).where(gnn["estimator"] == DEFAULT, 1)
    parts = [f"{int(fixed.sum())} were made at c_ref = 1"]
    for d in sorted(set(degree[~fixed]) | {1}):
        how = "node corrections α + β c" if d == 1 else f"the node terms' curvature up to degree {d}"
        parts.append(f"{int((~fixed & (degree == d)).sum())} at the data's scale with {how}")
    now = default_node_degree()
    return (f"Of the {len(gnn)} GNN fits in the benchmark tables above, {', '.join(parts[:-1])} and {parts[-1]}; "
            f"`metabolism fit` now fits at the data's scale with "
            f"{'node corrections α + β c' if now == 1 else f'the curvature up to degree {now}'}.")


def gauge_display(table: pd.DataFrame) -> pd.DataFrame:
    """``gauge_table`` as display strings: each score as c_ref = 1 → at the data's scale."""
    from common.numbers import fmt

    if table.empty:
        return pd.DataFrame([{"network": "no data set has been fitted at both gauges yet"}])
    return _pair_display(table, ("1", "data"), {"c_ref": lambda r: fmt(r["c_ref"], 2)})


def _complete_cost(row) -> bool:
    """Whether a row's CPU seconds are the whole fit's: the benchmark says so (``cpu_whole``), or the fit was
    not resumed from an earlier process's checkpoint (older rows without the flag: training wall time beyond
    the row's own wall time)."""
    whole = getattr(row, "cpu_whole", None)
    if isinstance(whole, (bool, np.bool_)) and whole:
        return True
    resumed = getattr(row, "resumed", None)
    if isinstance(resumed, (bool, np.bool_)):
        return not resumed
    training = getattr(row, "training_seconds", None)
    return training is None or not np.isfinite(training) or training <= row.seconds + 1.0


def speed_ratio(rows: pd.DataFrame, estimator: str = DEFAULT) -> dict | None:
    """pyPESTO's CPU seconds over the GNN's (``estimator``), and both accuracies, on the same data (one run
    each; a GNN fit without a whole cost is left out)."""
    ok = rows[rows["error"].isna()]
    p = ok[ok["estimator"] == "pypesto"]
    if p.empty:
        return None
    out = []
    for r in p.itertuples():
        g = ok[(ok["network"] == r.network) & (ok["seed"] == r.seed) & (ok["dt"] == r.dt) & (ok["noise"] == r.noise)
               & (ok["estimator"] == estimator)]
        g = [x for x in g.itertuples() if _complete_cost(x)]
        if g:
            starts, asked = getattr(r, "starts", None), getattr(r, "starts_asked", None)
            out.append({"noise": r.noise, "ratio": r.cpu_seconds / g[0].cpu_seconds, "pypesto_r2": r.r2_all,
                        "pypesto_cpu_s": r.cpu_seconds, "gnn_cpu_s": g[0].cpu_seconds,
                        "starts": None if starts is None or pd.isna(starts) else int(starts),
                        "starts_asked": None if asked is None or pd.isna(asked) else int(asked),
                        "gnn_r2": g[0].r2_determined, "gnn_r2_all": g[0].r2_all})
    return {"conditions": out} if out else None


def scale_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The scaling benchmark's rows and its power laws (empty when it has not run)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(), {}
    data = json.loads(path.read_text())
    frame = pd.DataFrame([r for r in data["rows"] if "error" not in r])
    return frame, data.get("power_laws_in_reactions", {})


def recovery_figure(rows: pd.DataFrame):
    """R^2 of log10 k (determined reactions) against noise, one panel per network and sampling interval."""
    import matplotlib.pyplot as plt

    s = summary(rows)
    networks, dts = sorted(set(s["network"])) or ["none"], sorted(set(s["dt"])) or [0.1]
    fig, axes = plt.subplots(len(networks), len(dts), figsize=(3.2 * len(dts), 2.5 * len(networks)), sharey=True,
                             squeeze=False)
    for r, net in enumerate(networks):
        for c, dt in enumerate(dts):
            ax = axes[r][c]
            g = s[(s["network"] == net) & (s["dt"] == dt)]
            for est in (DEFAULT, ORACLE, "gnn", "mass-action", "fd-ls", "spline-ls"):
                e = g[g["estimator"] == est].sort_values("noise")
                if len(e):
                    ax.plot(100 * e["noise"], e["r2_determined"].clip(lower=0), marker="o", ms=3, label=SHORT[est],
                            color=COLOURS[est], ls="-" if est in REFINED else "--")
            ax.set_title(f"{network_name(net)}, sampled every {dt:g}", fontsize=9)
            ax.set_ylim(0, 1.02)
            ax.axhline(0.95, color="grey", lw=0.5, ls=":")
            if r == len(networks) - 1:
                ax.set_xlabel("noise (%)")
            if c == 0:
                ax.set_ylabel("R² (determined)")
    legend = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    handles, labels = list(legend.values()), list(legend)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # the legend below the panels, where it hides no curve
    fig.legend(handles, labels, frameon=False, fontsize=7, loc="lower center", ncol=max(1, len(labels)))
    return fig


def example(network: str, seed: int, noise: float, dt: float, n_experiments: int, t_end: float,
            work_dir: str | Path, overrides: list[str] | None = None, progress: bool = False) -> dict:
    """One data set of the benchmark's design, fitted by the GNN as ``fit`` runs it by default, the mass-action
    oracle fitted the same way, the GNN on the integral objective alone and the finite-difference least
    squares: their k with intervals and scores (the notebook's worked example)."""
    from . import massaction as ma
    from . import weakform as wfm
    from .config import load_config, load_fit_config
    from .evaluate import r2_identity
    from .fit import K_FLOOR, fit_data
    from .importers import load_network
    from .network import generate_network
    from .synthetic import draw_kinetics, make_problem

    if network.startswith("regime:"):
        cfg = load_config(regime=network[len("regime:"):], seed=seed)
        net, report = generate_network(cfg.network, seed), None
    else:
        stoich, report = load_network(network)
        net = draw_kinetics(stoich, seed)
    pb = make_problem(net, n_experiments, t_end, dt, noise, seed=seed)
    out: dict = {"network": network, "seed": seed, "noise": noise, "dt": dt, "n_experiments": n_experiments,
                 "t_end": t_end, "n_metabolites": net.n_metabolites, "n_reactions": net.n_reactions,
                 "k_true": net.k, "fits": {}}
    if report is not None:
        out["import"] = report.counts()
    for est in (DEFAULT, ORACLE, "gnn"):
        base, _, refine = est.partition("+")
        over = [f"estimator={base}"] + ([] if refine else ["refine.enabled=false"])
        res = fit_data(net, pb.data, load_fit_config(overrides=[*over, *(overrides or [])]),
                       out=Path(work_dir) / est, progress=progress, import_report=report)
        out["fits"][est] = {"k": res.k, "lo": res.intervals.lo, "hi": res.intervals.hi,
                            "flagged": res.intervals.flagged, "seconds": sum(res.report["timing"].values()),
                            "device": res.report["device"], "commit": res.report["commit"]}
    c, d = wfm.finite_differences(pb.data)
    lin = ma.fit_linear(net, ma.derivative_design(net, c, d))
    out["fits"]["fd-ls"] = {"k": np.maximum(lin.k, K_FLOOR), "lo": lin.intervals.lo, "hi": lin.intervals.hi,
                            "flagged": lin.intervals.flagged | (lin.k <= 0), "seconds": None}
    lt = np.log10(net.k)
    for est, f in out["fits"].items():
        ll = np.log10(np.maximum(f["k"], K_FLOOR))
        det = ~f["flagged"]
        f["r2_determined"] = r2_identity(lt[det], ll[det]) if det.sum() > 2 else None
        f["r2_all"] = r2_identity(lt, ll)
        f["outliers"] = int((np.abs(ll - lt)[det] > 0.3).sum())
        f["coverage"] = float(((net.k >= f["lo"]) & (net.k <= f["hi"]))[det].mean()) if det.any() else None
    return out


def example_table(ex: dict) -> pd.DataFrame:
    """The example's estimators side by side (display strings)."""
    from common.numbers import fmt

    rows = []
    for est, f in ex["fits"].items():
        rows.append({"estimator": ESTIMATORS[est], "R² log10 k (determined)": fmt(f["r2_determined"], 4),
                     "R² (all)": fmt(f["r2_all"], 3), "flagged": str(int(f["flagged"].sum())),
                     "outliers": str(f["outliers"]),
                     "95% coverage": "–" if f["coverage"] is None else f"{100 * f['coverage']:.0f}%",
                     "wall time (s)": "–" if f["seconds"] is None else fmt(f["seconds"], 0)})
    return pd.DataFrame(rows)


def example_figure(ex: dict):
    """Learned against true log10 k with the 95% intervals, one panel per estimator, two panels a row (so that
    the figure fits the text column at its own size)."""
    import matplotlib.pyplot as plt

    fits = ex["fits"]
    cols = min(2, len(fits))
    rows = -(-len(fits) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.5 * rows), sharex=True, sharey=True, squeeze=False)
    lt = np.log10(ex["k_true"])
    for ax in axes.flat[len(fits):]:
        ax.set_visible(False)
    for i, (ax, (est, f)) in enumerate(zip(axes.flat, fits.items())):
        ll = np.log10(f["k"])
        lo, hi = np.log10(np.maximum(f["lo"], 1e-12)), np.log10(np.maximum(f["hi"], 1e-12))
        det = ~f["flagged"]
        ax.errorbar(lt[det], ll[det], yerr=[ll[det] - lo[det], hi[det] - ll[det]], fmt="o", ms=2.5, lw=0.6,
                    label="determined")
        if (~det).any():
            ax.plot(lt[~det], np.clip(ll[~det], lt.min() - 1, lt.max() + 1), "x", ms=3, color="grey",
                    label="flagged")
        span = [lt.min() - 0.2, lt.max() + 0.2]
        ax.plot(span, span, "k:", lw=0.8)
        ax.set_title({**SHORT, "gnn": "GNN, integral only"}[est], fontsize=9)
        if i >= len(fits) - cols:
            ax.set_xlabel("true log10 k")
        if i % cols == 0:
            ax.set_ylabel("estimated log10 k")
        ax.set_ylim(lt.min() - 1, lt.max() + 1)
    axes.flat[0].legend(frameon=False, fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def targets_display(t: pd.DataFrame) -> pd.DataFrame:
    """``targets`` as display strings, one row per condition (outliers: summed over the seeds)."""
    from common.numbers import fmt

    def target(r) -> str:
        if r.r2_target is None or np.isnan(r.r2_target):
            return "–"
        return f"≥ {r.r2_target:.2f}: " + ("met" if r.r2_met else "**not met**")

    columns = ["network", "every", "noise (%)", "seeds", "GNN R²", "target", "outliers", "oracle R²", "best LS R²",
               "coverage", "flagged"]
    if t.empty:
        return pd.DataFrame([{c: ("–" if c != "network" else "no GNN results yet") for c in columns}])
    return pd.DataFrame([{
        "network": network_name(r.network), "every": f"{r.dt:g}", "noise (%)": f"{100 * r.noise:.0f}",
        "seeds": str(r.seeds), "GNN R²": fmt(r.r2, 3), "target": target(r),
        "outliers": str(r.outliers) + ("" if r.outliers_met else " **(target 0)**"),
        "oracle R²": fmt(r.oracle_r2, 3) + ("" if r.within_oracle else " **(> 0.02 better)**"),
        "best LS R²": fmt(r.best_derivative_peer_r2, 3) + ("" if r.beats_derivative_peers else " **(better)**"),
        "coverage": "–" if np.isnan(r.coverage) else f"{100 * r.coverage:.0f}%", "flagged": fmt(r.flagged, 0)}
        for r in t.itertuples()])


def scale_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The scaling benchmark as display strings."""
    from common.numbers import fmt

    if frame.empty:
        return frame
    return pd.DataFrame([{
        "metabolites": fmt(r.n_metabolites, 0), "reactions": fmt(r.n_reactions, 0),
        "simulate (s)": fmt(r.simulate_s, 1),
        "objective (s)": fmt(r.objective_s, 1), "mass-action fit (s)": fmt(r.mass_action_s, 1),
        "GNN step (s)": fmt(r.gnn_step_s, 3), "GNN fit (min, extrapolated)": fmt(r.gnn_fit_s_extrapolated / 60, 1),
        "peak memory (GB)": fmt(r.peak_mb / 1024, 2)} for r in frame.itertuples()])


def scale_sentence(frame: pd.DataFrame, laws: dict) -> str:
    """How the cost grows, and what the genome-scale fit costs, from the measured rows and power laws."""
    if frame.empty:
        return "The scaling benchmark has not run yet."
    big = frame.sort_values("n_reactions").iloc[-1]
    text = (f"At the largest size measured ({int(big.n_metabolites):,} metabolites, {int(big.n_reactions):,} "
            f"reactions) one "
            f"GNN training step takes {big.gnn_step_s:.2f} s on one CPU thread, so a fit with the default "
            f"budget takes about {big.gnn_fit_s_extrapolated / 60:.0f} min; the mass-action least squares "
            f"takes {big.mass_action_s:.1f} s, and the process peaks at {big.peak_mb / 1024:.1f} GB.")
    if "gnn_step_s" in laws:
        text += (f" Over {len(frame)} sizes the step time grows as (reactions)^{laws['gnn_step_s']['exponent']:.2f}"
                 f", the mass-action least squares as (reactions)^{laws['mass_action_s']['exponent']:.2f}"
                 f" and the peak memory as (reactions)^{laws['peak_mb']['exponent']:.2f}.")
    return text


def peers_display(table: pd.DataFrame) -> pd.DataFrame:
    """``peers_table`` as display strings."""
    from common.numbers import fmt

    if table.empty:
        return table
    out = table.copy()
    out["R² log10 k (determined)"] = [fmt(v, 3) for v in table["R² log10 k (determined)"]]
    out["CPU time (s)"] = [fmt(v, 0) if np.isfinite(v) else "–" for v in table["CPU time (s)"]]
    for col in ("flagged", "outliers", "noise (%)"):
        out[col] = [fmt(v, 0) for v in table[col]]
    out["sampled every"] = [f"{v:g}" for v in table["sampled every"]]
    return out


def refinement_display(table: pd.DataFrame) -> pd.DataFrame:
    """``refinement_table`` as display strings: each score as integral objective -> refined, the seeds as a
    count (lay out with ``refinement_layout``)."""
    from common.numbers import fmt

    if table.empty:
        return pd.DataFrame([{"network": "no refinement results yet"}])

    out = []
    for r in table.to_dict("records"):
        row = {"network": network_name(r["network"]), "every": f"{r['dt']:g}",
               "noise (%)": f"{100 * r['noise']:.0f}", "seeds": str(len(r["seeds"].split(", ")))}
        for base in REFINED.values():
            done = r[f"{base}_seeds"] > 0
            row[f"{base} R²"] = f"{fmt(r[f'{base}_r2_integral'], 3)} → {fmt(r[f'{base}_r2'], 3)}" if done else "–"
            row[f"{base} coverage"] = f"{_pct(r[f'{base}_coverage_integral'])} → {_pct(r[f'{base}_coverage'])}" \
                if done else "–"
        row["GNN CPU (s)"] = fmt(r["gnn_cpu_s"], 0) if np.isfinite(r["gnn_cpu_s"]) else "–"
        out.append(row)
    return pd.DataFrame(out)


def refinement_layout() -> dict:
    """Spanners and column headings for ``refinement_display``: one spanner per estimator over its R² and
    coverage (``paper.tables.readable``'s ``spanners`` and ``labels``)."""
    spanners = {SHORT[base]: [f"{base} R²", f"{base} coverage"] for base in REFINED.values()}
    labels = {f"{base} {what}": what for base in REFINED.values() for what in ("R²", "coverage")}
    return {"spanners": spanners, "labels": labels}


def speed_sentence(rows: pd.DataFrame) -> str:
    """pyPESTO + AMICI against the GNN on the same data, as a ratio of CPU seconds, with both accuracies."""
    r = speed_ratio(rows)
    if r is None:
        return ("pyPESTO + AMICI has no finished run beside a whole GNN fit on the benchmark's data yet, so the "
                "speed and accuracy comparison with it is not made.")
    parts = []
    for c in r["conditions"]:
        starts = ("" if c["starts"] is None else f" ({c['starts']} multi-start local fits"
                  + (f" of the {c['starts_asked']} asked, within its time budget" if c["starts_asked"]
                     and c["starts"] < c["starts_asked"] else "") + ")")
        parts.append(f"at {c['noise']:.0%} noise pyPESTO + AMICI{starts} used {c['pypesto_cpu_s']:,.0f} CPU "
                     f"seconds, {c['ratio']:.1f}x the GNN's {c['gnn_cpu_s']:,.0f}, and reached R² "
                     f"{c['pypesto_r2']:.3f} over all reactions; the GNN {c['gnn_r2_all']:.3f} over all and "
                     f"{c['gnn_r2']:.3f} over the determined ones")
    return ("On the same E. coli core data (the GNN as `metabolism fit` runs it by default, integral objective "
            "then trajectory matching; pyPESTO is given the mass-action form and the true homeostasis and "
            "estimates k only, where the GNN learns both), " + "; ".join(parts) + ".")


def example_provenance(ex: dict, profile: str) -> pd.DataFrame:
    """Where the worked example came from: profile, network, design, seed, device, commit."""
    gnn = ex["fits"]["gnn"]
    items = [("profile", profile), ("network", f"`{ex['network']}` ({ex['n_metabolites']} metabolites, "
                                               f"{ex['n_reactions']} reactions)"),
             ("design", f"{ex['n_experiments']} experiments of {ex['t_end']:g} time units, sampled every "
                        f"{ex['dt']:g}, {ex['noise']:.0%} relative noise"),
             ("seed", str(ex["seed"])), ("simulator", "scipy solve_ivp LSODA"), ("device", gnn["device"]),
             ("commit", f"`{gnn['commit']}`")]
    return pd.DataFrame(items, columns=["", "value"])


def summary_numbers(ex: dict, rows: pd.DataFrame, scale: pd.DataFrame, laws: dict, profile: str) -> dict:
    """The numbers the pages quote, for the notebook's results file."""
    t = targets(rows)
    return {"profile": profile, "network": ex["network"], "noise": ex["noise"], "dt": ex["dt"], "seed": ex["seed"],
            "example": {est: {k: f[k] for k in ("r2_determined", "r2_all", "outliers", "coverage")}
                        | {"flagged": int(f["flagged"].sum())} for est, f in ex["fits"].items()},
            "benchmark_conditions": int(len(t)), "targets_met": int(t["r2_met"].sum()) if len(t) else 0,
            "findings": sentences(rows), "speed": speed_sentence(rows), "scale": scale_sentence(scale, laws),
            "scale_sizes": int(len(scale)), "power_laws": laws}
