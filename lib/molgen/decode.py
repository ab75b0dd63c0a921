"""Decode generated dense graphs ``(X, A, flags)`` into RDKit molecules, GDSS-style.

Steps for each graph (following GDSS's ``utils/mol_utils.py`` and ``quantize_mol``):

1. Atoms: node ``i`` is an atom iff ``flags[i] > 0.5`` and ``max_f X[i, f] > atom_threshold``
   over the type block (default 0.5: GDSS binarizes ``X > 0.5`` and drops nodes with no channel
   on); its element is ``vocab[argmax_f X[i, f]]`` over the type block.  ``flags=None`` means every
   node is flagged.  With a ``charge`` block (``atom_features``, see :mod:`molgen.features`) the
   atom gets the formal charge of its block's argmax (0 if no column exceeds 0.5) before any bond
   is added; the other blocks are not imposed (the bonds decide), see :func:`feature_consistency`.
2. Bonds: ``A`` (raw scale 0..3; ``adj_mode="unit"`` multiplies by 3 first) is quantized with
   GDSS's boundaries: ``A < 0.5`` -> none, ``[0.5, 1.5)`` -> single, ``[1.5, 2.5)`` -> double,
   ``>= 2.5`` -> triple.  No absolute value is taken (GDSS sets negative entries to "no bond").
   The lower triangle ``A[i, j], i > j`` is read (the sampler's output is symmetric).
3. Bonds are added row by row; after each one, if RDKit reports a valence violation whose
   first offending atom is N, O or S exceeding its neutral valence (3, 2, 2) by exactly one,
   that atom gets formal charge +1 (GDSS's ``construct_mol``); an atom given a non-zero charge by
   the charge block keeps it (the rule only charges atoms decoded as neutral).
4. Valid without correction = at least one atom and no RDKit valence violation now.
5. Correction (``correct=True``, GDSS's ``correct_mol``): while RDKit reports a violation, take
   its first offending atom, pick its highest-order bond (ties: first in RDKit's bond list)
   and lower it by one order (a single bond is removed).  Formal charges are never changed, so
   e.g. N+ with four bonds or O- with one stays as generated.
6. Fragments: the canonical SMILES is split on ``.`` and the longest fragment string is kept
   (GDSS's ``valid_mol_can_with_seg``; ``largest_fragment=False`` keeps all), then re-parsed
   with ``Chem.MolFromSmiles`` (so the molecule is sanitized and aromatic).  A graph whose
   result cannot be parsed, or that has no atom, decodes to ``None``.

With ``correct=False`` a graph that is not valid before correction decodes to ``None``.

The ``valence`` decoder (``decoder="valence"``, ``sampler.decoder``) uses the generated charges and hydrogen
counts instead of step 3: the bonded pairs are those of step 2, their orders the assignment closest to A that
gives every atom the valence its element, charge and hydrogens leave (:mod:`molgen.valence`), valid without
correction by construction.  A graph whose features admit no such assignment is decoded by the steps above.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from rdkit import Chem, RDLogger

from .data import ATOM_VOCAB, atom_feature_indices, unscale_adjacency
from .features import DEFAULT_ATOM_FEATURES, AtomFeatureSpec
from .valence import assign_bond_orders, bond_valence_targets

RDLogger.DisableLog("rdApp.*")

# Thresholds on the raw 0..3 scale (GDSS quantize_mol).
BOND_THRESHOLDS = (0.5, 1.5, 2.5)
ATOM_THRESHOLD = 0.5
# Neutral valences used by GDSS's charge rule and as a fast "certainly valid" bound.
ATOM_VALENCY = {"C": 4, "N": 3, "O": 2, "F": 1, "P": 3, "S": 2, "Cl": 1, "Br": 1, "I": 1}
_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
_CHARGE_RULE_ELEMENTS = {7, 8, 16}  # N, O, S
_ATOMIC_NUM = {s: Chem.GetPeriodicTable().GetAtomicNumber(s) for s in ATOM_VALENCY}
_DEFAULT_VALENCE_BY_Z = {_ATOMIC_NUM[s]: v for s, v in ATOM_VALENCY.items()}
DECODERS = ("gdss", "valence")


class DecodeResult(NamedTuple):
    mols: list  # list[Chem.Mol | None], one per input graph
    valid_wo_correction: list  # list[bool], one per input graph

    @property
    def n_valid_wo_correction(self) -> int:
        return int(sum(self.valid_wo_correction))


def _to_numpy(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float32).numpy()
    return np.asarray(t, dtype=np.float32)


def quantize_bonds(A: np.ndarray) -> np.ndarray:
    """Raw-scale adjacency -> integer bond orders 0..3 with GDSS's 0.5/1.5/2.5 boundaries."""
    A = np.asarray(A)
    q = np.zeros(A.shape, dtype=np.int64)
    q[A >= BOND_THRESHOLDS[0]] = 1
    q[A >= BOND_THRESHOLDS[1]] = 2
    q[A >= BOND_THRESHOLDS[2]] = 3
    return q


