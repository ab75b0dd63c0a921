"""Rate constants from concentrations alone: the estimators side by side on the same data.

Networks: E. coli core (cobra's ``textbook``, converted by ``metabolism.importers``) and the ``oscillatory``
regime on held-out seeds (901-903: no run of the study used them). Kinetics drawn as in the regimes,
trajectories integrated by scipy's LSODA (not the study's own integrator), sampled every 0.1 or 1.0 time
units, relative Gaussian noise 0, 1, 5 or 10%. Design: E. coli core 4 experiments of 50 time units;
oscillatory the regime's own single trajectory of 288 time units. Estimators on each data set:

    gnn           the form-free GNN on the integral objective (``metabolism.fit``, defaults)
    mass-action   least squares that knows the mass-action form, same integral objective (the oracle)
    *+refine      either, refined by trajectory matching (``metabolism.trajectory``: multiple shooting on the
                  samples, intervals from its curvature; the GNN's functions held, its k refined)
    gnn+refine-functions  the GNN refined with its functions corrected too (``refine.functions``)
    fd-ls         the mass-action least squares on central-difference derivatives of the samples
    spline-ls     the same on derivatives of the smoothing splines
    pypesto       pyPESTO + AMICI trajectory fitting (``benchmarks/peers``), on a subset (it costs minutes)
    sindy         weak-form SINDy (``benchmarks/peers``), on the same subset: its free coefficients mapped to k
    sindy-stoich  the same weak features with S diag(k) imposed in the regression (the peer's better mapping)

Scores: R^2 of log10 k against y = x over the reactions each estimator's intervals call determined (and
over all), outliers (|delta log10 k| > 0.3) among them, the flagged count, interval coverage of the true k
(determined reactions; for refined fits also that of the block-robust sandwich's intervals on the same
reactions, ``coverage_robust_determined``), median |delta log10 k|, wall time and CPU time (``cpu_seconds``:
the process's, or the peer subprocess's, on one thread; what the estimator costs whatever else shares the
machine, so the ratios between estimators are taken on it). Rows are appended to the JSON as they finish,
so the benchmark resumes; ``--only`` restricts the estimators, ``--networks``/``--seeds`` the grid, ``--set``
passes fit config overrides to our estimators (a variant's rows go to their own ``--out``; ``refine.*`` overrides
do not change the training, so variants that differ only in them resume the same trained GNN).

    python benchmarks/metabolism_measurements.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from common.io import write_json, write_text  # noqa: E402
from common.provenance import device_name, git_commit  # noqa: E402
from metabolism import massaction as ma  # noqa: E402
from metabolism import weakform as wfm  # noqa: E402
from metabolism.config import load_config, load_fit_config  # noqa: E402
from metabolism.evaluate import r2_identity  # noqa: E402
from metabolism.fit import K_FLOOR, fit_data  # noqa: E402
from metabolism.importers import load_network  # noqa: E402
from metabolism.network import generate_network  # noqa: E402
from metabolism.sbml import sid, write_sbml  # noqa: E402
from metabolism.synthetic import draw_kinetics, make_problem  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "metabolism_measurements.json"
PEERS_PY = Path(os.environ.get("PEERS_PYTHON", "/work/peers-venv/bin/python"))
DESIGN = {"ecoli_core": {"n_experiments": 4, "t_end": 50.0}, "oscillatory": {"n_experiments": 1, "t_end": 288.0}}
SEEDS = (901, 902, 903)
DTS = (0.1, 1.0)
NOISES = (0.0, 0.01, 0.05, 0.10)
PEER_SUBSET = {"network": "ecoli_core", "dt": 0.1, "noise": (0.01, 0.05), "seed": 901}


def network(name: str, seed: int):
    if name == "ecoli_core":
        stoich, _ = load_network("cobra:textbook")
        return draw_kinetics(stoich, seed)
    cfg = load_config(regime=name, seed=seed)
    return generate_network(cfg.network, seed)


def score(k_true: np.ndarray, k: np.ndarray, flagged: np.ndarray, lo: np.ndarray | None = None,
          hi: np.ndarray | None = None, threshold: float = 0.3) -> dict:
    """k against the truth in log10: R^2 against y = x, outliers beyond ``threshold``, the median error (absolute,
    and signed over the determined reactions: a bias shared by every k shows there) and the intervals' coverage."""
    lt, ll = np.log10(k_true), np.log10(np.maximum(k, K_FLOOR))
    det = ~flagged
    diff = ll - lt
    err = np.abs(diff)
    out = {"r2_all": r2_identity(lt, ll), "r2_determined": r2_identity(lt[det], ll[det]) if det.sum() > 2 else None,
           "n_reactions": int(lt.size), "flagged": int(flagged.sum()),
           "outliers_determined": int((err[det] > threshold).sum()), "outliers_all": int((err > threshold).sum()),
           "median_abs_error": float(np.median(err)),
           "median_error_determined": float(np.median(diff[det])) if det.any() else None}
    if lo is not None:
        inside = (k_true >= lo) & (k_true <= hi)
        out["coverage_determined"] = float(inside[det].mean()) if det.any() else None
        out["coverage_all"] = float(inside.mean())
    return out


