"""Figures and tables of an exploration directory and its replicates (`replicate.replicate`), for the
paper's notebook; everything is read from the directory (`summary.summarize`) or the replicates' record:

* `comparison_text(reps)`      one sentence: best vs default over the replicate seeds;
* `tree_figure(summary)`       the UCB tree: nodes = iterations, edges parent -> child, colour = score;
* `score_figure(summary)`      score of every iteration and the best so far;
* `replicate_table(reps)`      best vs default over the replicate seeds (per seed, mean, std, n);
* `memory_markdown(summary)`   the memory file as it ended, headings demoted to sit inside a page;
* `results(summary, reps)`     the small JSON the page reads.
"""
from __future__ import annotations

import json
import re
from typing import Any

ROLE_COLORS = {"baseline": "0.2", "exploit": "#1f77b4", "explore": "#ff7f0e", "test-a-principle": "#2ca02c"}


def comparison_text(rep: dict[str, Any], digits: int = 3) -> str:
    """One sentence: best vs default over the replicate seeds, and whether the gain exceeds the spread."""
    def pm(s: dict) -> str:
        if s["mean"] is None:
            return "n/a"
        return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")

    d, b, c = rep["default"], rep["best"], rep["comparison"]
    text = (f"Over {len(rep['seeds'])} replicate seeds ({', '.join(map(str, rep['seeds']))}), "
            f"`{rep['score_key']}` is {pm(b)} for the best configuration (it {b['iteration']}) and {pm(d)} for "
            f"the default (mean ± std, n = {b['n']} and {d['n']}).")
    if b["iteration"] == d["iteration"]:
        return text + " The exploration found nothing better than the default."
    if c["improvement"] is None:
        return text + " Too many replicate runs failed to compare them."
    text += f" The improvement of the mean is {c['improvement']:+.{digits}f}"
    if c["exceeds_spread"] is None:
        text += "; with fewer than two replicates per configuration the spread is undefined."
    else:
        text += (f", {'larger' if c['exceeds_spread'] else 'not larger'} than the spread between replicates "
                 f"(largest std {c['spread']:.{digits}f}).")
    p = c["paired"]
    if p["n"]:
        text += f" Seed by seed, the best configuration did better on {p['wins']} of {p['n']}."
    return text


# ---- figures -----------------------------------------------------------------------------------------------
def _stamp(fig, summary: dict[str, Any]) -> None:
    s = summary["settings"]
    metrics = (summary.get("default") or {}).get("metrics") or {}
    proposers = sorted({h["proposer"] for h in summary["history"] if h.get("proposer") not in (None, "loop")})
    line = (f"regime {s.get('regime')}, seed {s.get('seed')}, proposer {', '.join(proposers) or s['proposer']}, "
            f"budget {s['budget']} ({s['slots']} per round), device {metrics.get('device', '?')}, "
            f"commit {str(metrics.get('commit', 'unknown'))[:10]}")
    fig.text(0.01, 0.005, line, fontsize=8, color="0.4", ha="left", va="bottom")


def _short(mutation: dict, sep: str = "\n") -> str:
    return sep.join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in (mutation or {}).items())


def tree_layout(nodes: list[dict]) -> dict[int, tuple[float, float]]:
    """(x, depth) per node id: leaves left to right in depth-first order (children by id), parents centred."""
    by_id = {n["id"]: n for n in nodes}
    pos: dict[int, tuple[float, float]] = {}
    next_x = [0.0]

    def place(i: int, depth: int) -> float:
        kids = sorted(c for c in by_id[i]["children"] if c in by_id)
        if not kids:
            x = next_x[0]
            next_x[0] += 1
        else:
            xs = [place(c, depth + 1) for c in kids]
            x = (min(xs) + max(xs)) / 2
        pos[i] = (x, depth)
        return x

    for root in sorted(n["id"] for n in nodes if n["parent"] is None or n["parent"] not in by_id):
        place(root, 0)
    return pos