def _bond_valence(atom) -> float:
    return sum(b.GetBondTypeAsDouble() for b in atom.GetBonds())


def _first_valence_problem(mol: Chem.RWMol, fast: bool = True):
    """Index of the first atom RDKit rejects for valence, or ``None`` if the mol is fine.

    ``fast``: skip RDKit when every atom is within its neutral default valence (always
    accepted by RDKit when the atom is uncharged); otherwise ask RDKit (the same check as GDSS's
    ``SanitizeMol(..., SANITIZE_PROPERTIES)``; RDKit reports atoms in index order).
    """
    if fast:
        ok = True
        for atom in mol.GetAtoms():
            v = _bond_valence(atom)
            if atom.GetFormalCharge() != 0 or v > _DEFAULT_VALENCE_BY_Z.get(atom.GetAtomicNum(), 0):
                ok = False
                break
        if ok:
            return None
    for p in Chem.DetectChemistryProblems(mol):
        if p.GetType() == "AtomValenceException":
            return p.GetAtomIdx()
    return None


def _construct(atom_syms: Sequence[str], bonds: np.ndarray, charges: Sequence[int] | None = None) -> Chem.RWMol:
    """GDSS construct_mol: add atoms (with ``charges`` if given), then bonds in row-major order of the
    lower triangle, charging neutral N/O/S by +1 when the first valence violation is exactly one above
    neutral."""
    mol = Chem.RWMol()
    zs = [_ATOMIC_NUM[s] for s in atom_syms]
    charges = [0] * len(zs) if charges is None else [int(c) for c in charges]
    for z, c in zip(zs, charges):
        atom = Chem.Atom(z)
        atom.SetFormalCharge(c)
        mol.AddAtom(atom)
    default = [_DEFAULT_VALENCE_BY_Z[z] for z in zs]
    val = [0] * len(zs)
    over = 0  # number of atoms above their neutral default valence (only then ask RDKit)
    rows, cols = np.nonzero(bonds)
    for start, end in zip(rows.tolist(), cols.tolist()):
        if start <= end:
            continue
        k = int(bonds[start, end])
        mol.AddBond(start, end, _BOND_TYPES[k])
        for a in (start, end):
            before = val[a] > default[a]
            val[a] += k
            over += int(val[a] > default[a]) - int(before)
        if over == 0:
            continue
        idx = _first_valence_problem(mol, fast=False)
        if idx is None:
            continue
        an = zs[idx]
        if charges[idx] == 0 and an in _CHARGE_RULE_ELEMENTS and val[idx] - _DEFAULT_VALENCE_BY_Z[an] == 1:
            mol.GetAtomWithIdx(idx).SetFormalCharge(1)
    return mol


def _correct(mol: Chem.RWMol) -> Chem.RWMol:
    """GDSS correct_mol: lower the highest-order bond of the first offending atom until valid."""
    for _ in range(10_000):  # each step lowers the total bond order: terminates long before
        idx = _first_valence_problem(mol)
        if idx is None:
            break
        queue = [
            (int(b.GetBondType()), b.GetBeginAtomIdx(), b.GetEndAtomIdx())
            for b in mol.GetAtomWithIdx(idx).GetBonds()
        ]
        if not queue:  # cannot happen for valence errors; avoid looping forever
            break
        queue.sort(key=lambda t: t[0], reverse=True)  # stable: ties keep RDKit's order
        order, start, end = queue[0]
        mol.RemoveBond(start, end)
        if order - 1 >= 1:
            mol.AddBond(start, end, _BOND_TYPES[order - 1])
    return mol


