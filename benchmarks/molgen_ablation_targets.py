"""The targets of the cell-complex study, read from the committed ablation runs (nothing is recomputed).

    python benchmarks/molgen_ablation_targets.py [--epochs-root data/runs/molgen/ablation_equal_epochs]
        [--time-root data/runs/molgen/ablation_equal_time] [--json benchmarks/results/molgen_ablation_targets.json]

1. The best cell-attention variant (by mean FCD) against GDSS on FCD and NSPDK, beyond the seed spread, at
   equal epochs and at equal training time (``molgen.figures.compare``: the difference of the means against
   the two groups' standard deviations in quadrature).
2. The moonshot: FCD <= 1.0 with validity without correction >= 98 % on QM9, for any single run of the two
   roots or any other evaluated run directly under ``data/runs/molgen`` (the 300-epoch GDSS baseline).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from common.io import write_json  # noqa: E402
from molgen import ablation, figures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MOONSHOT = {"fcd": 1.0, "validity_wo_correction": 98.0}


def budget_target(table, name: str) -> dict:
    """The best cell-attention variant by mean FCD against GDSS in ``table``."""
    best = figures.best_cell_variant(table)
    cmp = figures.compare(table, "gdss").set_index(["variant", "metric"])
    rows = {m: {k: v.item() if hasattr(v, "item") else v for k, v in cmp.loc[(best, m)].items()}
            for m in ("fcd", "nspdk")}
    met = all(rows[m]["better beyond spread"] for m in rows)
    samples = sorted({int(s) for s in table["samples"]})
    return {"budget": name, "best": best, "met": met, "samples_per_run": samples,
            "seeds": int(table.groupby("variant").size().min()), "metrics": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs-root", type=Path, default=ROOT / "data/runs/molgen/ablation_equal_epochs")
    ap.add_argument("--time-root", type=Path, default=ROOT / "data/runs/molgen/ablation_equal_time")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    by_epochs = figures.metrics_table(ablation.finished_runs(args.epochs_root))
    if by_epochs.empty:
        raise SystemExit(f"{args.epochs_root}: no evaluated runs")
    timed = ablation.finished_runs(args.time_root) if args.time_root.is_dir() else []
    by_time = figures.equal_time_table(by_epochs, figures.metrics_table(timed)) if timed else None
    out = {"targets": [budget_target(by_epochs, "equal epochs")]}
    if by_time is not None:
        out["targets"].append(budget_target(by_time, "equal training time"))
    others = [p.parent for p in (ROOT / "data/runs/molgen").glob("*/metrics.json")]
    runs = pd.concat([by_epochs, *([] if by_time is None else [by_time]), figures.metrics_table(others)],
                     ignore_index=True)
    shot = runs[(runs["fcd"] <= MOONSHOT["fcd"])
                & (runs["validity_wo_correction"] >= MOONSHOT["validity_wo_correction"])]
    best = runs.loc[runs["fcd"].idxmin()]
    out["moonshot"] = {"target": "FCD <= 1.0 and validity w/o correction >= 98 %", "met": not shot.empty,
                       "lowest_fcd_run": str(best["run"]), "lowest_fcd": float(best["fcd"]),
                       "its_validity_wo_correction": float(best["validity_wo_correction"])}
    for t in out["targets"]:
        f, n = t["metrics"]["fcd"], t["metrics"]["nspdk"]
        print(f"{t['budget']} ({t['seeds']} seeds, {'/'.join(f'{s:,}' for s in t['samples_per_run'])} samples "
              f"per run): best cell-attention variant `{t['best']}`: FCD {f['variant mean']:.2f} vs GDSS "
              f"{f['baseline mean']:.2f} (spread {f['seed spread']:.2f}), NSPDK {n['variant mean']:.4f} vs "
              f"{n['baseline mean']:.4f} (spread {n['seed spread']:.4f}) -> target "
              f"{'met' if t['met'] else 'not met'}")
    m = out["moonshot"]
    print(f"moonshot ({m['target']}): {'met' if m['met'] else 'not met'}; lowest FCD {m['lowest_fcd']:.2f} "
          f"({m['lowest_fcd_run']}, validity w/o correction {m['its_validity_wo_correction']:.1f} %)")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
