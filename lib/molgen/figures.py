"""Figures and tables of the molecule pages, from run directories (``molgen.pipeline``)."""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from common.numbers import MISSING, decimals_for, fmt, fmt_column, pm, pm_decimals
from common.text import counted

from .pipeline import SAMPLES, read_log, results

METRIC_COLUMNS = ("validity_wo_correction", "validity", "uniqueness", "novelty", "fcd", "nspdk")
"""The GDSS metrics in the order of its tables; the first four are fractions (shown in %)."""


def sample_smiles(run_dir: str | Path) -> list[str]:
    path = Path(run_dir) / SAMPLES
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: sample the run first")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def molecule_grid(smiles: Sequence[str], n: int = 24, per_row: int = 6, seed: int = 0, size: int = 180):
    """An RDKit grid image of ``n`` molecules drawn at random (seeded) from ``smiles``, captioned by SMILES."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    pick = random.Random(seed).sample(list(smiles), min(n, len(smiles)))
    mols = [Chem.MolFromSmiles(s) for s in pick]
    keep = [(m, s) for m, s in zip(mols, pick) if m is not None]
    return Draw.MolsToGridImage([m for m, _ in keep], molsPerRow=per_row, subImgSize=(size, size),
                                legends=[s for _, s in keep])


def loss_curves(run_dirs: dict[str, str | Path]) -> Figure:
    """Training (solid) and EMA test (dashed) losses per epoch of X and of A, one colour per run; the legend
    sits under the panels, off the curves."""
    fig = Figure(figsize=(8.0, 3.6 + 0.22 * math.ceil(len(run_dirs) / 3)))
    axes = fig.subplots(1, 2)
    handles = []
    for k, (name, d) in enumerate(run_dirs.items()):
        log = read_log(d)
        if not log:
            continue
        ep = [r["epoch"] for r in log]
        for ax, key in zip(axes, ("x", "adj")):
            line, = ax.plot(ep, [r[f"train_{key}"] for r in log], color=f"C{k}", lw=1.2, label=name)
            if f"test_{key}" in log[0]:
                ax.plot(ep, [r[f"test_{key}"] for r in log], color=f"C{k}", lw=1.0, ls="--")
        handles.append(line)
    for ax, title in zip(axes, ("node features X", "adjacency A")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("denoising score-matching loss")
        ax.set_title(title)
    styles = [axes[0].plot([], [], color="0.3", lw=1.2, label="training")[0],
              axes[0].plot([], [], color="0.3", lw=1.0, ls="--", label="test (EMA)")[0]]
    fig.legend(handles=handles + styles, loc="lower center", ncol=min(4, len(handles) + 2), fontsize=9)
    rows = math.ceil((len(handles) + 2) / min(4, len(handles) + 2))
    fig.tight_layout(rect=(0, 0.07 * rows, 1, 1))
    return fig


def split_run_name(name: str) -> tuple[str, int | None]:
    """``<variant>_s<seed>`` -> (variant, seed); a name without a seed suffix is its own variant."""
    variant, sep, seed = name.rpartition("_s")
    return (variant, int(seed)) if sep and seed.isdigit() else (name, None)


def first_seed_runs(run_dirs: Sequence[str | Path]) -> dict[str, Path]:
    """Variant -> the run directory of its lowest seed, in the order the variants first appear."""
    best: dict[str, tuple[int, Path]] = {}
    for d in map(Path, run_dirs):
        variant, seed = split_run_name(d.name)
        seed = -1 if seed is None else seed
        if variant not in best or seed < best[variant][0]:
            best[variant] = (seed, d)
    return {v: d for v, (_, d) in best.items()}


def metrics_table(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run: variant (the directory name without ``_s<seed>``), config, seed, epochs, the six metrics (fractions in %), training and sampling time."""
    rows = []
    for d in run_dirs:
        r = results(d)
        row = {"run": r["run"], "variant": split_run_name(r["run"])[0], "config": r["config"],
               "seed": r["seed"], "epochs": r["epochs"]}
        for key in METRIC_COLUMNS:
            v = r.get(key, math.nan)
            row[key] = 100 * v if key in METRIC_COLUMNS[:4] else v
        row["training (min)"] = r["seconds_training"] / 60
        row["training CPU (min)"] = r.get("seconds_training_cpu", math.nan) / 60
        s = r.get("sampling", {})
        row["samples"] = s.get("n_sampled", math.nan)
        row["sampling (s)"] = s.get("seconds_sampling", math.nan)
        row["device"] = s.get("device", (r.get("training_sessions") or [{}])[-1].get("device", "?"))
        row["commit"] = str(s.get("commit", "?"))[:10]
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(table: pd.DataFrame, by: str = "config") -> pd.DataFrame:
    """Mean and standard deviation over seeds of the epochs, each metric and time, per ``by`` group
    ("mean ± sd")."""
    cols = [c for c in ("epochs", *METRIC_COLUMNS, "training (min)", "training CPU (min)", "sampling (s)")
            if c in table and table[c].notna().any()]
    g = table.groupby(by, sort=False)
    mean, sd, n = g[cols].mean(), g[cols].std(ddof=1), g.size()
    out = pd.DataFrame(index=mean.index)
    out["seeds"] = n
    for c in cols:
        digits = 4 if c == "nspdk" else 0 if c == "epochs" else 2
        out[c] = [f"{m:.{digits}f}" if k < 2 or math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
                  for m, s, k in zip(mean[c], sd[c], n)]
    return out


