"""Shared reader for the peer-benchmark problem directory contract.

A problem directory ``P`` holds ``model.xml`` (SBML L3V2, mass-action network plus
``in_X``/``out_X`` homeostasis reactions), ``measurements.csv``
(``experiment,time,metabolite,value``), ``problem.json``
(``noise_rel``, ``estimate``, ``bounds_log10``) and ``truth.csv`` (scoring only;
never read here).  See ``README.md`` beside this file for the full contract.

Everything here raises :class:`ProblemError` with a message that names the
offending file and field, so that a malformed ``P`` fails loudly and early.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


class ProblemError(ValueError):
    """A problem directory does not follow the contract."""


@dataclass
class Reaction:
    id: str
    reactants: dict[str, float]  # species -> stoichiometry (= kinetic order)
    products: dict[str, float]
    k_param: str  # "k_<id>"


@dataclass
class Network:
    species: list[str]
    reactions: list[Reaction]  # the network's own (non-homeostasis) reactions
    lam: dict[str, float]
    base: dict[str, float]
    sbml_initial: dict[str, float]
    parameters: dict[str, float]  # every global parameter and its value in model.xml

    def stoichiometry(self) -> np.ndarray:
        """S[i, j] = product minus reactant coefficient of species i in reaction j."""
        idx = {s: i for i, s in enumerate(self.species)}
        S = np.zeros((len(self.species), len(self.reactions)))
        for j, r in enumerate(self.reactions):
            for s, v in r.reactants.items():
                S[idx[s], j] -= v
            for s, v in r.products.items():
                S[idx[s], j] += v
        return S


@dataclass
class Problem:
    path: Path
    model_xml: Path
    network: Network
    measurements: pd.DataFrame  # experiment(str), time(float), metabolite(str), value(float)
    noise_rel: float
    estimate: list[str]
    bounds_log10: tuple[float, float]
    experiments: list[str] = field(default_factory=list)

    def model_hash(self) -> str:
        return hashlib.sha256(self.model_xml.read_bytes()).hexdigest()

    def wide(self, experiment: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, values[n_times, n_species]) of one experiment; NaN where missing."""
        d = self.measurements[self.measurements["experiment"] == experiment]
        tab = d.pivot_table(index="time", columns="metabolite", values="value",
                            aggfunc="mean", dropna=False)
        tab = tab.reindex(columns=self.network.species)
        return tab.index.to_numpy(dtype=float), tab.to_numpy(dtype=float)

    def initial_conditions(self, experiment: str) -> tuple[float, dict[str, float], list[str]]:
        """(t0, {species: x0}, notes).

        x0 is the measured value at the experiment's first time point.  Where that
        is missing, the earliest non-missing value of the species in that experiment is
        used, else the species' initialConcentration in model.xml (noted).
        """
        t, Y = self.wide(experiment)
        t0 = float(t[0])
        x0, notes = {}, []
        for i, s in enumerate(self.network.species):
            col = Y[:, i]
            if np.isfinite(col[0]):
                x0[s] = float(col[0])
                continue
            ok = np.flatnonzero(np.isfinite(col))
            if ok.size:
                x0[s] = float(col[ok[0]])
                notes.append(f"{experiment}/{s}: first value missing, used t={t[ok[0]]:g}")
            elif s in self.network.sbml_initial and math.isfinite(self.network.sbml_initial[s]):
                x0[s] = self.network.sbml_initial[s]
                notes.append(f"{experiment}/{s}: never measured, used model.xml initialConcentration")
            else:
                raise ProblemError(
                    f"measurements.csv: experiment {experiment!r} has no value of "
                    f"metabolite {s!r} and model.xml gives it no initialConcentration")
        return t0, x0, notes


def _fail(msg: str):
    raise ProblemError(msg)


