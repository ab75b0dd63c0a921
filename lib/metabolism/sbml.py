"""A mass-action system as SBML (Level 3 Version 2), through libsbml: for other tools (COPASI, libroadrunner,
AMICI), for the peers of the benchmark, and to hand a fitted model back to a researcher.

Every reaction R gets the law ``k_R * prod s^o`` with a global parameter ``k_R``; every metabolite X gets the
homeostasis reactions ``in_X`` (law ``lam_X * base_X``) and ``out_X`` (law ``lam_X * X``), one-sided, so
that reading the file back with ``importers`` excludes them as exchanges and returns the stoichiometry.
Ids that are not SBML identifiers are made so (``sid``); the original id is kept as the element's name.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.io import write_text
from .network import Network

_BAD = re.compile(r"[^A-Za-z0-9_]")


def sid(name: str) -> str:
    """An SBML identifier for ``name`` (letters, digits, underscores; not starting with a digit)."""
    out = _BAD.sub("_", name.replace("+", "__plus__"))
    return out if out and not out[0].isdigit() else f"_{out}"


def to_sbml(net: Network, c0: np.ndarray | None = None, homeostasis: bool = True) -> str:
    """The SBML document of ``net`` (initial concentrations ``c0``, default 1)."""
    import libsbml

    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId("mass_action")
    comp = model.createCompartment()
    comp.setId("cell")
    comp.setConstant(True)
    comp.setSize(1.0)
    comp.setSpatialDimensions(3)
    species = [sid(m) for m in net.metabolites]
    if len(set(species)) != len(species):
        raise ValueError("two metabolite ids map to the same SBML identifier")
    c0 = np.ones(net.n_metabolites) if c0 is None else np.asarray(c0, float)
    for i, (s, name) in enumerate(zip(species, net.metabolites)):
        sp = model.createSpecies()
        sp.setId(s)
        sp.setName(name)
        sp.setCompartment("cell")
        sp.setInitialConcentration(float(c0[i]))
        sp.setHasOnlySubstanceUnits(False)
        sp.setBoundaryCondition(False)
        sp.setConstant(False)

    def parameter(pid: str, value: float) -> None:
        p = model.createParameter()
        p.setId(pid)
        p.setValue(float(value))
        p.setConstant(True)

    def reaction(rid: str, name: str, reactants: dict, products: dict, law: str) -> None:
        r = model.createReaction()
        r.setId(rid)
        r.setName(name)
        r.setReversible(False)
        for ids, add in ((reactants, r.createReactant), (products, r.createProduct)):
            for s, coeff in ids.items():
                ref = add()
                ref.setSpecies(s)
                ref.setStoichiometry(float(coeff))
                ref.setConstant(True)
        kl = r.createKineticLaw()
        math = libsbml.parseL3Formula(law)
        if math is None:
            raise ValueError(f"cannot parse the law of reaction {name}: {law}")
        kl.setMath(math)

    for j, name in enumerate(net.reactions):
        rid = sid(name)
        reactants = {species[i]: net.R[i, j] for i in np.flatnonzero(net.R[:, j])}
        products = {species[i]: net.P[i, j] for i in np.flatnonzero(net.P[:, j])}
        parameter(f"k_{rid}", net.k[j])
        law = " * ".join([f"k_{rid}"] + [f"{s}^{o:g}" if o != 1 else s for s, o in reactants.items()])
        reaction(rid, name, reactants, products, law)
    if homeostasis:
        for i, s in enumerate(species):
            parameter(f"lam_{s}", net.lam[i])
            parameter(f"base_{s}", net.baseline[i])
            reaction(f"in_{s}", f"inflow of {net.metabolites[i]}", {}, {s: 1}, f"lam_{s} * base_{s}")
            reaction(f"out_{s}", f"outflow of {net.metabolites[i]}", {s: 1}, {}, f"lam_{s} * {s}")
    errors = doc.checkInternalConsistency()
    if errors:
        raise ValueError(f"libsbml: the document is inconsistent: {doc.getError(0).getMessage().strip()}")
    return libsbml.writeSBMLToString(doc)


def write_sbml(net: Network, path: str | Path, c0: np.ndarray | None = None, homeostasis: bool = True) -> None:
    """Write ``to_sbml(net)`` to ``path`` atomically."""
    write_text(path, to_sbml(net, c0, homeostasis))