QUANTITIES = {
    "samples": "samples per run",
    "epochs": "training epochs",
    "validity_wo_correction": "validity without correction (%)",
    "validity": "validity after correction (%)",
    "uniqueness": "uniqueness (%)",
    "novelty": "novelty (%)",
    "fcd": "FCD (lower is better)",
    "nspdk": "NSPDK MMD (lower is better)",
    "training (min)": "training time (min)",
    "training CPU (min)": "training CPU time (min)",
    "sampling (s)": "sampling time (s)",
}
"""Columns of `metrics_table` shown on the pages, with the label (and unit) each is shown under."""

METRIC_NAMES = {"fcd": "FCD", "nspdk": "NSPDK MMD"}


def runs_display(table: pd.DataFrame) -> pd.DataFrame:
    """`metrics_table` transposed for reading: one row per quantity (label with its unit, decimals chosen
    per row), one column per run."""
    rows = []
    for col, label in QUANTITIES.items():
        if col in table:
            rows.append([label, *fmt_column(table[col].tolist())])
    return pd.DataFrame(rows, columns=["quantity", *table["run"].tolist()])


def summary_display(table: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """Mean ± standard deviation over seeds, one row per quantity (decimals from the row's spread) and one
    column per ``by`` group, with the number of seeds as the first row."""
    g = table.groupby(by, sort=False)
    groups = list(g.groups)
    rows = [["seeds", *[str(n) for n in g.size()]]]
    for col, label in QUANTITIES.items():
        if col not in table:
            continue
        mean, sd = g[col].mean(), g[col].std(ddof=1)
        d = pm_decimals(mean.tolist(), sd.tolist())
        rows.append([label, *[pm(mean[k], sd[k], d) for k in groups]])
    return pd.DataFrame(rows, columns=["quantity", *groups])


def budgets_display(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``summary_display`` of each budget's runs (name -> table) stacked with a ``budget`` column; a variant
    not run at some budget shows the missing mark there."""
    return pd.concat([summary_display(t).assign(budget=name) for name, t in tables.items()],
                     ignore_index=True).fillna(MISSING)


def compare_display(comparison: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """`compare` for reading: per metric and variant the two means, their difference and the seed spread
    with the metric's decimals, and whether the difference exceeds the spread."""
    out = []
    for metric, rows in comparison.groupby("metric", sort=False):
        d = max(decimals_for(rows["baseline mean"], 3), decimals_for(rows["seed spread"], 2))
        for _, r in rows.iterrows():
            beyond = ("better" if r["better beyond spread"] else "worse" if r["worse beyond spread"]
                      else MISSING if not math.isfinite(r["seed spread"]) else "within the spread")
            out.append({"metric": METRIC_NAMES.get(metric, metric), by: f"`{r[by]}`",
                        "GDSS": fmt(r["baseline mean"], d), "this variant": fmt(r["variant mean"], d),
                        "difference": fmt(r["difference"], d), "seed spread": fmt(r["seed spread"], d),
                        "seeds": r["seeds"], "beyond the spread": beyond})
    return pd.DataFrame(out)


def provenance_display(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Where each run came from, one row per stage: the recorded training sessions (epochs, device, commit,
    minutes) and the sampling (molecules, device, commit, minutes)."""
    rows = []
    for d in map(Path, run_dirs):
        r = results(d)
        base = {"run": f"`{r['run']}`", "config": f"`{r['config']}`", "seed": str(r["seed"])}
        for sess in r.get("training_sessions") or []:
            first, last = sess.get("epochs", ["?", "?"])
            rows.append({**base, "stage": f"training, epochs {first}–{last}", "device": str(sess.get("device", "?")),
                         "commit": str(sess.get("commit", "?"))[:10], "time (min)": sess.get("seconds", math.nan) / 60})
        s = r.get("sampling")
        if s:
            rows.append({**base, "stage": f"sampling, {s.get('n_sampled', '?'):,} molecules",
                         "device": str(s.get("device", "?")), "commit": str(s.get("commit", "?"))[:10],
                         "time (min)": s.get("seconds_sampling", math.nan) / 60})
    out = pd.DataFrame(rows, columns=["run", "config", "seed", "stage", "device", "commit", "time (min)"])
    out["time (min)"] = fmt_column(out["time (min)"].tolist(), 2) if len(out) else []
    return out


def runs_provenance(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per run of the `metrics_table`s of each budget (the dict's keys): budget, run, epochs, training
    minutes, samples, and the device and commit that sampled it."""
    parts = []
    for budget, table in tables.items():
        parts.append(pd.DataFrame({
            "budget": budget, "run": [f"`{r}`" for r in table["run"]], "epochs": [str(e) for e in table["epochs"]],
            "training (min)": fmt_column(table["training (min)"].tolist(), 3),
            "samples": [fmt(v, 0) for v in table["samples"]], "device": table["device"].astype(str).tolist(),
            "commit": [f"`{c}`" for c in table["commit"]]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def ablation_figure(table: pd.DataFrame, by: str = "variant", metrics: Sequence[str] = ("fcd", "nspdk",
                    "validity_wo_correction")) -> Figure:
    """One panel per metric: every seed as a dot and the mean as a bar, one column per variant."""
    groups = list(dict.fromkeys(table[by]))
    fig = Figure(figsize=(2.9 * len(metrics), 3.4))
    axes = fig.subplots(1, len(metrics))
    for ax, m in zip(axes, metrics):
        for i, g in enumerate(groups):
            vals = table.loc[table[by] == g, m].astype(float)
            ax.bar(i, vals.mean(), color=f"C{i}", alpha=0.35, width=0.7)
            ax.plot([i] * len(vals), vals, "o", color=f"C{i}", ms=4)
        ax.set_xticks(range(len(groups)), groups, rotation=35, ha="right", fontsize=9)
        ax.set_title(QUANTITIES.get(m, m).replace(" (lower is better)", ", lower is better"), fontsize=10)
    fig.tight_layout()
    return fig


def compare(table: pd.DataFrame, baseline: str, by: str = "variant",
            metrics: Sequence[str] = ("fcd", "nspdk")) -> pd.DataFrame:
    """Each variant against ``baseline`` on lower-is-better metrics: means, the difference, the pooled seed
    spread (sd of the two groups combined in quadrature) and whether the difference exceeds it, either way."""
    rows = []
    base = table[table[by] == baseline]
    for g in dict.fromkeys(table[by]):
        if g == baseline:
            continue
        other = table[table[by] == g]
        for m in metrics:
            b, o = base[m].astype(float), other[m].astype(float)
            spread = math.sqrt((b.std(ddof=1) if len(b) > 1 else math.nan) ** 2
                               + (o.std(ddof=1) if len(o) > 1 else math.nan) ** 2)
            diff = o.mean() - b.mean()
            known = not math.isnan(spread)
            rows.append({by: g, "metric": m, "baseline mean": b.mean(), "variant mean": o.mean(),
                         "difference": diff, "seed spread": spread, "seeds": f"{len(b)} vs {len(o)}",
                         "better beyond spread": bool(known and -diff > spread),
                         "worse beyond spread": bool(known and diff > spread)})
    return pd.DataFrame(rows)


def equal_time_table(epoch_table: pd.DataFrame, time_table: pd.DataFrame) -> pd.DataFrame:
    """The comparison at equal training time: the runs trained for a wall-time budget (``time_table``, e.g.
    GDSS given the training time of a cell-attention run) and, for the variants they lack, the runs of the
    epoch budget whose training time set that budget."""
    rest = epoch_table[~epoch_table["variant"].isin(set(time_table["variant"]))]
    return pd.concat([time_table, rest], ignore_index=True)


def _samples_text(table: pd.DataFrame) -> str:
    """', N samples per run' (or a range) when the table records them."""
    if "samples" not in table:
        return ""
    n = sorted({int(v) for v in table["samples"] if isinstance(v, (int, float)) and math.isfinite(v)})
    if not n:
        return ""
    return f", {n[0]:,} samples per run" if len(n) == 1 else f", {n[0]:,}-{n[-1]:,} samples per run"


def cost_ratio(table: pd.DataFrame, variant: str, baseline: str, col: str) -> float:
    """Mean ``col`` of ``variant`` over that of ``baseline`` in one table (NaN when either is unknown)."""
    if col not in table:
        return math.nan
    means = table.groupby("variant")[col].mean()
    base, other = means.get(baseline), means.get(variant)
    if base is None or other is None or not (math.isfinite(base) and math.isfinite(other)) or base <= 0:
        return math.nan
    return float(other / base)


def _cost_ratios(table: pd.DataFrame, variant: str, baseline: str) -> str:
    """'a.bx GDSS's training time and c.dx GDSS's sampling time' from the mean times per variant ('' if
    unknown)."""
    parts = []
    for col, what in (("training (min)", "training time"), ("sampling (s)", "sampling time")):
        ratio = cost_ratio(table, variant, baseline, col)
        if math.isfinite(ratio):
            parts.append(f"{ratio:.1f}x GDSS's {what}")
    return " and ".join(parts)


def _mean_of(table: pd.DataFrame, variant: str, col: str) -> float:
    return float(table.loc[table["variant"] == variant, col].astype(float).mean())


def _training_clock(table: pd.DataFrame) -> tuple[str, str]:
    """The training-time column to quote and its clock: CPU time where every run logged it (one-thread runs
    whose budget other jobs on the machine do not stretch), else wall time."""
    if "training CPU (min)" in table and table["training CPU (min)"].notna().all():
        return "training CPU (min)", "CPU time of one thread"
    return "training (min)", "wall time"


def best_cell_variant(table: pd.DataFrame) -> str | None:
    """The cell-attention variant (name starting with "can") with the lowest mean FCD, None if there is none."""
    means = table.groupby("variant")["fcd"].mean()
    cans = [v for v in means.index if v.startswith("can")]
    return min(cans, key=lambda v: means[v]) if cans else None


def verdict(results: dict, budget: str = "epochs") -> str:
    """A plain-language answer to "does topology help?" from a results dict of the ablation notebook (its
    ``table`` of runs and ``source``): the best cell-attention variant by FCD against GDSS on FCD and NSPDK, and
    whether the differences exceed the seed spread (unknown with a single seed). ``budget`` says what the runs
    were given equally: "epochs" or "time" (training time)."""
    if budget not in ("epochs", "time"):
        raise ValueError(f"budget must be 'epochs' or 'time', got {budget!r}")
    table = pd.DataFrame(results.get("table") or [])
    if table.empty or "gdss" not in set(table["variant"]):
        return "The ablation has no GDSS baseline run yet, so it does not answer the question."
    best = best_cell_variant(table)
    if best is None:
        return "The ablation has no cell-attention run yet, so it does not answer the question."
    cmp = compare(table, "gdss").set_index(["variant", "metric"])
    seeds = int(table.groupby("variant").size().min())
    epochs = sorted(set(table["epochs"]))
    parts = []
    for m, name, spec in (("fcd", "FCD", ".2f"), ("nspdk", "NSPDK", ".4f")):
        row = cmp.loc[(best, m)]
        better = "lower" if row["difference"] < 0 else "higher"
        parts.append(f"{name} {row['variant mean']:{spec}} against {row['baseline mean']:{spec}} ({better})")
    given = "/".join(str(e) for e in epochs) + " training epochs" if budget == "epochs" else "equal training time"
    head = (f"From {results.get('source', '?')} runs ({len(table)} runs, "
            f"at least {counted(seeds, 'seed')} per variant, "
            f"{given}{_samples_text(table)}): the best cell-attention variant by FCD, `{best}`, reaches {parts[0]} "
            f"and {parts[1]} than GDSS.")
    if budget == "time":
        col, clock = _training_clock(table)
        cpu = "training CPU (min)"
        if col != cpu and cpu in table and table.loc[table["variant"] == best, cpu].notna().all():
            # GDSS's runs recorded no CPU time (made before the clock), the variant's budget was CPU time
            head += (f" The budget is GDSS's training time: GDSS trained {_mean_of(table, 'gdss', 'epochs'):.0f} "
                     f"epochs in {_mean_of(table, 'gdss', col):.1f} min of wall time (its runs recorded no CPU "
                     f"time), `{best}` {_mean_of(table, best, 'epochs'):.0f} in {_mean_of(table, best, cpu):.1f} "
                     f"min of CPU time of one thread ({_mean_of(table, best, col):.1f} min of wall time on the "
                     "shared machine; means over seeds).")
        else:
            head += (f" The budget is equal training time ({clock}): GDSS trained "
                     f"{_mean_of(table, 'gdss', 'epochs'):.0f} epochs in {_mean_of(table, 'gdss', col):.1f} min, "
                     f"`{best}` {_mean_of(table, best, 'epochs'):.0f} in {_mean_of(table, best, col):.1f} min "
                     "(means over seeds).")
    elif cost := _cost_ratios(table, best, "gdss"):
        head += f" It costs {cost} (the budget is equal epochs, not equal time)."
    if seeds < 2:
        return head + (" With a single seed per variant the seed spread is unknown, so this is not yet evidence "
                       "either way.")
    beyond = [m.upper() for m in ("fcd", "nspdk") if cmp.loc[(best, m), "better beyond spread"]]
    worse = [m.upper() for m in ("fcd", "nspdk") if cmp.loc[(best, m), "worse beyond spread"]]
    if len(beyond) == 2:
        return head + " Both improvements exceed the seed spread: at this budget, topology helps."
    if beyond and worse:
        return head + (f" It is better on {beyond[0]} and worse on {worse[0]}, both beyond the seed spread: the "
                       "evidence is mixed.")
    if beyond:
        return head + f" Only the {beyond[0]} improvement exceeds the seed spread: the evidence is mixed."
    if len(worse) == 2:
        return head + (" GDSS is better on both, beyond the seed spread: at this budget, topology does not help, "
                       "and the best cell-attention variant is worse.")
    return head + " Neither difference is an improvement beyond the seed spread: at this budget, topology does not help."


def cost_explanation(by_epochs: dict, by_time: dict, baseline: str = "gdss") -> str:
    """Why the two budgets can disagree, from the ablation results at equal epochs (``by_epochs``) and at equal
    training time (``by_time``): the best cell-attention variant by FCD at equal epochs against the baseline
    there (and whether the difference exceeds the seed spread), its training minutes per epoch against the
    baseline's, the baseline's FCD at equal time against that variant's, and the sampling cost (means over
    seeds)."""
    epochs, timed = pd.DataFrame(by_epochs.get("table") or []), pd.DataFrame(by_time.get("table") or [])
    for name, t in (("equal epochs", epochs), ("equal time", timed)):
        if t.empty or baseline not in set(t["variant"]):
            return f"No {baseline} run at {name}, so the cost of the two budgets cannot be compared."
    best = best_cell_variant(epochs)
    if best is None:
        return "No cell-attention run at equal epochs, so the cost of the two budgets cannot be compared."

    def per_epoch(t: pd.DataFrame, v: str) -> float:
        return _mean_of(t, v, "training (min)") / _mean_of(t, v, "epochs")

    fcd_best, fcd_base = _mean_of(epochs, best, "fcd"), _mean_of(epochs, baseline, "fcd")
    row = compare(epochs, baseline, metrics=("fcd",)).set_index("variant").loc[best]
    if row["better beyond spread"]:
        per_step = "per training epoch the complex is worth having"
    elif fcd_best < fcd_base:
        per_step = "per training epoch the complex is ahead, but by less than the seed spread"
    else:
        per_step = "even per training epoch the complex does not help"
    ratio = per_epoch(epochs, best) / per_epoch(epochs, baseline)
    fcd_timed = _mean_of(timed, baseline, "fcd")
    text = (f"At equal epochs ({_mean_of(epochs, baseline, 'epochs'):.0f}), `{best}` reaches FCD {fcd_best:.2f} "
            f"against GDSS's {fcd_base:.2f}: {per_step}. One of its epochs costs {ratio:.1f}x a GDSS epoch "
            f"({60 * per_epoch(epochs, best):.0f} s against {60 * per_epoch(epochs, baseline):.0f} s), so in the "
            f"same training time GDSS runs {_mean_of(timed, baseline, 'epochs'):.0f} epochs and reaches FCD "
            f"{fcd_timed:.2f}, ")
    if fcd_timed < fcd_best:
        text += f"lower than `{best}`'s {fcd_best:.2f}: at this budget the extra epochs are worth more than the topology."
    else:
        text += f"still not below `{best}`'s {fcd_best:.2f}: at this budget the topology is worth its cost."
    slower = cost_ratio(epochs, best, baseline, "sampling (s)")
    if math.isfinite(slower):
        text += f" Sampling takes {slower:.1f}x GDSS's time as well (both sampled at equal epochs)."
    return text


def budget_answers(by_budget: dict[str, dict], baseline: str = "gdss") -> str:
    """Where the answer changes across training budgets: ``by_budget`` maps a budget's name (in increasing
    order) to the ablation results at that budget (``table`` of runs). Per budget, the best cell-attention
    variant by FCD against the baseline on FCD, as better / worse beyond the seed spread or within it (one
    seed per variant has no spread: better / worse "on one seed"); the sentence names the first budget at
    which that answer differs from the one before it."""
    answers = []
    for name, results in by_budget.items():
        table = pd.DataFrame((results or {}).get("table") or [])
        if table.empty or baseline not in set(table["variant"]) or best_cell_variant(table) is None:
            continue
        best = best_cell_variant(table)
        row = compare(table, baseline, metrics=("fcd",)).set_index("variant").loc[best]
        counts = table.groupby("variant").size()
        seeds = int(min(counts[best], counts[baseline]))  # the pair compared, not the variant with fewest seeds
        if seeds > 1:
            state = ("better" if row["better beyond spread"] else "worse" if row["worse beyond spread"]
                     else "within the spread")
        else:  # no spread to judge by: the direction alone, said to be one seed's
            state = ("better" if row["variant mean"] < row["baseline mean"] else "worse") + " on one seed"
        answers.append((name, best, state, row["variant mean"], row["baseline mean"], seeds))
    if not answers:
        return "No budget has both a GDSS and a cell-attention run yet."
    parts = [f"at {n}, `{b}` FCD {v:.2f} against GDSS's {g:.2f} ({s}" + (f"; {counted(k, 'seed')})" if k > 1 else ")")
             for n, b, s, v, g, k in answers]
    text = "By budget: " + "; ".join(parts) + "."
    changed = [(a, b) for a, b in zip(answers, answers[1:]) if a[2] != b[2]]
    if len(answers) < 2:
        return text + " One budget only, so where the answer changes is not measured yet."
    if not changed:
        return text + " The answer is the same at every budget measured."
    before, after = changed[0]
    return text + f" The answer changes between {before[0]} ({before[2]}) and {after[0]} ({after[2]})."
