"""The fused kernels as torch operators (``torch.ops.molgen``) against the ctypes wrappers they replaced, in one
process, interleaved: CPU milliseconds of a training step (denoising score-matching loss of both networks and
its backward) and of a short sampling run, for the committed GDSS, CAN and CAN+ring runs, one thread.

    python benchmarks/molgen_kernel_ops.py [--before REV] [--reps 30] [--json OUT]

``--before``: the git revision whose ``lib/molgen/nets/kernels.py`` is the baseline (default 7685a34, the last
with the ctypes wrappers alone). Both modules call the same compiled library; the networks are switched between
them before every measurement (alternating which goes first), so that both see the same load of a shared
machine. The outputs of the two are compared bitwise on the first step.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from common.io import write_json  # noqa: E402
from common.provenance import device_name, git_commit  # noqa: E402
from molgen.build import build_sampler, build_sdes  # noqa: E402
from molgen.data import load_dataset, node_flags  # noqa: E402
from molgen.losses import dsm_loss  # noqa: E402
from molgen.nets import kernels as new  # noqa: E402
from molgen.nets.score import GraphScore  # noqa: E402
from molgen.sampling import sample_flags  # noqa: E402
from molgen.train import load_run  # noqa: E402

RUNS = {"gdss": "gdss_s42", "can": "can_s42", "can_feat_ring": "can_feat_ring_s42"}
NAMES = ("gmh", "mlp", "elu", "can_attend", "score_a_forward")


def baseline(rev: str):
    """The kernels module of ``rev``, loaded beside this checkout's (same compiled library)."""
    text = subprocess.run(["git", "show", f"{rev}:lib/molgen/nets/kernels.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "kernels_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("kernels_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.SOURCE = new.SOURCE
    return mod


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default="7685a34")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--sample-reps", type=int, default=10)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/molgen_kernel_ops.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    old = baseline(args.before)
    impl = {"operators": {n: getattr(new, n) for n in NAMES}, "before": {n: getattr(old, n) for n in NAMES}}
    results, t_start = {}, time.time()
    for variant, run in RUNS.items():
        cfg, net_x, net_a, ckpt = load_run(ROOT / "data/runs/molgen/ablation" / run)
        torch.set_num_threads(1)
        sde_x, sde_a = build_sdes(cfg)
        ds = load_dataset(cfg.data.dataset, cache_dir=ROOT / "data/cache", atom_features=cfg.data.atom_features,
                          download=False)
        X, A, F = ds.X_train.float(), ds.A_train.float(), node_flags(ds.X_train)
        sampler = build_sampler(cfg, sde_x, sde_a, 10)
        flags = sample_flags(ckpt["n_atoms_counts"], 500, cfg.data.max_node_num,
                             generator=torch.Generator().manual_seed(0))
        times: dict = {w: {"train_ms": [], "sample_ms": []} for w in impl}
        same = None
        for rep in range(args.reps + 1):
            order = ("before", "operators") if rep % 2 else ("operators", "before")
            grads = {}
            for which in order:
                for n in NAMES:
                    setattr(new, n, impl[which][n])
                gen = torch.Generator().manual_seed(rep)
                idx = torch.randint(0, X.shape[0], (cfg.data.batch_size,), generator=gen)
                net_x.train(), net_a.train()
                net_x.zero_grad(), net_a.zero_grad()
                t0 = time.process_time()
                lx, la = dsm_loss(net_x, net_a, sde_x, sde_a, X[idx], A[idx], F[idx], eps=cfg.train.eps,
                                  reduce_mean=cfg.train.reduce_mean, generator=gen)
                (lx + la).backward()
                elapsed = time.process_time() - t0
                grads[which] = torch.cat([q.grad.reshape(-1) for q in (*net_x.parameters(), *net_a.parameters())
                                          if q.grad is not None])
                if rep:  # the first is a warm-up
                    times[which]["train_ms"].append(1e3 * elapsed)
                if rep and rep <= args.sample_reps:
                    net_x.eval(), net_a.eval()
                    with torch.inference_mode():
                        t0 = time.process_time()
                        sampler(GraphScore(net_x, net_a, sde_x, sde_a), flags, cfg.data.max_feat_num,
                                generator=torch.Generator().manual_seed(rep))
                        times[which]["sample_ms"].append(1e3 * (time.process_time() - t0))
            if same is None:
                same = bool(torch.equal(grads["before"], grads["operators"]))
        for n in NAMES:
            setattr(new, n, impl["operators"][n])
        med = {w: {k: statistics.median(v) for k, v in t.items()} for w, t in times.items()}
        results[variant] = {"run": run, "median": med, "gradients_bitwise_equal": same,
                            "operators_over_before": {k: med["operators"][k] / med["before"][k] for k in med["before"]},
                            "samples": len(flags), "sampler_steps": 10, "batch": cfg.data.batch_size, "raw": times}
        print(f"{variant:14s} train {med['before']['train_ms']:.1f} -> {med['operators']['train_ms']:.1f} ms, "
              f"sampling {med['before']['sample_ms']:.0f} -> {med['operators']['sample_ms']:.0f} ms, "
              f"gradients bitwise equal: {same}", flush=True)
    write_json(args.json, {"benchmark": "molgen_kernel_ops", "before": args.before, "after": git_commit(),
                           "device": device_name("cpu"), "threads": 1, "loadavg": os.getloadavg(),
                           "wall_s": time.time() - t_start, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