def tree_figure(summary: dict[str, Any], annotate: bool | None = None):
    """The UCB tree: one node per iteration (its id inside), edges parent -> child, colour = score clipped at
    the floor, failed nodes grey; the best node ringed in red. Edges carry the mutation when the tree is small."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    tree = summary["tree"]
    nodes = tree["nodes"]
    pos = tree_layout(nodes)
    n_leaves = max(1, int(max(x for x, _ in pos.values())) + 1)
    depth = max(d for _, d in pos.values())
    annotate = len(nodes) <= 16 if annotate is None else annotate
    fig, ax = plt.subplots(figsize=(min(8.0, max(6.0, (1.1 if annotate else 0.3) * n_leaves + 2.5)),
                                    min(6.5, 1.3 + 0.6 * (depth + 1))))
    ok = [n for n in nodes if n["status"] == "ok" and n["score"] is not None]
    utilities = [n["utility"] for n in ok]
    sign = 1 if tree["maximize"] else -1
    norm = Normalize(min(utilities), max(utilities)) if utilities else Normalize(0, 1)
    if utilities and norm.vmin == norm.vmax:
        norm = Normalize(norm.vmin - 0.5, norm.vmax + 0.5)
    cmap = plt.get_cmap("viridis")
    for n in nodes:
        if n["parent"] in pos:
            (x0, y0), (x1, y1) = pos[n["parent"]], pos[n["id"]]
            ax.plot([x0, x1], [-y0, -y1], color="0.6", lw=1, zorder=1)
            if annotate and n["mutation"]:  # near the child, where sibling edges are furthest apart
                t = 0.62
                ax.text(x0 + t * (x1 - x0), -(y0 + t * (y1 - y0)), _short(n["mutation"]), fontsize=7.5, color="0.25",
                        ha="center", va="center", linespacing=1.0,
                        bbox=dict(fc="white", ec="none", alpha=0.85, pad=0.4), zorder=2)
    size = 300 if len(nodes) <= 32 else 190
    for n in nodes:
        x, y = pos[n["id"]]
        if n["status"] == "ok" and n["score"] is not None:
            ax.scatter([x], [-y], s=size, color=cmap(norm(n["utility"])), edgecolor="k", lw=0.6, zorder=3)
        else:
            ax.scatter([x], [-y], s=size, color="0.85", edgecolor="0.5", lw=0.6, marker="X" if n["status"] == "failed"
                       else "o", zorder=3)
        ax.text(x, -y, str(n["id"]), fontsize=8 if len(nodes) <= 32 else 7, ha="center", va="center", zorder=4,
                color="white" if n["status"] == "ok" and n["utility"] is not None and norm(n["utility"]) < 0.5
                else "black")
    best = summary.get("best")
    if best is not None and best["iteration"] in pos:
        x, y = pos[best["iteration"]]
        ax.scatter([x], [-y], s=size * 2.2, facecolor="none", edgecolor="#d62728", lw=1.8, zorder=5)
        ax.legend(handles=[Line2D([], [], ls="none", marker="o", ms=9, mfc="none", mec="#d62728", mew=1.8,
                                  label=f"best (it {best['iteration']})")], loc="upper right", fontsize=8)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    label = "score" + ("" if sign > 0 else " (negated)")
    if tree.get("floor") is not None:
        label += f", clipped at {tree['floor']:g}"
    fig.colorbar(sm, ax=ax, label=label, fraction=0.04, pad=0.02)
    ax.set_yticks([-d for d in range(depth + 1)], [str(d) for d in range(depth + 1)])
    ax.set_ylabel("depth (mutations from the default)")
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.set_xlim(-0.7, n_leaves - 0.3)
    ax.set_ylim(-depth - 0.6, 0.6)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _stamp(fig, summary)
    return fig


def score_figure(summary: dict[str, Any]):
    """Score of every finished iteration (coloured by role; failed runs as grey crosses at the bottom) and the
    best so far in iteration order; the dashed line is the default's score. Scores below the tree's floor are
    drawn at the floor as downward triangles."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    s = summary["settings"]
    floor = s.get("score_floor")
    maximize = s["maximize"]
    hist = sorted(summary["history"], key=lambda h: h["iteration"])
    fig, ax = plt.subplots(figsize=(7.5, 3.6))

    def shown(v: float) -> tuple[float, bool]:
        if floor is None:
            return v, False
        if maximize and v < floor:
            return floor, True
        if not maximize and v > -floor:
            return -floor, True
        return v, False

    shown_scores = [shown(h["score"])[0] for h in hist if h["score"] is not None]
    bottom = (min(shown_scores) if maximize else max(shown_scores)) if shown_scores else 0.0
    handles: dict[str, Line2D] = {}
    for h in hist:
        if h["score"] is None:
            ax.scatter([h["iteration"]], [bottom], marker="x", color="0.6", zorder=3)
            handles.setdefault("failed", Line2D([], [], ls="none", marker="x", color="0.6", label="failed"))
            continue
        y, clipped = shown(h["score"])
        role = h.get("role") or "exploit"
        color = ROLE_COLORS.get(role, "0.5")
        ax.scatter([h["iteration"]], [y], marker="v" if clipped else "o", color=color, edgecolor="k", lw=0.4, s=30,
                   zorder=3)
        handles.setdefault(role, Line2D([], [], ls="none", marker="o", mfc=color, mec="k", mew=0.4, label=role))
        if clipped:
            handles.setdefault("~clipped", Line2D([], [], ls="none", marker="v", mfc="white", mec="k", mew=0.6,
                                                  label="below the floor"))
    best, xs, ys = None, [], []
    for h in hist:
        v = h["score"]
        if v is not None and (best is None or (v > best if maximize else v < best)):
            best = v
        if best is not None:
            xs.append(h["iteration"])
            ys.append(shown(best)[0])
    lines = []
    if xs:
        lines += ax.step(xs, ys, where="post", color="#d62728", lw=1.5, label="best so far", zorder=2)
    default = (summary.get("default") or {}).get("score")
    if default is not None:
        lines.append(ax.axhline(shown(default)[0], color="0.3", ls="--", lw=1, label="default (it 0)", zorder=1))
    ax.set_xlabel("iteration")
    ax.set_ylabel(s["score_key"])
    ax.set_xticks(sorted({h["iteration"] for h in hist})) if len(hist) <= 20 else None
    order = [k for k in ROLE_COLORS if k in handles] + [k for k in ("failed", "~clipped") if k in handles]
    ax.legend(handles=[handles[k] for k in order] + lines, fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _stamp(fig, summary)
    return fig


def replicate_table(rep: dict[str, Any]):
    """Rows: default, best and their paired difference; columns: iteration, score in the exploration (its seed),
    one column per replicate seed, and mean, std and n over the replicate seeds."""
    import pandas as pd

    explo = f"exploration (seed {rep.get('exploration_seed')})"

    def row(s: dict, exploration: float | None, iteration: Any) -> dict:
        r = {"iteration": iteration, explo: exploration}
        r.update({f"seed {seed}": v for seed, v in zip(s["seeds"], s["scores"])})
        r.update({"mean": s["mean"], "std": s["std"], "n": s["n"]})
        return r

    d, b, c = rep["default"], rep["best"], rep["comparison"]
    rows = {"default": row(d, d["exploration_score"], d["iteration"]),
            "best": row(b, b["exploration_score"], b["iteration"])}
    if b["iteration"] != d["iteration"] and c["paired"]["n"]:
        pairs = [seed for seed, x, y in zip(b["seeds"], b["scores"], d["scores"]) if x is not None and y is not None]
        diff = {"iteration": "", explo: (None if b["exploration_score"] is None or
                                                        d["exploration_score"] is None else
                                                        b["exploration_score"] - d["exploration_score"])}
        sign = 1.0 if rep.get("maximize", True) else -1.0
        diff.update({f"seed {seed}": v * sign for seed, v in zip(pairs, c["paired"]["differences"])})
        diff.update({"mean": c["paired"]["mean"] * sign if c["paired"]["mean"] is not None else None,
                     "std": c["paired"]["std"], "n": c["paired"]["n"]})
        rows["best − default"] = diff
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = rep["score_key"]
    num = [col for col in df.columns if col not in ("iteration", "n")]
    df[num] = df[num].astype(float)
    df["n"] = df["n"].astype(int)
    df["iteration"] = df["iteration"].astype(str)
    return df


def replicate_display(rep: dict[str, Any]):
    """`replicate_table` for reading: a first column naming the row (default, best, their difference), the
    iteration, every score with the table's decimals and mean ± std (n) in one cell."""
    import pandas as pd

    from common.numbers import MISSING, decimals_for, fmt, pm

    table = replicate_table(rep)
    scores = [c for c in table.columns if c not in ("iteration", "mean", "std", "n")]
    d = decimals_for([v for c in scores for v in table[c].iloc[:2]], 3)
    out = pd.DataFrame({"configuration": [str(i) for i in table.index],
                        "iteration": [MISSING if i == "" else str(i) for i in table["iteration"]]})
    for c in scores:
        out[c] = [fmt(v, d) for v in table[c]]
    out["mean ± std (n)"] = [f"{pm(m, s, d)} ({n})" for m, s, n in zip(table["mean"], table["std"], table["n"])]
    return out


def memory_markdown(summary: dict[str, Any], demote: int = 3) -> str:
    """The memory file as it ended, with its headings moved down `demote` levels (so they nest in a page)."""
    text = summary.get("memory") or "*(no memory was written)*"
    return re.sub(r"^(#+)(\s)", lambda m: "#" * min(6, len(m.group(1)) + demote) + m.group(2), text, flags=re.M)


def provenance(summary: dict[str, Any], rep: dict[str, Any] | None = None) -> str:
    """Who proposed, how many iterations ran and failed, device and commit of the runs."""
    s, c = summary["settings"], summary["counts"]
    proposers = sorted({h["proposer"] for h in summary["history"] if h.get("proposer") not in (None, "loop")})
    runs = [(summary.get(k) or {}).get("metrics") or {} for k in ("default", "best")]
    devices = sorted({str(m["device"]) for m in runs if m.get("device")} | set((rep or {}).get("best", {}).get("device", [])))
    commits = sorted({str(m["commit"]) for m in runs if m.get("commit")} | set((rep or {}).get("best", {}).get("commit", [])))
    return (f"proposer {s['proposer']} ({', '.join(proposers) or 'no proposal ran'}); regime {s.get('regime')}, seed "
            f"{s.get('seed')}; {c['iterations']} of {s['budget']} iterations ({c['ok']} ok, {c['failed']} failed, "
            f"{c['rejected']} proposals rejected), {s['slots']} per round, executor {s['executor']}; "
            f"device {', '.join(devices) or '?'}; commit {', '.join(x[:10] for x in commits) or '?'}")


def results(summary: dict[str, Any], rep: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The results JSON of the exploration notebook (plain data; `extra` first, e.g. profile)."""
    s, c = summary["settings"], summary["counts"]
    proposers = sorted({h["proposer"] for h in summary["history"] if h.get("proposer") not in (None, "loop")})
    runs = [(summary.get(k) or {}).get("metrics") or {} for k in ("default", "best")]
    best = summary.get("best") or {}
    data = {
        **extra,
        "proposer": s["proposer"],
        "proposer_names": proposers,
        "budget": s["budget"],
        "slots": s["slots"],
        "executor": s["executor"],
        "regime": s.get("regime"),
        "seed": s.get("seed"),
        "base_overrides": s["base_overrides"],
        "score_key": s["score_key"],
        "maximize": s["maximize"],
        "ucb_c": s["ucb_c"],
        "counts": c,
        "default_score": (summary.get("default") or {}).get("score"),
        "best_score": best.get("score"),
        "best_iteration": best.get("iteration"),
        "best_changes": best.get("changes_vs_default"),
        "best_lineage": best.get("lineage"),
        "replicates": {k: {kk: vv for kk, vv in v.items() if kk not in ("overrides", "errors")} if isinstance(v, dict)
                       and "scores" in v else v for k, v in rep.items()},
        "comparison_text": comparison_text(rep),
        "device": sorted({str(m["device"]) for m in runs if m.get("device")}),
        "commit": sorted({str(m["commit"]) for m in runs if m.get("commit")}),
    }
    json.dumps(data, allow_nan=False)
    return data