def _finalize(mol: Chem.RWMol, largest_fragment: bool):
    """GDSS valid_mol_can_with_seg: canonical SMILES, keep the longest fragment, re-parse."""
    try:
        mol.UpdatePropertyCache(strict=False)
        smi = Chem.MolToSmiles(mol, isomericSmiles=True)
    except Exception:
        return None
    if not smi:
        return None
    if largest_fragment and "." in smi:
        frags = sorted(smi.split("."), key=len, reverse=True)  # stable: first longest
        smi = frags[0]
    return Chem.MolFromSmiles(smi)


def graph_to_mol(atom_syms: Sequence[str], bonds: np.ndarray, correct: bool = True, largest_fragment: bool = True,
                 charges: Sequence[int] | None = None):
    """Decode one graph given atom symbols, an integer bond-order matrix over those atoms and
    optionally their formal charges (``None``: all neutral, GDSS).

    Returns ``(mol_or_None, valid_without_correction)``.
    """
    if len(atom_syms) == 0:
        return None, False
    mol = _construct(atom_syms, bonds, charges)
    valid = _first_valence_problem(mol) is None
    if not valid:
        if not correct:
            return None, False
        mol = _correct(mol)
    return _finalize(mol, largest_fragment), valid


class _Nodes(NamedTuple):
    """Per graph: node indices of the atoms, element symbols, bond orders, charges (or None), the decoded
    non-type block indices ``(n, k)`` (-1: no column above 0.5) and the continuous bond values (raw scale)."""

    idx: np.ndarray
    syms: list
    bonds: np.ndarray
    charges: list | None
    blocks: np.ndarray
    weights: np.ndarray


def _decode_nodes(X, A, flags, spec: AtomFeatureSpec, adj_mode: str, atom_threshold: float | None) -> list[_Nodes]:
    """Steps 1-2 of the module docstring for a batch: atoms, elements, charges, blocks, bond orders."""
    Xn = _to_numpy(X)
    if isinstance(A, torch.Tensor):
        A = unscale_adjacency(A.detach().cpu().to(torch.float32), adj_mode)
    else:
        A = unscale_adjacency(torch.as_tensor(np.asarray(A, dtype=np.float32)), adj_mode)
    An = A.numpy()
    if Xn.ndim != 3 or An.ndim != 3:
        raise ValueError(f"expected X (B,N,F) and A (B,N,N), got {Xn.shape} and {An.shape}")
    B, N, F = Xn.shape
    if F != spec.width:
        if spec.is_default:
            raise ValueError(f"X has {F} channels but the vocabulary {list(spec.vocab)} has {len(spec.vocab)} atoms")
        raise ValueError(f"X has {F} channels but atom_features {list(spec.names)} need {spec.describe()}")
    Xt = Xn[..., spec.blocks[0].slice]
    exists = np.ones((B, N), dtype=bool)
    if flags is not None:
        exists &= _to_numpy(flags) > 0.5
    if atom_threshold is not None:
        exists &= Xt.max(-1) > atom_threshold
    types = Xt.argmax(-1)
    blocks = np.full((B, N, len(spec.extra_blocks)), -1, dtype=np.int64)
    for k, b in enumerate(spec.extra_blocks):
        Xb = Xn[..., b.slice]
        blocks[..., k] = np.where(Xb.max(-1) > ATOM_THRESHOLD, Xb.argmax(-1), -1)
    charge_k = [b.name for b in spec.extra_blocks].index("charge") if "charge" in spec else None
    charge_values = np.array(spec.block("charge").categories + (0,)) if charge_k is not None else None
    Q = quantize_bonds(An)
    out = []
    for b in range(B):
        idx = np.nonzero(exists[b])[0]
        syms = [spec.vocab[t] for t in types[b, idx]]
        charges = None if charge_k is None else charge_values[blocks[b, idx, charge_k]].tolist()  # -1 -> 0
        sub = np.ix_(idx, idx)
        out.append(_Nodes(idx, syms, Q[b][sub], charges, blocks[b, idx], An[b][sub]))
    return out


