"""Peer 2: weak-form SINDy (pysindy) with the network's own mass-action library.

    python benchmarks/peers/sindy_weak.py P --out RESULT.json [--K 200] [--H 1.5] [--p 4]
                                          [--threshold 0.005] [--seed 0]

Data: every experiment of ``P/measurements.csv`` is one trajectory (pysindy's multiple
trajectories) on the common time grid; missing values (NaN) are filled by linear
interpolation in time within each experiment and species (nearest value at the ends;
counted in the result).  All experiments must share one time grid, since pysindy's
``WeakPDELibrary`` takes a single spatiotemporal grid.

Library (a pysindy ``CustomLibrary`` wrapped in ``WeakPDELibrary``): a constant, the
linear term of every species (homeostasis ``lam_X (base_X - X)``), and one column per
distinct reactant monomial ``prod_i c_i^{R_ij}`` of the network read from
``model.xml`` that is not already one of those (first-order monomials are the linear
terms).  Weak form: ``K`` test-function subdomains of half-width ``H`` time units,
polynomial test functions of degree ``p`` (pysindy's defaults are K=100,
H=L/20, p=4); subdomain centres come from ``numpy.random.seed(seed)``.

Fits: ``STLSQ(threshold=0, alpha=0)`` (plain least squares, the headline "k") and one
thresholded ``STLSQ(threshold=--threshold, alpha=0)`` (reported under "stlsq"; the
default threshold is half the smallest known ``lam_X``: the homeostasis coefficients
``-lam_X`` are the smallest true terms, and a threshold above them (0.005 was tried
first) deletes them and biases the k that share those columns -- one k of seed 2 went
negative even on noise-free data).

Mapping coefficients to k: the coefficient xi[i, m] of monomial m in species i's
equation estimates ``sum_{j: m(j) = m} S_ij k_j`` (S = products minus reactants), minus
``lam_i`` when m is species i's own linear term (known, added back).  For each monomial
the k_j of the reactions that share it are the least-squares solution of that system
over the species; with one reaction per monomial this is
``k_j = sum_i S_ij xi_ij / sum_i S_ij^2`` as in the brief.

A better mapping exists and is reported as well ("k_stoich"): impose the structure
Xi = S diag(k) before fitting, i.e. regress the stacked weak targets of all species
(minus the known homeostasis terms) on ``S_ij * Theta_w[:, m(j)]`` with the k_j as the
only unknowns (one least-squares problem with n_reactions unknowns, using the same
pysindy weak features and targets).  That uses every species' data for every k with
the right weights and leaves no free coefficients for noise to fit (xi of monomials that
occur in no reaction of a species are forced to 0), instead of fitting
n_species x n_features free coefficients and projecting afterwards.

k <= 0 (which least squares can return) is reported raw under "k_raw" and clipped to
10**bounds_log10[0] in "k", so that log10 k is defined for scoring.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _problem import ProblemError, read_problem, versions, write_json_atomic  # noqa: E402

PEER = "pysindy-weak"


def monomials(net):
    """Library columns: list of (name, {species_index: power}); and per reaction its
    column index."""
    idx = {s: i for i, s in enumerate(net.species)}
    cols = [("1", {})] + [(s, {idx[s]: 1}) for s in net.species]
    key_to_col = {(): 0}
    for i, s in enumerate(net.species):
        key_to_col[((i, 1),)] = i + 1
    rcol = []
    for r in net.reactions:
        powers = {idx[s]: (int(v) if float(v).is_integer() else float(v)) for s, v in r.reactants.items()}
        key = tuple(sorted(powers.items()))
        if key not in key_to_col:
            key_to_col[key] = len(cols)
            name = " ".join(net.species[i] + (f"^{p}" if p != 1 else "") for i, p in key)
            cols.append((name, powers))
        rcol.append(key_to_col[key])
    return cols, rcol


def make_function(powers, n):
    """A function of all n species (arity n, so CustomLibrary makes exactly one column)."""
    items = sorted(powers.items())

    def f(*x):
        out = np.ones_like(x[0])
        for i, p in items:
            out = out * x[i] ** p
        return out

    return _with_arity(f, n)


def _with_arity(f, n):
    # pysindy's CustomLibrary counts a function's arguments with inspect.signature /
    # __code__.co_argcount; build an explicit n-argument wrapper.
    args = ", ".join(f"x{i}" for i in range(n))
    ns = {"_f": f}
    exec(f"def g({args}):\n    return _f({args})\n", ns)
    return ns["g"]


def fill_missing(t, Y):
    n_filled = 0
    Y = Y.copy()
    for j in range(Y.shape[1]):
        col = Y[:, j]
        ok = np.isfinite(col)
        if ok.all():
            continue
        if not ok.any():
            return None, None
        n_filled += int((~ok).sum())
        Y[:, j] = np.interp(t, t[ok], col[ok])
    return Y, n_filled


def map_to_k(xi, S, rcol, net):
    """k from free coefficients xi[n_species, n_features] (see module docstring)."""
    xi = np.array(xi, dtype=float)
    for i, s in enumerate(net.species):
        xi[i, i + 1] += net.lam[s]  # add back the known -lam_X X of out_X
    k = np.full(len(rcol), np.nan)
    rcol = np.asarray(rcol)
    for m in np.unique(rcol):
        js = np.flatnonzero(rcol == m)
        A = S[:, js]
        sol, *_ = np.linalg.lstsq(A, xi[:, m], rcond=None)
        k[js] = sol
    return k


def fit(args) -> dict:
    t_start = time.perf_counter()
    prob = read_problem(args.problem)
    net = prob.network

    import pysindy as ps

    trajs, grid, n_filled, notes = [], None, 0, []
    for e in prob.experiments:
        t, Y = prob.wide(e)
        Yf, nf = fill_missing(t, Y)
        if Yf is None:
            raise ProblemError(f"{prob.path / 'measurements.csv'}: experiment {e!r} has a "
                               "species with no value at all; weak SINDy needs every species")
        n_filled += nf
        if grid is None:
            grid = t
        elif t.shape != grid.shape or not np.allclose(t - t[0], grid - grid[0], rtol=0,
                                                      atol=1e-9 * max(1.0, abs(grid[-1]))):
            raise ProblemError(
                f"{prob.path / 'measurements.csv'}: experiment {e!r} has a different time "
                "grid from the first experiment; pysindy's WeakPDELibrary takes one grid "
                "for all trajectories")
        trajs.append(Yf)
    grid = grid - grid[0]
    if len(grid) < 10:
        raise ProblemError(f"{prob.path / 'measurements.csv'}: {len(grid)} time points "
                           "per experiment; weak SINDy needs many more")
    L = float(grid[-1] - grid[0])
    H = args.H if args.H is not None else L / 20

    cols, rcol = monomials(net)
    n = len(net.species)
    funcs = [make_function(p, n) for _, p in cols]
    names = [(lambda nm: (lambda *x: nm))(nm) for nm, _ in cols]
    S = net.stoichiometry()

    def weak_library():
        np.random.seed(args.seed)
        custom = ps.CustomLibrary(library_functions=funcs, function_names=names,
                                  include_bias=False)
        return ps.WeakPDELibrary(function_library=custom, spatiotemporal_grid=grid,
                                 K=args.K, H_xt=[H], p=args.p,
                                 derivative_order=0)

    def sindy_fit(threshold):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lib = weak_library()
        opt = ps.STLSQ(threshold=threshold, alpha=0.0, max_iter=50)
        model = ps.SINDy(optimizer=opt, feature_library=lib)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.random.seed(args.seed)
            model.fit([Y.copy() for Y in trajs], t=grid, feature_names=list(net.species))
        return model, lib

    t1 = time.perf_counter()
    model0, lib0 = sindy_fit(0.0)
    feat = list(model0.get_feature_names())
    if len(feat) != len(cols):
        raise RuntimeError(f"pysindy produced {len(feat)} features, expected {len(cols)}: {feat}")
    xi0 = model0.coefficients()
    k0_raw = map_to_k(xi0, S, rcol, net)

    # Weak features and targets as pysindy computes them, for the structured fit.
    thetas, targets = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lib = weak_library()
        lib.fit([trajs[0]])
        for Y in trajs:
            Theta = np.asarray(lib.transform([Y])[0])
            _, xd = lib.calc_trajectory(
                None, ps.AxesArray(Y, {"ax_sample": 0, "ax_coord": 1}), grid)
            thetas.append(Theta)
            targets.append(np.asarray(xd))
    Theta = np.vstack(thetas)
    Ydot = np.vstack(targets)
    # check against pysindy's own LS fit
    xi_check, *_ = np.linalg.lstsq(Theta, Ydot, rcond=None)
    consistency = float(np.max(np.abs(xi_check - xi0.T)) / max(np.max(np.abs(xi0)), 1e-30))
    known = np.zeros_like(Ydot)
    for i, s in enumerate(net.species):
        known[:, i] = net.lam[s] * net.base[s] * Theta[:, 0] - net.lam[s] * Theta[:, i + 1]
    # k not in 'estimate' are known (model.xml values): move them to the known side.
    est = [j for j, r in enumerate(net.reactions) if r.k_param in prob.estimate]
    for j, r in enumerate(net.reactions):
        if r.k_param not in prob.estimate:
            for i in range(len(net.species)):
                known[:, i] += S[i, j] * net.parameters[r.k_param] * Theta[:, rcol[j]]
    A = np.vstack([np.column_stack([S[i, j] * Theta[:, rcol[j]] for j in est])
                   for i in range(len(net.species))])
    b = (Ydot - known).T.reshape(-1)
    k_stoich_raw = np.full(len(rcol), np.nan)
    k_stoich_raw[est] = np.linalg.lstsq(A, b, rcond=None)[0]

    threshold = args.threshold if args.threshold is not None else 0.5 * min(net.lam.values())
    model_t, _ = sindy_fit(threshold)
    xit = model_t.coefficients()
    kt_raw = map_to_k(xit, S, rcol, net)
    t_fit = time.perf_counter() - t1

    lo = 10.0 ** prob.bounds_log10[0]
    hi = 10.0 ** prob.bounds_log10[1]

    def kdict(kraw):
        return {r.k_param: float(np.clip(v, lo, hi)) if np.isfinite(v) else lo
                for r, v in zip(net.reactions, kraw) if r.k_param in prob.estimate}

    def rawdict(kraw):
        return {r.k_param: float(v) for r, v in zip(net.reactions, kraw)
                if r.k_param in prob.estimate}

    def coefs(xi):
        return {s: {feat[m]: float(xi[i, m]) for m in range(len(feat)) if xi[i, m] != 0}
                for i, s in enumerate(net.species)}

    n_clipped = int(sum(1 for v in k0_raw if not (np.isfinite(v) and lo <= v <= hi)))
    not_estimated = [r.k_param for r in net.reactions if r.k_param not in prob.estimate]
    if not_estimated:
        notes.append(f"k not in 'estimate' ({not_estimated}): free fits ('k', 'stlsq') fit "
                     "them too (not reported); 'k_stoich' holds them at model.xml values")
    shared = len(set(rcol)) < len(rcol)
    if shared:
        notes.append("some reactions share a reactant monomial; their k come from a joint "
                     "least-squares over the species")
    return {
        "peer": PEER,
        "problem": str(prob.path),
        "k": kdict(k0_raw),
        "k_raw": rawdict(k0_raw),
        "k_clipped_to_bounds": n_clipped,
        "k_stoich": kdict(k_stoich_raw),
        "k_stoich_raw": rawdict(k_stoich_raw),
        "stlsq": {"threshold": threshold, "k": kdict(kt_raw), "k_raw": rawdict(kt_raw),
                  "n_nonzero": int(np.count_nonzero(xit)), "coefficients": coefs(xit)},
        "best_fval": None,
        "starts": 1,
        "converged_starts": 1,
        "library": feat,
        "weak_form": {"K": args.K, "H_xt": H, "p": args.p, "seed": args.seed,
                      "n_rows": int(Theta.shape[0]), "cond_Theta": float(np.linalg.cond(Theta)),
                      "pysindy_vs_numpy_lstsq_rel_diff": consistency},
        "coefficients": coefs(xi0),
        "homeostasis_check": {s: {"const_fit": float(xi0[i, 0]),
                                  "lam_base_true": net.lam[s] * net.base[s]}
                              for i, s in enumerate(net.species)},
        "n_missing_filled": n_filled,
        "wall_s": {"compile": 0.0, "optimize": t_fit, "total": time.perf_counter() - t_start},
        "n_fun_evals": None,
        "notes": notes,
        "versions": versions("pysindy", "numpy", "scipy", "scikit-learn", "python-libsbml"),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problem")
    ap.add_argument("--out", required=True)
    ap.add_argument("--K", type=int, default=200, help="number of weak subdomains")
    ap.add_argument("--H", type=float, default=None,
                    help="subdomain half-width in time units (default: duration/20)")
    ap.add_argument("--p", type=int, default=4, help="test-function polynomial degree")
    ap.add_argument("--threshold", type=float, default=None,
                    help="STLSQ threshold of the extra thresholded fit (default: half the "
                         "smallest known lam_X, so that no true term, homeostasis included, "
                         "is below it when the k exceed lam)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        out = fit(args)
    except ProblemError as e:
        print(f"{PEER}: malformed problem: {e}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, out)
    print(f"{PEER}: {len(out['k'])} k, {out['k_clipped_to_bounds']} clipped, "
          f"wall {out['wall_s']['total']:.2f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