def derivative_peer(stoich, data, kind: str) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    c, d = wfm.finite_differences(data) if kind == "fd-ls" else wfm.spline_derivatives(data)
    fit = ma.fit_linear(stoich, ma.derivative_design(stoich, c, d))
    I = fit.intervals
    return {"k": fit.k, "flagged": I.flagged | (fit.k <= 0), "lo": I.lo, "hi": I.hi,
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def ours(stoich, data, estimator: str, workdir: Path, extra: list[str] | tuple[str, ...] = ()) -> dict:
    """One of our estimators through ``fit_data``. The GNN's variants share one training per data set (the
    work directory is the base estimator's): a checkpoint left there by an earlier fit is resumed, and its
    training CPU seconds (cumulative over the processes that made it) are added to this call's, so that
    ``cpu_seconds`` is always the whole fit's cost (``cpu_whole``). ``extra``: more config overrides."""
    base, _, refine = estimator.partition("+")
    overrides = [f"estimator={base}", f"refine.enabled={'true' if refine else 'false'}",
                 f"refine.functions={'true' if refine == 'refine-functions' else 'false'}", *extra]
    checkpoint = workdir / "checkpoint.pt"
    prior = float(torch.load(checkpoint, weights_only=False).get("cpu_seconds", np.nan)) if checkpoint.exists() \
        else 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = load_fit_config(overrides=overrides)
    res = fit_data(stoich, data, cfg, out=workdir, progress=False)
    I = res.intervals
    training = res.report["training"]
    more = {}
    if refine:
        r = res.report["refine"]
        first = r.get("first_stage") or {}
        more = {"refine_seconds": r["seconds"], "refine_iterations": r["iterations"], "segment": r["segment_length"],
                "first_segment": first.get("segment_length"), "first_iterations": first.get("iterations"),
                "rmse_log_start": r["rmse_log_start"], "rmse_log_end": r["rmse_log_end"], "segments": r["segments"],
                "robust_blocks": r.get("blocks")}
        if refine == "refine-functions":
            more["node_degree"] = cfg.refine.node_degree
        if r.get("sd_log_k_robust") is not None:
            half = stats.norm.ppf(0.5 + res.report["intervals"]["level"] / 2) * np.asarray(r["sd_log_k_robust"])
            more.update(lo_robust=res.k * np.exp(-half), hi_robust=res.k * np.exp(half))
    return {**more, "k": res.k, "flagged": I.flagged, "lo": I.lo, "hi": I.hi, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0 + prior, "cpu_whole": bool(np.isfinite(prior)),
            "training_seconds": training["seconds"], "training_cpu_seconds": training["cpu_seconds"],
            "resumed": checkpoint.exists() and prior > 0, "window": res.report["objective"]["window"],
            "c_ref": res.report["gauge"]["c_ref"]}


def write_problem(directory: Path, net, data, noise: float) -> list[str]:
    """The peers' problem directory (``benchmarks/peers/README.md``) for ``net`` and ``data``."""
    directory.mkdir(parents=True, exist_ok=True)
    write_sbml(net, directory / "model.xml")
    frame = data.to_frame()
    frame["metabolite"] = frame["metabolite"].map({m: sid(m) for m in net.metabolites})
    write_text(directory / "measurements.csv", frame.to_csv(index=False, float_format="%.12g"))
    params = [f"k_{sid(r)}" for r in net.reactions]
    write_json(directory / "problem.json", {"noise_rel": noise, "estimate": params, "bounds_log10": [-5, 2]})
    return params


def peer(kind: str, net, data, noise: float, workdir: Path, starts: int = 10,
         max_seconds: float | None = None) -> dict:
    """Run a peer in its own virtualenv on the problem directory of these data (``sindy-stoich`` reads the
    ``sindy`` result of the same data when it exists: one fit gives both mappings). pyPESTO stops beginning
    new starts after ``max_seconds`` of wall time; the starts it ran are in the row."""
    program = "pypesto" if kind == "pypesto" else "sindy"
    workdir = workdir.parent / workdir.name.replace(kind, program)
    params = write_problem(workdir, net, data, noise)
    script = ROOT / "benchmarks" / "peers" / ("pypesto_amici.py" if program == "pypesto" else "sindy_weak.py")
    result = workdir / f"{program}.json"
    cmd = [str(PEERS_PY), str(script), str(workdir), "--out", str(result)]
    if program == "pypesto":
        cmd += ["--starts", str(starts), "--seed", "0"]
        if max_seconds is not None:
            cmd += ["--max-seconds", f"{max_seconds:g}"]
    t0, u0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if not (kind == "sindy-stoich" and result.exists()):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} failed: {proc.stderr[-2000:]}")
    got = json.loads(result.read_text())
    field = "k_stoich" if kind == "sindy-stoich" else "k"
    k = np.array([got[field][p] for p in params])
    u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"k": k, "flagged": np.zeros(k.size, bool), "lo": None, "hi": None,
            "seconds": time.perf_counter() - t0, "peer_wall_s": got.get("wall_s"),
            "cpu_seconds": (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime),
            "starts": got.get("starts"), "converged_starts": got.get("converged_starts"),
            "starts_asked": starts if program == "pypesto" else None, "max_seconds": max_seconds}