def _feature_spec(dataset: str, vocab: Sequence[str] | None, atom_features: Sequence[str] | None) -> AtomFeatureSpec:
    vocab = list(vocab) if vocab is not None else ATOM_VOCAB[dataset]
    return AtomFeatureSpec.build(DEFAULT_ATOM_FEATURES if atom_features is None else atom_features, vocab=vocab)


class GraphDecoding(NamedTuple):
    """One decoded graph: the molecule (or ``None``), whether it was valid without correction, whether its
    bond orders came from the atom features (the ``valence`` decoder found an assignment) and how many bonds
    got an order other than A's quantized one."""

    mol: object
    valid_wo_correction: bool
    from_features: bool
    bonds_changed: int


def _hydrogens(g: _Nodes, spec: AtomFeatureSpec) -> list:
    """Per atom, the ``num_hs`` category decoded (``None``: no column above 0.5, or no such block)."""
    if "num_hs" not in spec:
        return [None] * len(g.syms)
    k = [b.name for b in spec.extra_blocks].index("num_hs")
    cats = spec.block("num_hs").categories
    return [cats[i] if i >= 0 else None for i in g.blocks[:, k].tolist()]


def _valence_mol(g: _Nodes, spec: AtomFeatureSpec) -> tuple[Chem.RWMol, np.ndarray] | None:
    """The molecule whose bond orders meet the valences of the decoded charges and hydrogen counts on A's
    bond topology (:mod:`molgen.valence`), and those orders; ``None`` when no assignment exists."""
    charges = g.charges if g.charges is not None else [0] * len(g.syms)
    hydrogens = _hydrogens(g, spec)
    targets = [bond_valence_targets(s, c, h) for s, c, h in zip(g.syms, charges, hydrogens)]
    orders = assign_bond_orders(g.weights, targets)
    if orders is None:
        return None
    mol = Chem.RWMol()
    for s, c, h in zip(g.syms, charges, hydrogens):
        atom = Chem.Atom(_ATOMIC_NUM[s])
        atom.SetFormalCharge(int(c))
        if isinstance(h, int):
            atom.SetNumExplicitHs(h)
            atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    rows, cols = np.nonzero(np.triu(orders, k=1))
    for i, j in zip(rows.tolist(), cols.tolist()):
        mol.AddBond(i, j, _BOND_TYPES[int(orders[i, j])])
    if _first_valence_problem(mol, fast=False) is not None:
        return None
    return mol, orders


