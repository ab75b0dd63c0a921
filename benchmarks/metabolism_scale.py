"""What a fit from measurements costs as the network grows, up to genome scale (iJO1366).

Networks: connected sub-networks of iJO1366 (cobra's package data, converted by ``metabolism.importers``)
grown breadth-first from glucose to a target number of metabolites, and the whole model. For each: kinetics
drawn as in the regimes, 2 experiments of 10 time units sampled every 0.1 with 1% relative noise, simulated
by scipy's BDF with a sparse Jacobian. Measured in a fresh process per size (so that peak memory is that
size's), as CPU seconds of the process (``time.process_time``, one thread: what the step costs, whatever else
shares the machine; the wall time is recorded beside it): simulation, the integral objective, the mass-action least squares (solved, and scored), and the
GNN: building its training rows and the time of one training step (the mean of a few; a full fit is
``steps + 2 * lbfgs_steps`` of them, extrapolated). Power laws in the number of reactions are fitted to the
step time and the memory, and the full genome-scale fit's cost is extrapolated from them and from the
measured step.

    python benchmarks/metabolism_scale.py [--sizes 68 200 500 1000 0]   (0 = the whole model)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

OUT = ROOT / "benchmarks" / "results" / "metabolism_scale.json"


def subnetwork(stoich, n_target: int, start: str = "glc__D_c"):
    """The metabolites reached breadth-first from ``start`` until ``n_target``, and the reactions among them."""
    from metabolism.network import Stoichiometry

    if n_target <= 0 or n_target >= stoich.n_metabolites:
        return stoich
    A = (stoich.R + stoich.P) > 0
    ids = list(stoich.metabolites)
    seen, queue = {ids.index(start)}, deque([ids.index(start)])
    while queue and len(seen) < n_target:
        i = queue.popleft()
        for j in np.flatnonzero(A[i]):
            for k in np.flatnonzero(A[:, j]):
                if k not in seen and len(seen) < n_target:
                    seen.add(k)
                    queue.append(k)
    keep = np.zeros(len(ids), bool)
    keep[list(seen)] = True
    rxn = np.flatnonzero(~(A[~keep].any(0)) & (stoich.R[keep].sum(0) > 0))
    R, P = stoich.R[np.ix_(keep, rxn)], stoich.P[np.ix_(keep, rxn)]
    used = (R + P).sum(1) > 0
    return Stoichiometry(R=R[used], P=P[used], metabolite_ids=tuple(np.array(ids)[keep][used]),
                         reaction_ids=tuple(np.array(stoich.reactions)[rxn]))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one_size(n_target: int, steps: int) -> dict:
    import torch

    from metabolism import massaction as ma
    from metabolism import weakform as wfm
    from metabolism.config import FitConfig
    from metabolism.evaluate import r2_identity
    from metabolism.fit import resolve_window
    from metabolism.importers import load_network
    from metabolism.model import MetabolismGNN
    from metabolism.synthetic import draw_kinetics, make_problem
    from metabolism.train import _batch_loss, stoichiometry_matrix
    from metabolism.windows import WindowData

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    full, _ = load_network("cobra:iJO1366")
    stoich = subnetwork(full, n_target)
    net = draw_kinetics(stoich, seed=901)
    row = {"n_metabolites": stoich.n_metabolites, "n_reactions": stoich.n_reactions,
           "substrate_edges": int((stoich.R > 0).sum())}
    t = time.process_time()
    pb = make_problem(net, n_experiments=2, t_end=10.0, dt=0.1, noise=0.01, seed=901, method="BDF")
    row["simulate_s"] = time.process_time() - t
    cfg = FitConfig()
    window = resolve_window(cfg, pb.data)
    t = time.process_time()
    wf = wfm.build(pb.data, window=window)
    row["objective_s"] = time.process_time() - t
    row["windows"], row["nodes"] = wf.n_windows, int(wf.c.shape[0])
    t = time.process_time()
    lin = ma.fit_linear(stoich, ma.weak_design(stoich, wf))
    row["mass_action_s"] = time.process_time() - t
    lt, ll = np.log10(net.k), np.log10(np.maximum(lin.k, 1e-12))
    det = ~lin.intervals.flagged
    row.update({"mass_action_r2_all": r2_identity(lt, ll),
                "mass_action_r2_determined": r2_identity(lt[det], ll[det]) if det.sum() > 2 else None,
                "mass_action_flagged": int((~det).sum()), "peak_mb_after_mass_action": peak_mb()})
    model = MetabolismGNN(stoich, cfg.model, c_scale=float(np.mean(pb.data.experiments[0].c))).double()
    t = time.process_time()
    rows = WindowData(wf, model)
    row["gnn_rows_s"] = time.process_time() - t
    tc = cfg.training
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr)
    S = stoichiometry_matrix(model)
    var = rows.target.var()
    idx = torch.arange(rows.n_rows)
    times, walls = [], []
    for _ in range(steps):
        t, w = time.process_time(), time.perf_counter()
        loss = _batch_loss(model, rows, idx, S, var, tc, tc.ridge_start, tc.k_average)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.process_time() - t)
        walls.append(time.perf_counter() - w)
    row["gnn_step_s"] = float(np.median(times))
    row["gnn_step_wall_s"] = float(np.median(walls))
    row["gnn_fit_s_extrapolated"] = row["gnn_step_s"] * (tc.steps + 2 * tc.lbfgs_steps)
    row["peak_mb"] = peak_mb()
    row["load_average"] = os.getloadavg()[0]
    return row


def power_law(x: np.ndarray, y: np.ndarray) -> dict:
    b, a = np.polyfit(np.log(x), np.log(y), 1)
    return {"exponent": float(b), "prefactor": float(np.exp(a))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[68, 200, 500, 1000, 0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.steps)))
        return 0
    from common.io import write_json
    from common.provenance import device_name, git_commit

    existing = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    done = {r["target"] for r in existing}
    rows = list(existing)
    for n in args.sizes:
        if n in done:
            continue
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--steps", str(args.steps)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"target": n, "error": proc.stderr[-1500:]})
        else:
            rows.append({"target": n, **json.loads(proc.stdout.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), flush=True)
        ok = [r for r in rows if "error" not in r]
        fits = {}
        if len(ok) >= 3:
            m = np.array([r["n_reactions"] for r in ok], float)
            for key in ("gnn_step_s", "peak_mb", "mass_action_s", "simulate_s"):
                fits[key] = power_law(m, np.array([r[key] for r in ok], float))
        write_json(OUT, {"benchmark": "metabolism_scale", "device": device_name("cpu"), "commit": git_commit(short=True),
                         "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0), "rows": rows,
                         "power_laws_in_reactions": fits})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
