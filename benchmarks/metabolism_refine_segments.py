"""How long a shooting segment of the trajectory refinement should be: the mass-action oracle refined on the
measurements benchmark's data (``metabolism_measurements.py``: same networks, designs, simulator and noise)
with segments of different lengths, everything else at the defaults.

Why it matters: a segment's initial state is free, so each segment spends one sample and n parameters on its
own start, and a short segment sees little of the dynamics that k shapes; a long one sees more, but its
trajectory must stay close to the data from one start (harder for an oscillating system, where a small error
in k shifts the phase). Rows: R^2 of log10 k over the determined reactions, flagged, coverage of the 95%
intervals, median |delta log10 k|, iterations and CPU seconds (one thread), per network, seed, sampling
interval, noise and segment length (in sample intervals; ``0``: the configured default). Rows are appended as
they finish, so the benchmark resumes.

    python benchmarks/metabolism_refine_segments.py [--networks ecoli_core oscillatory] [--segments 20 100 500]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common.provenance import git_commit  # noqa: E402
from metabolism.config import load_fit_config  # noqa: E402
from metabolism.fit import fit_data  # noqa: E402
from metabolism.synthetic import make_problem  # noqa: E402
from metabolism_measurements import DESIGN, network, save_rows, score  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "metabolism_refine_segments.json"


def key(row: dict) -> tuple:
    return row["network"], row["seed"], row["dt"], row["noise"], row["segment"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", nargs="+", default=list(DESIGN))
    p.add_argument("--seeds", nargs="+", type=int, default=[901])
    p.add_argument("--dts", nargs="+", type=float, default=[0.1])
    p.add_argument("--noises", nargs="+", type=float, default=[0.01, 0.05])
    p.add_argument("--segments", nargs="+", type=int, default=[20, 100, 500])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    done = {key(r) for r in rows}
    for name in args.networks:
        for seed in args.seeds:
            net = network(name, seed)
            d = DESIGN[name]
            for dt in args.dts:
                for noise in args.noises:
                    pb = make_problem(net, d["n_experiments"], d["t_end"], dt, noise, seed=seed)
                    for segment in args.segments:
                        cond = {"network": name, "seed": seed, "dt": dt, "noise": noise, "segment": segment}
                        if key(cond) in done:
                            continue
                        over = ["estimator=mass-action", "refine.enabled=true"] \
                            + ([f"refine.segment={segment}"] if segment else [])
                        t0, c0 = time.perf_counter(), time.process_time()
                        res = fit_data(net, pb.data, load_fit_config(overrides=over), progress=False)
                        I, ref = res.intervals, res.report["refine"]
                        row = {**cond, **score(net.k, res.k, I.flagged, I.lo, I.hi),
                               "segment_used": ref["segment_length"], "segments": ref["segments"],
                               "iterations": ref["iterations"], "rmse_log_end": ref["rmse_log_end"],
                               "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                               "commit": git_commit(short=True)}
                        rows.append(row)
                        save_rows(args.out, "metabolism_refine_segments", rows)
                        print(f"{name} seed {seed} dt {dt} noise {noise} segment {segment}: R2det "
                              f"{row['r2_determined']:.4f} flagged {row['flagged']} coverage "
                              f"{row['coverage_determined']:.2f} {row['cpu_seconds']:.0f} CPU s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