def read_network(model_xml: Path) -> Network:
    import libsbml

    if not model_xml.is_file():
        _fail(f"{model_xml}: missing (the problem directory needs model.xml)")
    doc = libsbml.readSBMLFromFile(str(model_xml))
    fatal = [doc.getError(i) for i in range(doc.getNumErrors())
             if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if fatal:
        _fail(f"{model_xml}: not valid SBML: " + "; ".join(e.getMessage().strip() for e in fatal[:3]))
    m = doc.getModel()
    if m is None:
        _fail(f"{model_xml}: no <model> element")
    if (doc.getLevel(), doc.getVersion()) != (3, 2):
        _fail(f"{model_xml}: SBML level/version is {doc.getLevel()}/{doc.getVersion()}, expected 3/2")
    if m.getNumCompartments() != 1:
        _fail(f"{model_xml}: expected exactly one compartment, found {m.getNumCompartments()}")
    comp = m.getCompartment(0)
    if not comp.isSetSize() or abs(comp.getSize() - 1.0) > 1e-12:
        _fail(f"{model_xml}: compartment {comp.getId()!r} must have size 1")

    species = [m.getSpecies(i).getId() for i in range(m.getNumSpecies())]
    if not species:
        _fail(f"{model_xml}: no species")
    sbml_initial = {}
    for i in range(m.getNumSpecies()):
        sp = m.getSpecies(i)
        if sp.isSetInitialConcentration():
            sbml_initial[sp.getId()] = sp.getInitialConcentration()
        elif sp.isSetInitialAmount():
            sbml_initial[sp.getId()] = sp.getInitialAmount()
    params = {}
    for i in range(m.getNumParameters()):
        p = m.getParameter(i)
        params[p.getId()] = p.getValue() if p.isSetValue() else float("nan")

    reactions, lam, base = [], {}, {}
    seen_in, seen_out = set(), set()
    for i in range(m.getNumReactions()):
        r = m.getReaction(i)
        rid = r.getId()
        kl = r.getKineticLaw()
        if kl is None or kl.getMath() is None:
            _fail(f"{model_xml}: reaction {rid!r} has no kineticLaw")
        reac = {}
        for j in range(r.getNumReactants()):
            sr = r.getReactant(j)
            reac[sr.getSpecies()] = reac.get(sr.getSpecies(), 0.0) + sr.getStoichiometry()
        prod = {}
        for j in range(r.getNumProducts()):
            sr = r.getProduct(j)
            prod[sr.getSpecies()] = prod.get(sr.getSpecies(), 0.0) + sr.getStoichiometry()
        if rid.startswith("in_") and rid[3:] in species:
            seen_in.add(rid[3:])
            continue
        if rid.startswith("out_") and rid[4:] in species:
            seen_out.add(rid[4:])
            continue
        kp = f"k_{rid}"
        if kp not in params:
            _fail(f"{model_xml}: reaction {rid!r} needs global parameter {kp!r}")
        formula = libsbml.formulaToL3String(kl.getMath())
        names = _math_names(kl.getMath())
        if kp not in names:
            _fail(f"{model_xml}: kineticLaw of {rid!r} ({formula}) does not reference {kp!r}")
        extra = names - {kp} - set(reac)
        if extra:
            _fail(f"{model_xml}: kineticLaw of {rid!r} ({formula}) is not mass action: "
                  f"it references {sorted(extra)} beyond {kp!r} and its reactants")
        for s, v in reac.items():
            if not v > 0:  # fractional orders are mass action too (E. coli core's CYTBD: o2^0.5)
                _fail(f"{model_xml}: reaction {rid!r}: reactant {s!r} has stoichiometry {v}, not positive")
        reactions.append(Reaction(rid, reac, prod, kp))
    for s in species:
        if s not in seen_in or s not in seen_out:
            _fail(f"{model_xml}: species {s!r} lacks its homeostasis reactions in_{s}/out_{s}")
        for p in (f"lam_{s}", f"base_{s}"):
            if p not in params or not math.isfinite(params[p]):
                _fail(f"{model_xml}: species {s!r} needs global parameter {p!r} with a value")
        lam[s], base[s] = params[f"lam_{s}"], params[f"base_{s}"]
    if not reactions:
        _fail(f"{model_xml}: no network reactions besides the homeostasis ones")
    return Network(species, reactions, lam, base, sbml_initial, params)


def _math_names(node) -> set[str]:
    import libsbml

    out = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n.getType() == libsbml.AST_NAME:
            out.add(n.getName())
        stack.extend(n.getChild(i) for i in range(n.getNumChildren()))
    return out


def read_problem(path: str | os.PathLike) -> Problem:
    P = Path(path)
    if not P.is_dir():
        _fail(f"{P}: not a directory (expected a problem directory with model.xml, "
              "measurements.csv, problem.json)")
    net = read_network(P / "model.xml")

    pj = P / "problem.json"
    if not pj.is_file():
        _fail(f"{pj}: missing")
    try:
        spec = json.loads(pj.read_text())
    except json.JSONDecodeError as e:
        _fail(f"{pj}: not valid JSON: {e}")
    if not isinstance(spec, dict):
        _fail(f"{pj}: top level must be an object")
    for key in ("noise_rel", "estimate", "bounds_log10"):
        if key not in spec:
            _fail(f"{pj}: missing field {key!r}")
    try:
        noise_rel = float(spec["noise_rel"])
    except (TypeError, ValueError):
        _fail(f"{pj}: field 'noise_rel' must be a number, got {spec['noise_rel']!r}")
    if not (noise_rel >= 0 and math.isfinite(noise_rel)):
        _fail(f"{pj}: field 'noise_rel' must be finite and >= 0, got {noise_rel}")
    est = spec["estimate"]
    if not isinstance(est, list) or not est or not all(isinstance(e, str) for e in est):
        _fail(f"{pj}: field 'estimate' must be a non-empty list of parameter ids")
    unknown = [e for e in est if e not in net.parameters]
    if unknown:
        _fail(f"{pj}: field 'estimate' names parameters not in model.xml: {unknown}")
    not_k = [e for e in est if e not in {r.k_param for r in net.reactions}]
    if not_k:
        _fail(f"{pj}: field 'estimate' may only name rate constants k_<reaction>, got {not_k}")
    if len(set(est)) != len(est):
        _fail(f"{pj}: field 'estimate' has duplicates")
    b = spec["bounds_log10"]
    if (not isinstance(b, list) or len(b) != 2
            or not all(isinstance(x, (int, float)) for x in b) or not b[0] < b[1]):
        _fail(f"{pj}: field 'bounds_log10' must be [lo, hi] with lo < hi, got {b!r}")

    mc = P / "measurements.csv"
    if not mc.is_file():
        _fail(f"{mc}: missing")
    try:
        df = pd.read_csv(mc, dtype={"experiment": str, "metabolite": str})
    except Exception as e:  # pandas raises several types
        _fail(f"{mc}: cannot be read as CSV: {e}")
    cols = ["experiment", "time", "metabolite", "value"]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        _fail(f"{mc}: missing column(s) {missing}; columns are {list(df.columns)}")
    df = df[cols].copy()
    if df.empty:
        _fail(f"{mc}: no rows")
    for c in ("time", "value"):
        conv = pd.to_numeric(df[c], errors="coerce")
        bad = conv.isna() & df[c].notna()
        if c == "time":
            bad |= conv.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            _fail(f"{mc}: column {c!r} row {i + 2} is not a number: {df[c].iloc[i]!r}")
        df[c] = conv.astype(float)
    if df["experiment"].isna().any() or df["metabolite"].isna().any():
        _fail(f"{mc}: empty 'experiment' or 'metabolite' cell")
    unknown = sorted(set(df["metabolite"]) - set(net.species))
    if unknown:
        _fail(f"{mc}: column 'metabolite' has ids that are not species of model.xml: {unknown[:5]}")
    if not np.isfinite(df["time"]).all():
        _fail(f"{mc}: column 'time' has non-finite values")
    dup = df.duplicated(["experiment", "time", "metabolite"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        _fail(f"{mc}: duplicate (experiment, time, metabolite) at row {i + 2}")
    if (df["value"] < 0).any():
        pass  # noisy data may dip below 0; allowed
    experiments = list(dict.fromkeys(df["experiment"]))
    return Problem(P, P / "model.xml", net, df, noise_rel, est,
                   (float(b[0]), float(b[1])), experiments)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it a normal file's mode
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    import platform

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out
