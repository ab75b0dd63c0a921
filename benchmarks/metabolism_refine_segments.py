"""How long a shooting segment of the trajectory refinement should be, and whether to start on short ones:
the refined estimators (the mass-action oracle; the GNN with its functions corrected, the default fit) on the
measurements benchmark's data (``metabolism_measurements.py``: same networks, designs, simulator and noise)
with segments of different lengths, in one stage or after a first stage on short segments, everything else at
the defaults.

Why it matters: a segment's initial state is free, so each segment spends one sample and n parameters on its
own start, and a short segment sees little of the dynamics that k shapes; a long one sees more, but its
trajectory must stay close to the data from one start (harder for an oscillating system, where a small error
in k shifts the phase, and from a poor start, whose basin is narrower). Rows: R^2 of log10 k over the
determined reactions, flagged, coverage of the 95% intervals, median |delta log10 k|, iterations and CPU
seconds (one thread), per network, seed, sampling interval, noise, estimator, segment length (in sample
intervals; ``0``: the configured default, auto) and first-stage segment (``first_segment``; None: one stage).
The GNN's training is shared with the measurements benchmark's work directory (``--work``), and its CPU
seconds count the training. Rows are appended as they finish, so the benchmark resumes.

    python benchmarks/metabolism_refine_segments.py [--networks ecoli_core oscillatory] [--segments 20 100 500]
        [--estimators mass-action+refine gnn+refine-functions] [--firsts 0 20]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common.provenance import git_commit  # noqa: E402
from metabolism.synthetic import make_problem  # noqa: E402
from metabolism_measurements import DESIGN, network, ours, record, score  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "metabolism_refine_segments.json"


def key(row: dict) -> tuple:
    """Rows before the estimator and first-stage dimensions were the oracle in one stage."""
    return (row["network"], row["seed"], row["dt"], row["noise"], row.get("estimator", "mass-action+refine"),
            row["segment"], row.get("first_segment"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", nargs="+", default=list(DESIGN))
    p.add_argument("--seeds", nargs="+", type=int, default=[901])
    p.add_argument("--dts", nargs="+", type=float, default=[0.1])
    p.add_argument("--noises", nargs="+", type=float, default=[0.01, 0.05])
    p.add_argument("--segments", nargs="+", type=int, default=[20, 100, 500])
    p.add_argument("--estimators", nargs="+", default=["mass-action+refine"],
                   choices=["mass-action+refine", "gnn+refine-functions"])
    p.add_argument("--firsts", nargs="+", type=int, default=[0],
                   help="first-stage segment lengths (0: one stage)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "metabolism_measurements")
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
                    for est in args.estimators:
                        work = args.work / "-".join(str(v) for v in (name, seed, dt, noise, est.partition("+")[0]))
                        for segment in args.segments:
                            for first in args.firsts:
                                cond = {"network": name, "seed": seed, "dt": dt, "noise": noise, "estimator": est,
                                        "segment": segment, "first_segment": first or None}
                                if key(cond) in done:
                                    continue
                                over = [f"refine.first_segment={first or 'null'}"] \
                                    + ([f"refine.segment={segment}"] if segment else [])
                                got = ours(net, pb.data, est, work, over)
                                if first and got["first_segment"] is None:
                                    continue  # the segment is not longer than the first stage's: one stage
                                row = {**cond, **score(net.k, got["k"], got["flagged"], got["lo"], got["hi"]),
                                       "segment_used": got["segment"], "segments": got["segments"],
                                       "iterations": got["refine_iterations"],
                                       "first_iterations": got["first_iterations"],
                                       "rmse_log_end": got["rmse_log_end"], "seconds": got["seconds"],
                                       "cpu_seconds": got["cpu_seconds"], "refine_seconds": got["refine_seconds"],
                                       "commit": git_commit(short=True)}
                                record(rows, row, args.out, "metabolism_refine_segments",
                                       f"{name} seed {seed} dt {dt} noise {noise} {est} segment {segment} first "
                                       f"{first}:")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
