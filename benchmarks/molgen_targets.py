"""The QM9 targets of the GDSS baseline, read from a finished run (``molgen.pipeline``): metrics on its samples
against the targets and the GDSS paper, training and sampling time against the reference code's speed.

    python benchmarks/molgen_targets.py [--run data/runs/molgen/qm9_gdss_s42] [--json benchmarks/results/molgen_targets.json]

The run must have been trained, sampled and evaluated (``python -m molgen train|sample|evaluate`` or
``molgen.pipeline.run``); nothing is recomputed here. Reference speeds (the GDSS code on this machine, the
brief's numbers): 94 s per QM9 epoch, 586 s for 1,000 samples with 1,000 steps.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from common.io import write_json  # noqa: E402
from molgen.pipeline import read_log, results  # noqa: E402

GDSS_EPOCH_S = 94.0
GDSS_SAMPLE_S_PER_1000 = 586.0
# metric: (target, direction, GDSS paper value); validity in % (the run stores fractions)
PERCENT = ("validity_wo_correction", "validity", "uniqueness", "novelty")
TARGETS = {"validity_wo_correction": (95.0, "min", 95.72), "nspdk": (0.005, "max", 0.003),
           "fcd": (3.0, "max", 2.900)}
SPEEDUP_TARGETS = {"epoch": 4.0, "sampling": 5.0}


def target_table(run_dir: Path) -> dict:
    """Metrics, timings and the verdict of each target for one evaluated run."""
    res = results(run_dir)
    if "fcd" not in res:
        raise SystemExit(f"{run_dir}: no metrics.json; sample and evaluate the run first")
    epoch_s = [r["seconds"] for r in read_log(run_dir) if "seconds" in r]
    median_epoch = statistics.median(epoch_s) if epoch_s else None
    sampling = res["sampling"]
    per_1000 = sampling["seconds_sampling"] / sampling["n_sampled"] * 1000 * 1000 / sampling["steps"]
    rows = []
    for key, (target, direction, paper) in TARGETS.items():
        value = res[key] * 100 if key in PERCENT else res[key]
        met = value >= target if direction == "min" else value <= target
        rows.append({"metric": key, "value": value, "target": f"{'>=' if direction == 'min' else '<='} {target}",
                     "met": bool(met), "gdss_paper": paper})
    speed = {"median_epoch_s": median_epoch, "epoch_speedup": GDSS_EPOCH_S / median_epoch if median_epoch else None,
             "training_s": res["seconds_training"], "epochs": res["epochs"],
             "sampling_s": sampling["seconds_sampling"], "n_sampled": sampling["n_sampled"],
             "steps": sampling["steps"], "sampling_s_per_1000x1000": per_1000,
             "sampling_speedup": GDSS_SAMPLE_S_PER_1000 / per_1000}
    speed["epoch_target_met"] = bool(speed["epoch_speedup"] and speed["epoch_speedup"] >= SPEEDUP_TARGETS["epoch"])
    speed["sampling_target_met"] = bool(speed["sampling_speedup"] >= SPEEDUP_TARGETS["sampling"])
    other = {k: res[k] * 100 if k in PERCENT else res[k] for k in ("validity", "uniqueness", "novelty", "n_samples")
             if k in res}
    return {"run": str(run_dir), "config": res["config"], "seed": res["seed"], "targets": rows, "other": other,
            "speed": speed, "sampling_device": sampling.get("device"), "sampling_commit": sampling.get("commit"),
            "training_sessions": res.get("training_sessions", [])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("data/runs/molgen/qm9_gdss_s42"))
    ap.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    out = target_table(args.run)
    print(f"run {out['run']} (config {out['config']}, seed {out['seed']}, {out['speed']['epochs']} epochs)")
    print(f"{'metric':<24}{'value':>12}  {'target':<10}{'met':<6}{'GDSS paper':>10}")
    for r in out["targets"]:
        print(f"{r['metric']:<24}{r['value']:>12.5g}  {r['target']:<10}{str(r['met']):<6}{r['gdss_paper']:>10}")
    print("other: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.4g}" for k, v in out["other"].items()))
    s = out["speed"]
    print(f"training: {s['training_s'] / 3600:.2f} h over {s['epochs']} epochs, median {s['median_epoch_s']:.1f} s/epoch "
          f"= {s['epoch_speedup']:.1f}x the reference's {GDSS_EPOCH_S:.0f} s (target >= {SPEEDUP_TARGETS['epoch']}x)")
    print(f"sampling: {s['sampling_s']:.0f} s for {s['n_sampled']} molecules x {s['steps']} steps = "
          f"{s['sampling_s_per_1000x1000']:.0f} s per 1,000 x 1,000, {s['sampling_speedup']:.1f}x the reference's "
          f"{GDSS_SAMPLE_S_PER_1000:.0f} s (target >= {SPEEDUP_TARGETS['sampling']}x); device {out['sampling_device']}")
    if args.json:
        write_json(args.json, out)
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
