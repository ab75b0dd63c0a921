"""Peer 1: pyPESTO + AMICI multi-start maximum likelihood on a problem directory.

    python benchmarks/peers/pypesto_amici.py P --out RESULT.json [--starts 10] [--seed 0]
                                             [--max-seconds S] [--cache DIR]

Builds a PEtab (v1) problem from the problem directory ``P`` (contract: README.md):

* model: ``P/model.xml`` as is (homeostasis ``lam_X``, ``base_X`` and any k not in
  ``estimate`` stay fixed at their model.xml values);
* observables: one per species, ``obs_X = X``, Gaussian noise with
  sd = ``noiseParameter1_obs_X``, set per measurement to
  ``max(noise_rel, 1e-3) * max(|y|, 0.01 * median|y_X|)`` -- the brief's
  ``noise_rel * |measured|`` with a floor so that near-zero measurements and the
  noise-free case (noise_rel = 0, where the sd only weights the residuals) stay finite;
* conditions: one per experiment, every species' initial concentration set to its
  measured value at the experiment's first time point (earliest non-missing value,
  else model.xml's, where that one is missing); times are shifted so that each
  experiment starts at 0, and the first-time-point rows, being the initial condition,
  are not fitted; NaN measurements are dropped;
* parameters: ``estimate`` on log10 scale within ``bounds_log10``.

The AMICI model is compiled once per model.xml content and AMICI version, in
``~/.cache/peer-amici/<sha256(model.xml)[:16]>-amici<version>/`` (override with
``--cache`` or ``$PEER_AMICI_CACHE``), under a file lock; it is compiled with
non-estimated parameters kept as (non-constant) parameters, so that the compiled model
does not depend on ``estimate``.

Optimisation: pyPESTO multi-start with its recommended optimizer for ODE models,
Fides (trust region; Hessian = AMICI's Fisher information matrix switching to BFGS,
pyPESTO's default ``HybridFixed``), gradients by AMICI forward sensitivities.
Start points uniform in the log10 bounds from ``numpy.random.default_rng(seed)``.
``--max-seconds`` is a wall budget for all starts together: each start gets Fides'
``maxtime`` = the time left, and starts not begun when it runs out are not run
(``starts`` in the result says how many ran).

RESULT.json (written atomically):
``{"peer": "pypesto+amici", "k": {...}, "best_fval", "starts", "converged_starts",
"wall_s": {"compile", "optimize", "total"}, "n_fun_evals", "versions", ...}`` where
``converged_starts`` counts starts that Fides ended with a convergence flag
(FTOL/XTOL/GTOL) or with "trust region radius too small" (exitflag -5, its usual end
at an optimum of these sharp likelihoods), not with MAXITER/MAXTIME/non-finite/
boundary; ``starts_at_best`` counts those within 0.1 of the best negative
log-likelihood (the waterfall plot's notion of convergence).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _problem import ProblemError, read_problem, versions, write_json_atomic  # noqa: E402

PEER = "pypesto+amici"
NOISE_REL_MIN = 1e-3
FLOOR_FRAC_OF_MEDIAN = 0.01
AT_BEST_TOL = 0.1


def _safe_id(s: str, prefix: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    if not re.match(r"[A-Za-z_]", s):
        s = prefix + s
    return s


def build_petab(prob):
    """PEtab v1 tables for a problem; returns (petab.v1.Problem, notes)."""
    import petab.v1 as petab
    from petab.v1 import C
    from petab.v1.models.sbml_model import SbmlModel

    net = prob.network
    notes = []
    cond_rows, meas = [], []
    used_ids = set()
    noise_rel = max(prob.noise_rel, NOISE_REL_MIN)
    df = prob.measurements
    med = df.assign(a=df["value"].abs()).groupby("metabolite")["a"].median()
    for e in prob.experiments:
        cid = _safe_id(e, "exp_")
        while cid in used_ids:
            cid += "_"
        used_ids.add(cid)
        t0, x0, n = prob.initial_conditions(e)
        notes += n
        cond_rows.append({C.CONDITION_ID: cid, **x0})
        d = df[(df["experiment"] == e) & (df["time"] > t0) & df["value"].notna()]
        floor = np.maximum(FLOOR_FRAC_OF_MEDIAN * d["metabolite"].map(med).fillna(1.0), 1e-12)
        sd = noise_rel * np.maximum(d["value"].abs(), floor)
        meas.append(pd.DataFrame({
            C.OBSERVABLE_ID: "obs_" + d["metabolite"],
            C.SIMULATION_CONDITION_ID: cid,
            C.TIME: d["time"] - t0,
            C.MEASUREMENT: d["value"],
            C.NOISE_PARAMETERS: sd.to_numpy(),
        }))
    measurement_df = pd.concat(meas, ignore_index=True)
    if measurement_df.empty:
        raise ProblemError(f"{prob.path / 'measurements.csv'}: no finite values after "
                           "the first time point of any experiment; nothing to fit")
    condition_df = pd.DataFrame(cond_rows).set_index(C.CONDITION_ID)
    observable_df = pd.DataFrame({
        C.OBSERVABLE_ID: [f"obs_{s}" for s in net.species],
        C.OBSERVABLE_FORMULA: net.species,
        C.NOISE_FORMULA: [f"noiseParameter1_obs_{s}" for s in net.species],
        C.NOISE_DISTRIBUTION: C.NORMAL,
        C.OBSERVABLE_TRANSFORMATION: C.LIN,
    }).set_index(C.OBSERVABLE_ID)
    lo, hi = prob.bounds_log10
    nominal = []
    for p in prob.estimate:
        v = net.parameters[p]
        ok = np.isfinite(v) and v > 0 and lo <= np.log10(v) <= hi
        nominal.append(v if ok else 10 ** ((lo + hi) / 2))
    parameter_df = pd.DataFrame({
        C.PARAMETER_ID: prob.estimate,
        C.PARAMETER_SCALE: C.LOG10,
        C.LOWER_BOUND: 10.0 ** lo,
        C.UPPER_BOUND: 10.0 ** hi,
        C.NOMINAL_VALUE: nominal,
        C.ESTIMATE: 1,
    }).set_index(C.PARAMETER_ID)
    pp = petab.Problem(
        model=SbmlModel.from_file(str(prob.model_xml)),
        condition_df=condition_df,
        measurement_df=measurement_df,
        observable_df=observable_df,
        parameter_df=parameter_df,
    )
    return pp, notes


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def get_model(importer, prob, cache_root: Path):
    """(amici model, compiled_now, model_dir): compile once per model.xml content."""
    import amici

    # The model build runs cmake + swig; the PyPI swig wheel puts `swig` next to this
    # interpreter, which is not on PATH when the venv is not activated.
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    h = prob.model_hash()[:16]
    model_dir = cache_root / f"{h}-amici{amici.__version__}"
    name = f"peer_{h}"
    importer.output_folder = str(model_dir)
    importer.model_name = name
    creator = importer.create_objective_creator()
    marker = model_dir / ".peer-complete"
    with _locked(cache_root / f".{h}.lock"):
        compiled_now = not marker.is_file() or creator._must_compile(False)
        if compiled_now:
            marker.unlink(missing_ok=True)
            # pyPESTO deletes and recreates model_dir.  The build is cmake + ninja;
            # keep it to one job unless the caller asked for more.
            os.environ.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "1")
            model = creator.create_model(force_compile=True, verbose=logging.ERROR,
                                         non_estimated_parameters_as_constants=False)
            marker.write_text(str(prob.model_xml) + "\n")
        else:
            model = creator.create_model(force_compile=False, verbose=logging.ERROR)
    return model, compiled_now, model_dir


def _gnorm(r):
    g = getattr(r, "grad", None)
    if g is None:
        return None
    g = np.asarray(g, dtype=float)
    return float(np.max(np.abs(g))) if g.size and np.all(np.isfinite(g)) else None


def _converged(r) -> bool:
    """Fides stopped by its own local-optimality logic: a convergence flag
    (FTOL/XTOL/GTOL > 0) or DELTA_TOO_SMALL (-5: no step of any trust-region size
    improves f any more -- its usual end at an optimum of these sharp likelihoods,
    where the final gradient is large in absolute terms but the Newton step tiny).
    Not converged: MAXITER, MAXTIME, non-finite values, boundary exceeded."""
    return r.exitflag is not None and (int(r.exitflag) > 0 or int(r.exitflag) == -5)


def _quiet_logs(level=logging.ERROR):
    """AMICI sets its sundials logger to DEBUG and pyPESTO its own to INFO: quiet them
    (failed simulations at extreme start points are expected and handled by Fides)."""
    for name in ["amici", "pypesto", "fides", "petab",
                 *logging.Logger.manager.loggerDict]:
        if name.split(".")[0] in ("amici", "pypesto", "fides", "petab"):
            logging.getLogger(name).setLevel(level)


def run(args) -> dict:
    t_start = time.perf_counter()
    prob = read_problem(args.problem)

    import fides
    import pypesto.optimize as optimize
    from pypesto.petab import PetabImporter

    _quiet_logs()

    pp, notes = build_petab(prob)
    importer = PetabImporter(pp, validate_petab=True)
    cache_root = Path(args.cache or os.environ.get("PEER_AMICI_CACHE")
                      or Path.home() / ".cache" / "peer-amici")
    t0 = time.perf_counter()
    model, compiled_now, model_dir = get_model(importer, prob, cache_root)
    t_compile = time.perf_counter() - t0
    _quiet_logs()

    solver = model.create_solver()
    problem = importer.create_problem(
        model=model, solver=solver, n_threads=1, verbose=logging.ERROR)
    lb, ub = np.asarray(problem.lb), np.asarray(problem.ub)
    rng = np.random.default_rng(args.seed)
    guesses = rng.uniform(lb, ub, size=(args.starts, lb.size))

    deadline = None if args.max_seconds is None else t_start + args.max_seconds
    result = None
    t1 = time.perf_counter()
    n_run = 0
    for i in range(args.starts):
        opts = {fides.Options.MAXITER: args.max_iter}
        if deadline is not None:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            opts[fides.Options.MAXTIME] = float(left)
        optimizer = optimize.FidesOptimizer(options=opts, verbose=logging.ERROR)
        problem.set_x_guesses(guesses[i:i + 1])
        result = optimize.minimize(
            problem=problem, optimizer=optimizer, n_starts=1, ids=[str(i)],
            result=result, progress_bar=False)
        n_run += 1
    t_opt = time.perf_counter() - t1
    if result is None:
        raise RuntimeError("--max-seconds ran out before the first start")

    ors = list(result.optimize_result.list)
    fvals = np.array([r.fval if r.fval is not None else np.inf for r in ors], dtype=float)
    best = ors[int(np.argmin(fvals))]
    names = list(problem.x_names)
    x = np.asarray(best.x, dtype=float)
    scales = pp.parameter_df.loc[names, "parameterScale"]
    k = {n: float(10 ** x[j]) if scales[n] == "log10" else float(x[j]) for j, n in enumerate(names)
         if n in prob.estimate}
    per_start = [{
        "id": r.id, "fval": None if not np.isfinite(f) else float(f),
        "exitflag": int(r.exitflag) if r.exitflag is not None else None,
        "message": str(r.message), "n_fval": r.n_fval, "n_grad": r.n_grad,
        "time_s": r.time, "grad_inf_norm": _gnorm(r),
    } for r, f in zip(ors, fvals)]
    converged = sum(1 for r in ors if _converged(r))
    best_f = float(fvals.min())
    out = {
        "peer": PEER,
        "problem": str(prob.path),
        "k": {p: k[p] for p in prob.estimate},
        "best_fval": best_f,
        "fval_is": "negative log-likelihood (Gaussian, sd per measurement as in the docstring)",
        "starts": n_run,
        "starts_requested": args.starts,
        "converged_starts": converged,
        "starts_at_best": int(np.sum(fvals <= best_f + AT_BEST_TOL)),
        "seed": args.seed,
        "optimizer": "pypesto.optimize.FidesOptimizer (HybridFixed: FIM then BFGS), "
                     "AMICI forward sensitivities",
        "wall_s": {"compile": t_compile, "optimize": t_opt,
                   "total": time.perf_counter() - t_start},
        "compiled_now": compiled_now,
        "model_cache": str(model_dir),
        "n_fun_evals": int(sum(r.n_fval or 0 for r in ors)),
        "n_grad_evals": int(sum(r.n_grad or 0 for r in ors)),
        "per_start": per_start,
        "notes": notes,
        "versions": versions("pypesto", "amici", "fides", "petab", "numpy", "scipy",
                             "python-libsbml"),
    }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problem", help="problem directory (model.xml, measurements.csv, problem.json)")
    ap.add_argument("--out", required=True, help="RESULT.json path")
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="wall budget for the whole run (compile included)")
    ap.add_argument("--max-iter", type=int, default=1000, help="Fides iterations per start")
    ap.add_argument("--cache", default=None, help="compiled-model cache directory")
    args = ap.parse_args(argv)
    if args.starts < 1:
        ap.error("--starts must be >= 1")
    try:
        out = run(args)
    except ProblemError as e:
        print(f"{PEER}: malformed problem: {e}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, out)
    print(f"{PEER}: best fval {out['best_fval']:.6g}, {out['converged_starts']}/{out['starts']} "
          f"converged, {out['starts_at_best']} at best, wall {out['wall_s']['total']:.1f}s "
          f"(compile {out['wall_s']['compile']:.1f}s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
