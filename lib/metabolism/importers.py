"""A researcher's network as a mass-action system: read SBML, COBRA (JSON, SBML, or a model shipped with
``cobra``) or a plain table, then convert it explicitly and report every step.

Reading gives a ``RawNetwork``: the reactions as written in the source (ids, coefficients, reversibility,
exchange and biomass flags, metabolite formulas). ``convert`` turns it into a ``Stoichiometry`` the GNN can
learn on, and an ``ImportReport`` that counts what it did:

- fixed species (water and protons by default, boundary species, and a user's list) are dropped: their
  concentration is constant, so it is absorbed into the rate constants of the reactions they take part in;
- exchange, demand, sink and biomass reactions are excluded: inflow and outflow of a metabolite are what
  the per-metabolite node term of the model stands for (a first-order outflow and a constant inflow are
  not separately identifiable from it);
- reversible reactions are split into a forward and a reverse reaction (``<id>`` and ``<id>__rev``);
- reactions left without a substrate (a constant inflow, again the node term's) or without any net change
  are excluded;
- reactions identical as rate terms (same reactant orders) and as columns of S are merged: only the sum of
  their rate constants is identifiable; the same reactants with different products stay apart;
- fractional reactant coefficients become fractional mass-action orders (``fractional="keep"``, counted)
  or are refused (``fractional="refuse"``).
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from .network import NetworkError, Stoichiometry

REVERSE_SUFFIX = "__rev"
FIXED_FORMULAS = ("H2O", "H")
"""Formulas of the species dropped as fixed by default (water, protons)."""
FIXED_IDS = ("h2o", "h")
"""BiGG stems of the same species (``h2o_c``, ``h_e`` ...), used when a source gives no formulas."""
EXCHANGE_PREFIXES = ("EX_", "DM_", "SK_", "R_EX_", "R_DM_", "R_SK_")
BIOMASS_SBO = "SBO:0000629"


class NetworkImportError(NetworkError):
    """A network file that cannot be read or converted; the message names the file and the element."""


@dataclass
class RawReaction:
    id: str
    coefficients: dict[str, float]  # metabolite id -> signed coefficient (negative: reactant)
    reversible: bool = False
    exchange: bool = False
    biomass: bool = False


@dataclass
class RawNetwork:
    """Reactions as written in their source."""

    source: str
    reactions: list[RawReaction]
    metabolites: list[str]
    formulas: dict[str, str] = field(default_factory=dict)
    boundary: set[str] = field(default_factory=set)

    def stoichiometric_matrix(self) -> np.ndarray:
        """Signed S (metabolites x reactions) exactly as in the source, in ``metabolites`` order."""
        index = {m: i for i, m in enumerate(self.metabolites)}
        S = np.zeros((len(self.metabolites), len(self.reactions)))
        for j, r in enumerate(self.reactions):
            for met, coeff in r.coefficients.items():
                S[index[met], j] += coeff
        return S


@dataclass
class ImportReport:
    """What ``convert`` did, with a count for every step (JSON-able)."""

    source: str
    metabolites_in: int
    reactions_in: int
    fixed_species: list[str]
    excluded: dict[str, list[str]]
    reversible_split: int
    merged: dict[str, list[str]]
    fractional_orders: list[str]
    same_reactants_dependent: list[list[str]]
    metabolites_out: int
    reactions_out: int
    notes: list[str]

    def counts(self) -> dict[str, int]:
        return {"metabolites_in": self.metabolites_in, "reactions_in": self.reactions_in,
                "fixed_species": len(self.fixed_species),
                **{f"excluded_{k}": len(v) for k, v in self.excluded.items()},
                "reversible_split": self.reversible_split, "merged_groups": len(self.merged),
                "fractional_orders": len(self.fractional_orders), "metabolites_out": self.metabolites_out,
                "reactions_out": self.reactions_out}

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts()}


def _is_exchange_id(rid: str) -> bool:
    return rid.startswith(EXCHANGE_PREFIXES)


def from_cobra(model, source: str = "cobra model") -> RawNetwork:
    """A ``cobra.Model`` as a RawNetwork (boundary reactions are exchanges; the objective's biomass too)."""
    reactions = []
    for r in model.reactions:
        biomass = (getattr(r, "objective_coefficient", 0) != 0 and len(r.metabolites) > 10) \
            or "biomass" in r.id.lower() or r.annotation.get("sbo") == BIOMASS_SBO
        reactions.append(RawReaction(
            id=r.id, coefficients={m.id: float(c) for m, c in r.metabolites.items()},
            reversible=bool(r.reversibility), exchange=bool(r.boundary) or _is_exchange_id(r.id), biomass=biomass))
    return RawNetwork(source=source, reactions=reactions, metabolites=[m.id for m in model.metabolites],
                      formulas={m.id: m.formula or "" for m in model.metabolites})


def read_sbml(path: str | Path) -> RawNetwork:
    """Reactions and species of an SBML file (any level; FBC formulas when present) through libsbml."""
    import libsbml

    path = Path(path)
    doc = libsbml.readSBMLFromFile(str(path))
    errors = [doc.getError(i) for i in range(doc.getNumErrors())
              if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errors:
        e = errors[0]
        raise NetworkImportError(f"{path}: line {e.getLine()}: {e.getMessage().strip()}")
    model = doc.getModel()
    if model is None:
        raise NetworkImportError(f"{path}: no <model> element")
    metabolites, formulas, boundary = [], {}, set()
    for sp in model.getListOfSpecies():
        metabolites.append(sp.getId())
        fbc = sp.getPlugin("fbc")
        if fbc is not None and fbc.isSetChemicalFormula():
            formulas[sp.getId()] = fbc.getChemicalFormula()
        if sp.getBoundaryCondition():
            boundary.add(sp.getId())
    known = set(metabolites)
    reactions = []
    for rx in model.getListOfReactions():
        coeffs: dict[str, float] = {}
        for sign, refs in ((-1.0, rx.getListOfReactants()), (1.0, rx.getListOfProducts())):
            for ref in refs:
                sid = ref.getSpecies()
                if sid not in known:
                    raise NetworkImportError(f"{path}: reaction {rx.getId()} names species {sid!r}, which is not declared")
                stoich = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
                if not np.isfinite(stoich):
                    raise NetworkImportError(f"{path}: reaction {rx.getId()}, species {sid}: stoichiometry is not a "
                                       "number (a stoichiometry math or an unset value)")
                coeffs[sid] = coeffs.get(sid, 0.0) + sign * stoich
        sbo = rx.getSBOTermID() if rx.isSetSBOTerm() else ""
        one_sided = not any(c < 0 for m, c in coeffs.items() if m not in boundary) or \
            not any(c > 0 for m, c in coeffs.items() if m not in boundary)
        reactions.append(RawReaction(
            id=rx.getId(), coefficients=coeffs, reversible=bool(rx.getReversible()),
            exchange=_is_exchange_id(rx.getId()) or (one_sided and sbo != BIOMASS_SBO and len(coeffs) <= 2),
            biomass=sbo == BIOMASS_SBO or "biomass" in rx.getId().lower()))
    return RawNetwork(source=str(path), reactions=reactions, metabolites=metabolites, formulas=formulas,
                      boundary=boundary)


def read_table(path: str | Path) -> RawNetwork:
    """A CSV with columns ``reaction,metabolite,coefficient`` (negative: reactant) and optionally
    ``reversible`` (true/false, per reaction); one row per entry of S."""
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"reaction", "metabolite", "coefficient"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise NetworkImportError(f"{path}: needs the columns {sorted(need)}, found {reader.fieldnames}")
        order: dict[str, RawReaction] = {}
        metabolites: dict[str, None] = {}
        for row_no, row in enumerate(reader, start=2):
            rid, met = (row["reaction"] or "").strip(), (row["metabolite"] or "").strip()
            if not rid or not met:
                raise NetworkImportError(f"{path}: row {row_no}: empty reaction or metabolite")
            try:
                coeff = float(row["coefficient"])
            except (TypeError, ValueError):
                raise NetworkImportError(f"{path}: row {row_no}, field coefficient: {row['coefficient']!r} is not a number")
            if not np.isfinite(coeff) or coeff == 0:
                raise NetworkImportError(f"{path}: row {row_no}, field coefficient: must be a finite non-zero number")
            r = order.setdefault(rid, RawReaction(id=rid, coefficients={}))
            if met in r.coefficients:
                raise NetworkImportError(f"{path}: row {row_no}: metabolite {met} appears twice in reaction {rid}")
            r.coefficients[met] = coeff
            rev = (row.get("reversible") or "").strip().lower()
            if rev:
                if rev not in ("true", "false", "1", "0", "yes", "no"):
                    raise NetworkImportError(f"{path}: row {row_no}, field reversible: {rev!r} is not true/false")
                r.reversible = r.reversible or rev in ("true", "1", "yes")
            metabolites.setdefault(met)
    if not order:
        raise NetworkImportError(f"{path}: no reactions")
    for r in order.values():
        r.exchange = _is_exchange_id(r.id)
    return RawNetwork(source=str(path), reactions=list(order.values()), metabolites=list(metabolites))


def read_network(source: str | Path) -> RawNetwork:
    """Dispatch on the source: ``cobra:NAME`` (a model shipped with cobra, e.g. ``cobra:textbook``), a COBRA
    JSON file (``.json``), an SBML file (``.xml``, ``.sbml``) or a table (``.csv``, ``.tsv``)."""
    text = str(source)
    if text.startswith("cobra:"):
        import cobra.io

        try:
            return from_cobra(cobra.io.load_model(text[len("cobra:"):]), source=text)
        except Exception as err:  # cobra raises several kinds for an unknown name
            raise NetworkImportError(f"{text}: cobra could not load this model ({err})") from None
    path = Path(source)
    if not path.is_file():
        raise NetworkImportError(f"network file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        import cobra.io

        try:
            return from_cobra(cobra.io.load_json_model(str(path)), source=str(path))
        except Exception as err:
            raise NetworkImportError(f"{path}: not a COBRA JSON model ({err})") from None
    if suffix in (".xml", ".sbml"):
        return read_sbml(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_table(path)
    raise NetworkImportError(f"{path}: unknown network format {suffix!r} (expected .xml/.sbml, .json or .csv)")


def default_fixed(raw: RawNetwork) -> list[str]:
    """Water and protons (by formula, else by BiGG id stem) and the source's boundary species."""
    out = []
    for m in raw.metabolites:
        formula = raw.formulas.get(m, "")
        stem = m[2:] if m.startswith("M_") else m
        stem = stem.rsplit("_", 1)[0] if "_" in stem else stem
        if formula in FIXED_FORMULAS or (not formula and stem in FIXED_IDS) or m in raw.boundary:
            out.append(m)
    return out


def convert(raw: RawNetwork, fixed_species: Sequence[str] | None = None, extra_fixed: Sequence[str] = (),
            exchange: Literal["exclude"] = "exclude", fractional: Literal["keep", "refuse"] = "keep",
            aggregation: str = "multiplicative") -> tuple[Stoichiometry, ImportReport]:
    """The mass-action system of ``raw`` and the report of the conversion (see the module docstring).

    ``fixed_species``: the species to drop (None: ``default_fixed``); ``extra_fixed`` are added to them.
    """
    if exchange != "exclude":
        raise ValueError("exchange reactions can only be excluded (the node term stands for inflow and outflow)")
    known = set(raw.metabolites)
    fixed = list(default_fixed(raw) if fixed_species is None else fixed_species) + list(extra_fixed)
    unknown = [m for m in fixed if m not in known]
    if unknown:
        raise NetworkImportError(f"{raw.source}: fixed species {unknown[:5]} are not metabolites of the network")
    fixed_set = set(fixed)
    excluded: dict[str, list[str]] = {"exchange": [], "biomass": [], "no_substrate": [], "no_net_change": []}
    fractional_ids: list[str] = []
    oriented: list[tuple[str, dict[str, float]]] = []
    n_split = 0
    for r in raw.reactions:
        if r.biomass:
            excluded["biomass"].append(r.id)
            continue
        if r.exchange:
            excluded["exchange"].append(r.id)
            continue
        coeffs = {m: c for m, c in r.coefficients.items() if m not in fixed_set and c != 0}
        directions = [(r.id, coeffs)]
        if r.reversible:
            directions.append((r.id + REVERSE_SUFFIX, {m: -c for m, c in coeffs.items()}))
            n_split += 1
        for rid, cf in directions:
            if not any(c > 0 for c in cf.values()) and not any(c < 0 for c in cf.values()):
                excluded["no_net_change"].append(rid)
            elif not any(c < 0 for c in cf.values()):
                excluded["no_substrate"].append(rid)
            else:
                oriented.append((rid, cf))
    for rid, cf in oriented:
        if any(c < 0 and not float(-c).is_integer() for c in cf.values()):
            fractional_ids.append(rid)
    if fractional_ids and fractional == "refuse":
        raise NetworkImportError(f"{raw.source}: reactions {fractional_ids[:5]} have fractional reactant coefficients "
                           "(fractional='keep' uses them as mass-action orders)")
    used = [m for m in raw.metabolites if any(m in cf for _, cf in oriented)]
    index = {m: i for i, m in enumerate(used)}
    n = len(used)
    columns: dict[tuple, list[str]] = {}
    Rcols: dict[tuple, np.ndarray] = {}
    Pcols: dict[tuple, np.ndarray] = {}
    for rid, cf in oriented:
        R, P = np.zeros(n), np.zeros(n)
        for m, c in cf.items():
            (R if c < 0 else P)[index[m]] = abs(c)
        key = (tuple(R), tuple(P - R))
        columns.setdefault(key, []).append(rid)
        Rcols[key], Pcols[key] = R, P
    keys = list(columns)
    merged = {"+".join(ids): ids for ids in columns.values() if len(ids) > 1}
    reaction_ids = tuple("+".join(columns[k]) for k in keys)
    R = np.stack([Rcols[k] for k in keys], 1) if keys else np.zeros((n, 0))
    P = np.stack([Pcols[k] for k in keys], 1) if keys else np.zeros((n, 0))
    dependent = _dependent_groups(R, P - R, reaction_ids)
    stoich = Stoichiometry(R=R, P=P, aggregation=aggregation, metabolite_ids=tuple(used), reaction_ids=reaction_ids)
    if stoich.n_reactions == 0:
        raise NetworkImportError(f"{raw.source}: no reaction is left after the conversion")
    stoich.validate_structure()
    notes = [f"{len(fixed)} species fixed (constant; absorbed into k): {', '.join(fixed[:8])}"
             + (" ..." if len(fixed) > 8 else "")] if fixed else []
    dropped_mets = [m for m in raw.metabolites if m not in index and m not in fixed_set]
    if dropped_mets:
        notes.append(f"{len(dropped_mets)} metabolites take part in no kept reaction and were removed")
    report = ImportReport(
        source=raw.source, metabolites_in=len(raw.metabolites), reactions_in=len(raw.reactions),
        fixed_species=list(fixed), excluded=excluded, reversible_split=n_split, merged=merged,
        fractional_orders=fractional_ids, same_reactants_dependent=dependent, metabolites_out=n,
        reactions_out=stoich.n_reactions, notes=notes)
    return stoich, report


def _dependent_groups(R: np.ndarray, S: np.ndarray, ids: Sequence[str]) -> list[list[str]]:
    """Groups of reactions with the same reactant orders whose S columns are linearly dependent: their rate
    terms are identical and their k are not separately identifiable (flagged, not merged)."""
    groups: dict[tuple, list[int]] = {}
    for j in range(R.shape[1]):
        groups.setdefault(tuple(R[:, j]), []).append(j)
    out = []
    for cols in groups.values():
        if len(cols) > 1 and np.linalg.matrix_rank(S[:, cols]) < len(cols):
            out.append([ids[j] for j in cols])
    return out


def load_network(source: str | Path, fixed_species: Sequence[str] | None = None,
                 extra_fixed: Iterable[str] = (), fractional: Literal["keep", "refuse"] = "keep"
                 ) -> tuple[Stoichiometry, ImportReport]:
    """Read and convert in one call: ``read_network`` then ``convert``."""
    return convert(read_network(source), fixed_species=fixed_species, extra_fixed=list(extra_fixed),
                   fractional=fractional)
