"""The metabolism targets of issue 2, measured: rate constants, rollout, homeostasis, wall time, per seed.

    python benchmarks/metabolism_targets.py                       # oscillatory, seeds 42 1 2 3 4, + homeostatic
    python benchmarks/metabolism_targets.py --regimes oscillatory --seeds 42 --set training.steps=500

Runs are kept in --runs (resumable: a finished phase is not redone when its files exist) and the table is
printed and written to --out as JSON with the commit, device and parameters.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from metabolism import pipeline
from metabolism.config import load_config
from common.io import write_json
from common.provenance import git_commit


def _row(m: dict) -> dict:
    rc, ro, h = m["rate_constants"], m["rollout"], m["homeostasis"]
    st = ro.get("stats_rel_error", {})
    return {
        "regime": m["regime"], "seed": m["seed"], "r2_log_k": rc["r2_log_k"], "slope": rc["slope"],
        "n_outliers": rc["n_outliers"], "max_dlogk": rc["max_abs_error_log_k"],
        "horizon": ro["horizon_steps"], "rollout_r2": ro.get("r2"), "stats_mean": st.get("mean"),
        "stats_std": st.get("std"), "stats_rank": st.get("activity_rank"),
        "lambda_rel": h["lambda_rel_error"], "baseline_abs": h["baseline_abs_error"],
        "sub_max_rel": m["substrate_function"]["max_rel_error"], "cluster_acc": m["embedding"]["cluster_accuracy"],
        "wall_s": None if None in m["timing"].values() else sum(m["timing"].values()),
    }


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regimes", nargs="+", default=["oscillatory", "homeostatic"])
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2, 3, 4])
    p.add_argument("--homeostatic-seeds", nargs="+", type=int, default=[42])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--runs", type=Path, default=Path("runs/benchmarks"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/metabolism_targets.json"))
    args = p.parse_args()
    rows = []
    for regime in args.regimes:
        seeds = args.homeostatic_seeds if regime == "homeostatic" else args.seeds
        for seed in seeds:
            cfg = load_config(regime=regime, overrides=args.overrides, seed=seed)
            out = args.runs / f"{regime}-{seed}"
            t0 = time.perf_counter()
            metrics = pipeline.run(cfg, out, progress=False)
            row = _row(metrics)
            row["wall_s_this_invocation"] = time.perf_counter() - t0
            rows.append(row)
            print(" | ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    write_json(args.out, {
        "commit": git_commit(short=True), "device": str(pipeline.resolve_device()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "overrides": args.overrides,
        "rows": rows,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