def conditions(networks, seeds, estimators, noises=NOISES, dts=DTS) -> list[dict]:
    out = []
    for seed in seeds:  # seed-major: a partial run covers every condition once
        for name in networks:
            for dt in dts:
                for noise in noises:
                    for est in estimators:
                        if est in ("pypesto", "sindy", "sindy-stoich") and not (
                                name == PEER_SUBSET["network"] and dt == PEER_SUBSET["dt"]
                                and noise in PEER_SUBSET["noise"] and seed == PEER_SUBSET["seed"]):
                            continue
                        out.append({"network": name, "seed": seed, "dt": dt, "noise": noise, "estimator": est})
    return out


def save_rows(path: Path, benchmark: str, rows: list[dict]) -> None:
    """The rows so far, with the machine and thread count, atomically (a killed benchmark resumes from them)."""
    write_json(path, {"benchmark": benchmark, "device": device_name("cpu"), "threads": torch.get_num_threads(),
                      "rows": rows})


def record(rows: list[dict], row: dict, path: Path, benchmark: str, label: str) -> None:
    """Append ``row``, save all rows (the benchmark resumes from them) and print its scores after ``label``."""
    rows.append(row)
    save_rows(path, benchmark, rows)
    r2, cov = row.get("r2_determined"), row.get("coverage_determined")
    print(f"{label} R2det {r2 if r2 is None else round(r2, 4)} flagged {row.get('flagged')} "
          f"cov {cov if cov is None else round(cov, 2)} {row.get('cpu_seconds', 0):.0f} CPU s {row.get('error', '')}",
          flush=True)


def key(row: dict) -> tuple:
    return row["network"], row["seed"], row["dt"], row["noise"], row["estimator"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", nargs="+", default=list(DESIGN))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--only", nargs="+", default=["mass-action", "fd-ls", "spline-ls", "gnn", "pypesto", "sindy",
                                                 "sindy-stoich", "mass-action+refine", "gnn+refine",
                                                 "gnn+refine-functions"])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--pypesto-starts", type=int, default=10)
    p.add_argument("--pypesto-max-seconds", type=float, default=None,
                   help="pyPESTO begins no new start after this many seconds (its row records the starts run)")
    p.add_argument("--noises", nargs="+", type=float, default=list(NOISES))
    p.add_argument("--dts", nargs="+", type=float, default=list(DTS))
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="fit config overrides for our estimators (e.g. model.c_ref=1); the rows record them")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "metabolism_measurements")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of our estimators (the peers' processes run on one); CPU seconds are "
                        "comparable at one: more oversubscribe a shared machine and inflate them")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {"rows": []}
    done = {key(r) for r in existing["rows"]}
    rows = existing["rows"]
    cache: dict = {}
    for cond in conditions(args.networks, args.seeds, args.only, args.noises, args.dts):
        if key(cond) in done:
            continue
        ck = (cond["network"], cond["seed"], cond["dt"], cond["noise"])
        if ck not in cache:
            cache.clear()
            net = network(cond["network"], cond["seed"])
            d = DESIGN[cond["network"]]
            cache[ck] = (net, make_problem(net, d["n_experiments"], d["t_end"], cond["dt"], cond["noise"],
                                           seed=cond["seed"]))
        net, pb = cache[ck]
        est = cond["estimator"]
        work = args.work / "-".join([*(str(v) for v in key({**cond, "estimator": est.partition("+")[0]})),
                                     *(o for o in args.overrides if not o.startswith("refine."))])
        try:
            if est in ("fd-ls", "spline-ls"):
                got = derivative_peer(net, pb.data, est)
            elif est in ("pypesto", "sindy", "sindy-stoich"):
                got = peer(est, net, pb.data, cond["noise"], work, args.pypesto_starts, args.pypesto_max_seconds)
            else:
                got = ours(net, pb.data, est, work, args.overrides)
            row = {**cond, **score(net.k, got["k"], got["flagged"], got["lo"], got["hi"]),
                   **{k: v for k, v in got.items() if k not in ("k", "flagged", "lo", "hi", "lo_robust", "hi_robust")}}
            if "lo_robust" in got:
                robust = score(net.k, got["k"], got["flagged"], got["lo_robust"], got["hi_robust"])
                row.update(coverage_robust_determined=robust["coverage_determined"],
                           coverage_robust_all=robust["coverage_all"])
        except Exception as err:  # a failed estimator is a result too: recorded, not retried
            row = {**cond, "error": f"{type(err).__name__}: {err}"[:2000]}
        design = DESIGN[cond["network"]]
        row.update({"overrides": args.overrides, "threads": torch.get_num_threads(),
                    "n_metabolites": net.n_metabolites, "n_experiments": design["n_experiments"],
                    "t_end": design["t_end"], "commit": git_commit(short=True)})
        record(rows, row, args.out, "metabolism_measurements",
               f"{cond['network']:12s} seed {cond['seed']} dt {cond['dt']:<4} noise {cond['noise']:<5} {est:12s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
