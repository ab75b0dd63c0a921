"""Write a toy problem directory for the peer estimators.

    python benchmarks/peers/toy_problem.py OUTDIR [--noise 0.01] [--seed 0] [--missing 0.0]

A random mass-action network (5-8 species, 6-10 reactions of kinetic order 1 or 2,
k log-uniform in [0.01, 0.1]) with homeostasis in_X / out_X for every species
(lam_X uniform in [0.001, 0.002], base_X uniform in [4, 6]); 4 experiments with initial
concentrations uniform in [1, 9]; 300 samples every 0.1 time units (t = 0 ... 29.9),
simulated with scipy solve_ivp(LSODA, rtol=1e-10, atol=1e-12); relative noise
value * (1 + noise * N(0, 1)) on every sample, the first included (so the measured
initial condition is noisy).  ``--missing F`` blanks a fraction F of the later samples
(NaN), to exercise the missing-value paths.

Files: model.xml (SBML L3V2, written with python-libsbml; the k_* values in it are
placeholders 1.0, not the truth), measurements.csv, problem.json, truth.csv.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp


def random_network(rng: np.random.Generator):
    n_s = int(rng.integers(5, 9))
    n_r = int(rng.integers(6, 11))
    species = [f"M{i + 1}" for i in range(n_s)]
    for _ in range(1000):
        reactions, keys = [], set()
        while len(reactions) < n_r:
            order = int(rng.choice([1, 2]))
            if order == 1:
                reac = {species[int(rng.integers(n_s))]: 1}
            elif rng.random() < 0.2:
                reac = {species[int(rng.integers(n_s))]: 2}
            else:
                a, b = rng.choice(n_s, size=2, replace=False)
                reac = {species[int(a)]: 1, species[int(b)]: 1}
            others = [s for s in species if s not in reac]
            n_p = int(rng.integers(1, 3))
            prod = {str(s): 1 for s in rng.choice(others, size=n_p, replace=False)}
            key = (tuple(sorted(reac.items())), tuple(sorted(prod.items())))
            if key in keys:
                continue
            keys.add(key)
            reactions.append((reac, prod))
        used = {s for r, p in reactions for s in list(r) + list(p)}
        if used == set(species):
            break
    k = 10 ** rng.uniform(-2, -1, size=n_r)
    lam = rng.uniform(0.001, 0.002, size=n_s)
    base = rng.uniform(4, 6, size=n_s)
    return species, reactions, k, lam, base


def write_sbml(path: Path, species, reactions, lam, base) -> None:
    import libsbml

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("toy_network")
    c = m.createCompartment()
    c.setId("c")
    c.setSize(1.0)
    c.setConstant(True)
    c.setSpatialDimensions(3)
    for s in species:
        sp = m.createSpecies()
        sp.setId(s)
        sp.setCompartment("c")
        sp.setInitialConcentration(5.0)  # placeholder; experiments set their own
        sp.setHasOnlySubstanceUnits(False)
        sp.setBoundaryCondition(False)
        sp.setConstant(False)

    def param(pid, value):
        p = m.createParameter()
        p.setId(pid)
        p.setValue(float(value))
        p.setConstant(True)

    def reaction(rid, reac, prod, formula):
        r = m.createReaction()
        r.setId(rid)
        r.setReversible(False)
        for s, v in reac.items():
            sr = r.createReactant()
            sr.setSpecies(s)
            sr.setStoichiometry(float(v))
            sr.setConstant(True)
        for s, v in prod.items():
            sr = r.createProduct()
            sr.setSpecies(s)
            sr.setStoichiometry(float(v))
            sr.setConstant(True)
        kl = r.createKineticLaw()
        math = libsbml.parseL3Formula(formula)
        if math is None:
            raise RuntimeError(f"cannot parse {formula!r}: {libsbml.getLastParseL3Error()}")
        kl.setMath(math)

    for j, (reac, prod) in enumerate(reactions):
        rid = f"R{j + 1}"
        param(f"k_{rid}", 1.0)
        terms = [s if v == 1 else f"{s}^{v}" for s, v in reac.items()]
        reaction(rid, reac, prod, " * ".join([f"k_{rid}"] + terms))
    for i, s in enumerate(species):
        param(f"lam_{s}", lam[i])
        param(f"base_{s}", base[i])
        reaction(f"in_{s}", {}, {s: 1}, f"lam_{s} * base_{s}")
        reaction(f"out_{s}", {s: 1}, {}, f"lam_{s} * {s}")
    doc.checkConsistency()
    errs = [doc.getError(i) for i in range(doc.getNumErrors())
            if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errs:
        raise RuntimeError("generated SBML invalid: " + "; ".join(e.getMessage() for e in errs))
    libsbml.writeSBMLToFile(doc, str(path))


def simulate(species, reactions, k, lam, base, x0, t):
    n_s = len(species)
    idx = {s: i for i, s in enumerate(species)}
    S = np.zeros((n_s, len(reactions)))
    R = np.zeros((n_s, len(reactions)))
    for j, (reac, prod) in enumerate(reactions):
        for s, v in reac.items():
            S[idx[s], j] -= v
            R[idx[s], j] = v
        for s, v in prod.items():
            S[idx[s], j] += v

    def rhs(_t, x):
        xc = np.clip(x, 0.0, None)
        rates = k * np.prod(xc[:, None] ** R, axis=0)
        return S @ rates + lam * (base - x)

    sol = solve_ivp(rhs, (t[0], t[-1]), x0, t_eval=t, method="LSODA", rtol=1e-10, atol=1e-12)
    if not sol.success:
        raise RuntimeError(f"toy simulation failed: {sol.message}")
    return sol.y.T


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--missing", type=float, default=0.0,
                    help="fraction of non-initial samples set to NaN")
    a = ap.parse_args(argv)

    rng = np.random.default_rng(a.seed)
    species, reactions, k, lam, base = random_network(rng)
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    write_sbml(out / "model.xml", species, reactions, lam, base)

    t = np.round(0.1 * np.arange(300), 10)
    noise_rng = np.random.default_rng([a.seed, 1])
    rows = []
    for e in range(4):
        x0 = rng.uniform(1, 9, size=len(species))
        X = simulate(species, reactions, k, lam, base, x0, t)
        Y = X * (1 + a.noise * noise_rng.standard_normal(X.shape))
        if a.missing > 0:
            mask = noise_rng.random(Y.shape) < a.missing
            mask[0] = False
            Y[mask] = np.nan
        for ti, tt in enumerate(t):
            for si, s in enumerate(species):
                rows.append((f"E{e + 1}", tt, s, Y[ti, si]))
    pd.DataFrame(rows, columns=["experiment", "time", "metabolite", "value"]).to_csv(
        out / "measurements.csv", index=False, float_format="%.10g")
    (out / "problem.json").write_text(json.dumps({
        "noise_rel": a.noise,
        "estimate": [f"k_R{j + 1}" for j in range(len(reactions))],
        "bounds_log10": [-5, 2],
    }, indent=2) + "\n")
    pd.DataFrame({"parameter": [f"k_R{j + 1}" for j in range(len(reactions))],
                  "value": k}).to_csv(out / "truth.csv", index=False, float_format="%.12g")
    eqs = [" + ".join(f"{v if v != 1 else ''}{s}" for s, v in r.items()) + " -> "
           + " + ".join(p) for r, p in reactions]
    print(f"{out}: {len(species)} species, {len(reactions)} reactions: " + "; ".join(eqs))


if __name__ == "__main__":
    main()