def _decode_graph(g: _Nodes, spec: AtomFeatureSpec, decoder: str = "gdss", correct: bool = True,
                 largest_fragment: bool = True) -> GraphDecoding:
    """One graph by ``decoder``: ``"gdss"`` (the module docstring's steps) or ``"valence"`` (bond orders from
    the charges and hydrogen counts, :func:`_valence_mol`; where none meets them, the ``gdss`` steps)."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; known: {', '.join(DECODERS)}")
    if decoder == "valence" and g.syms:
        found = _valence_mol(g, spec)
        if found is not None:
            mol, orders = found
            changed = int(np.triu(orders != g.bonds, k=1).sum())
            return GraphDecoding(_finalize(mol, largest_fragment), True, True, changed)
    mol, ok = graph_to_mol(g.syms, g.bonds, correct=correct, largest_fragment=largest_fragment, charges=g.charges)
    return GraphDecoding(mol, bool(ok), False, 0)


def decode_graphs(
    X,
    A,
    flags=None,
    dataset: str = "qm9",
    correct: bool = True,
    *,
    decoder: str = "gdss",
    adj_mode: str = "raw",
    atom_threshold: float | None = ATOM_THRESHOLD,
    largest_fragment: bool = True,
    vocab: Sequence[str] | None = None,
    atom_features: Sequence[str] | None = None,
) -> list[GraphDecoding]:
    """Decode a batch, one :class:`GraphDecoding` per graph: ``X`` (B, N, F), ``A`` (B, N, N), ``flags`` (B, N)
    or ``None``. ``atom_features``: the blocks of X (default ``["type"]``, then ``F = len(vocab)``);
    ``decoder``: :data:`DECODERS`, ``"gdss"`` (default) or ``"valence"`` (:func:`_decode_graph`). See the
    module docstring for the thresholds and steps."""
    spec = _feature_spec(dataset, vocab, atom_features)
    return [_decode_graph(g, spec, decoder, correct, largest_fragment)
            for g in _decode_nodes(X, A, flags, spec, adj_mode, atom_threshold)]


def graphs_to_mols(X, A, flags=None, dataset: str = "qm9", correct: bool = True, **options) -> DecodeResult:
    """Decode a batch (arguments and keyword ``options`` as :func:`decode_graphs`) to
    ``DecodeResult(mols, valid_wo_correction)`` (a tuple): one RDKit mol or ``None`` per graph, and whether
    each graph was valid before any correction."""
    out = decode_graphs(X, A, flags, dataset, correct, **options)
    return DecodeResult([d.mol for d in out], [d.valid_wo_correction for d in out])


def feature_consistency(
    X,
    A,
    flags=None,
    dataset: str = "qm9",
    *,
    atom_features: Sequence[str],
    adj_mode: str = "raw",
    atom_threshold: float | None = ATOM_THRESHOLD,
    vocab: Sequence[str] | None = None,
) -> dict:
    """How often the generated non-type blocks agree with the molecule the graph decodes to.

    Over the graphs valid without correction (their molecule has exactly the graph's atoms and bonds,
    so atoms line up with nodes; all fragments), each atom's decoded category per block (argmax if
    above 0.5, else none) is compared with the category recomputed by RDKit from the sanitized
    molecule (for ``charge``: its formal charge, which differs where GDSS's +1 rule fired).  A high
    rate means the auxiliary features the model generates are consistent with its bonds.

    Returns ``{"n_graphs", "n_atoms", "blocks": {name: rate}, "all": rate of atoms agreeing on every
    block}`` (rates ``None`` when there is no atom).
    """
    spec = _feature_spec(dataset, vocab, atom_features)
    names = [b.name for b in spec.extra_blocks]
    agree = np.zeros(len(names), dtype=np.int64)
    n_graphs = n_atoms = n_all = 0
    for g in _decode_nodes(X, A, flags, spec, adj_mode, atom_threshold):
        if not g.syms:
            continue
        mol = _construct(g.syms, g.bonds, g.charges)
        if _first_valence_problem(mol) is not None:
            continue
        m = Chem.Mol(mol)
        try:
            Chem.SanitizeMol(m)
        except Exception:
            continue
        same = atom_feature_indices(m, spec).astype(np.int64) == g.blocks
        n_graphs += 1
        n_atoms += same.shape[0]
        agree += same.sum(0)
        n_all += int(same.all(1).sum())
    rate = (lambda k: float(k) / n_atoms if n_atoms else None)
    return {"n_graphs": n_graphs, "n_atoms": n_atoms, "blocks": {n: rate(a) for n, a in zip(names, agree)},
            "all": rate(n_all)}


def mols_to_smiles(mols, canonical: bool = True) -> list:
    """Canonical SMILES per molecule (``None`` stays ``None``)."""
    out = []
    for m in mols:
        if m is None:
            out.append(None)
            continue
        try:
            out.append(Chem.MolToSmiles(m, canonical=canonical))
        except Exception:
            out.append(None)
    return out


__all__ = [
    "ATOM_THRESHOLD",
    "BOND_THRESHOLDS",
    "DECODERS",
    "DecodeResult",
    "GraphDecoding",
    "decode_graphs",
    "feature_consistency",
    "graph_to_mol",
    "graphs_to_mols",
    "mols_to_smiles",
    "quantize_bonds",
]
