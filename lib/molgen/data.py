"""Molecule datasets for the GDSS baseline: QM9, ZINC250k and MOSES as dense graphs.

A molecule with ``n`` heavy atoms becomes

* ``X``: ``(max_atoms, F)`` node features, rows ``n..max_atoms-1`` all zero (padding / "virtual"
  nodes, as in GDSS where the virtual-node channel is dropped).  By default (``atom_features=
  ["type"]``) ``X`` is the one-hot atom type, ``F = len(vocab)``, as in GDSS; other feature sets
  append one-hot blocks (formal charge, aromaticity, hybridization, hydrogens, degree, ring size:
  see :mod:`molgen.features`, whose :class:`AtomFeatureSpec` gives the blocks and ``F``);
* ``A``: ``(max_atoms, max_atoms)`` symmetric bond orders 0 (none), 1, 2, 3 of the
  kekulized molecule, zero diagonal, in RDKit atom order of the parsed SMILES.

Choices (stated, and reported in :class:`MolDataset`):

* Hydrogens are implicit; the SMILES is kekulized (aromatic bonds become 1/2).
* Formal charges: without the ``charge`` feature (``charges="drop"``, the default then) a
  charged molecule is kept and only the element is encoded, which is what GDSS/MoFlow's
  preprocessing does (their ``construct_atomic_number_array`` records the atomic number only);
  GDSS's decoder then puts a +1 charge back on N/O/S atoms whose valence exceeds the neutral
  one by one.  ``charges="skip"`` drops such molecules instead (counted as ``charged_atom``).
  With the ``charge`` feature (``charges="keep"``, the only mode allowed then) charged molecules
  are kept with their charges (-1, 0, +1; other charges are skipped as ``unsupported_charge``).
* Molecules that RDKit cannot parse, with an atom outside the vocabulary, with more than
  ``max_atoms`` heavy atoms or with a bond that is not single/double/triple after
  kekulization are skipped and counted by reason; loading never crashes on them.
* ``train_smiles``/``test_smiles`` are RDKit canonical (isomeric) SMILES of the *source*
  molecules (charges kept), aligned with the tensor rows, as GDSS canonicalizes them for
  the novelty / FCD reference sets.
* Adjacency scale: tensors hold raw bond orders (0..3, GDSS); :func:`scale_adjacency`
  maps them to the scale a model uses ("raw" or "unit" = divided by 3).

Where each dataset's molecules come from and how they split into train and test is
:mod:`molgen.sources` (one source per dataset); :func:`load_dataset` parses, encodes and caches
what a source gives it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem, RDLogger

from common.io import save_torch
from .features import ATOM_VOCAB, DEFAULT_ATOM_FEATURES, AtomFeatureSpec
from .sources import SOURCES, Source, SplitSpec, resolve_dir

RDLogger.DisableLog("rdApp.*")

# Maximum number of heavy atoms per molecule (QM9 and ZINC250k as in GDSS/MoFlow; MOSES:
# the largest molecule of molsets' train+test files has 27 heavy atoms).
MAX_ATOMS: dict[str, int] = {name: source.max_atoms for name, source in SOURCES.items()}

BOND_ORDER = {
    Chem.BondType.SINGLE: 1,
    Chem.BondType.DOUBLE: 2,
    Chem.BondType.TRIPLE: 3,
}
ADJ_MODES = ("raw", "unit")
CHARGE_MODES = ("drop", "skip", "keep")

# Bump when the encoding or the cache layout changes (invalidates old caches).
CACHE_VERSION = 2

SKIP_REASONS = (
    "malformed_smiles",
    "out_of_vocab_atom",
    "charged_atom",
    "unsupported_charge",
    "too_many_atoms",
    "unsupported_bond",
    "empty",
)


# --------------------------------------------------------------------------- encoding
def _check_dataset(dataset: str) -> None:
    if dataset not in ATOM_VOCAB:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(ATOM_VOCAB)}")


def resolve_charges(charges: str | None, spec: AtomFeatureSpec) -> str:
    """The charge mode for a feature set: ``None`` -> ``"keep"`` with the ``charge`` block, else ``"drop"``.

    ``"keep"`` goes with the ``charge`` block and only with it (dropping or skipping charges the
    model is asked to generate, or keeping charges X cannot hold, would contradict the feature set).
    """
    if charges is None:
        return "keep" if "charge" in spec else "drop"
    if charges not in CHARGE_MODES:
        raise ValueError(f"charges must be one of {CHARGE_MODES} or None, got {charges!r}")
    if ("charge" in spec) != (charges == "keep"):
        raise ValueError(
            f"charges={charges!r} does not fit atom_features {list(spec.names)}: use charges='keep' "
            "(or None) with the 'charge' feature and 'drop'/'skip' without it"
        )
    return charges


def _spec(dataset: str, atom_features: Sequence[str]) -> AtomFeatureSpec:
    _check_dataset(dataset)
    return AtomFeatureSpec.build(atom_features, dataset=dataset)


def _atom_value(name: str, atom, ring_info):
    """The category label of ``atom`` in block ``name`` (may be outside the block's categories)."""
    if name == "charge":
        return atom.GetFormalCharge()
    if name == "aromatic":
        return True if atom.GetIsAromatic() else None
    if name == "hybridization":
        return str(atom.GetHybridization())
    if name == "num_hs":
        h = atom.GetTotalNumHs()
        return h if h < 3 else "3+"
    if name == "degree":
        return atom.GetDegree()
    if name == "ring":
        size = ring_info.MinAtomRingSize(atom.GetIdx())
        return size if size <= 8 else "9+"
    raise ValueError(f"no encoder for atom feature {name!r}")


def atom_feature_indices(mol: Chem.Mol, spec: AtomFeatureSpec) -> np.ndarray:
    """``(n_atoms, len(spec.extra_blocks))`` int8: per atom and non-type block, the hot column index
    within the block, -1 if none.  ``mol`` must be sanitized (aromaticity, hybridization, rings)."""
    blocks = spec.extra_blocks
    out = np.full((mol.GetNumAtoms(), len(blocks)), -1, dtype=np.int8)
    if not blocks:
        return out
    lookup = [{c: i for i, c in enumerate(b.categories)} for b in blocks]
    ring_info = mol.GetRingInfo()
    for atom in mol.GetAtoms():
        for k, b in enumerate(blocks):
            out[atom.GetIdx(), k] = lookup[k].get(_atom_value(b.name, atom, ring_info), -1)
    return out


def indices_to_x(types: np.ndarray, extra: np.ndarray, spec: AtomFeatureSpec, rows: int) -> np.ndarray:
    """``(rows, spec.width)`` float32 X from per-atom type indices and non-type block indices (-1: none)."""
    n = len(types)
    X = np.zeros((rows, spec.width), dtype=np.float32)
    X[np.arange(n), types] = 1.0
    for k, b in enumerate(spec.extra_blocks):
        idx = extra[:, k].astype(np.int64)
        on = np.nonzero(idx >= 0)[0]
        X[on, b.start + idx[on]] = 1.0
    return X


def encode_smiles(smiles: str, dataset: str, charges: str | None = None,
                  atom_features: Sequence[str] = DEFAULT_ATOM_FEATURES):
    """Encode one SMILES.

    Returns ``(X, A, canonical_smiles)`` or, when the molecule is skipped, the reason
    (one of :data:`SKIP_REASONS`) as a string.
    """
    spec = _spec(dataset, atom_features)
    out = _encode(smiles, dataset, resolve_charges(charges, spec), spec)
    if isinstance(out, str):
        return out
    types, extra, A, canonical, _ = out
    return indices_to_x(types, extra, spec, MAX_ATOMS[dataset]), A, canonical


def _encode(smiles: str, dataset: str, charges: str, spec: AtomFeatureSpec):
    """``(types, extra, A, canonical, charged)`` or the skip reason.

    ``types``: ``(n,)`` vocabulary indices; ``extra``: ``(n, k)`` indices of the non-type blocks
    (:func:`atom_feature_indices`); ``A``: ``(max_atoms, max_atoms)`` float32 bond orders;
    ``charged``: whether the molecule has a formal charge (kept or dropped per ``charges``).
    """
    if not isinstance(smiles, str):
        return "malformed_smiles"
    smiles = smiles.strip()
    if not smiles:
        return "malformed_smiles"
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return "malformed_smiles"
    n = mol.GetNumAtoms()
    if n == 0:
        return "empty"
    index = {s: i for i, s in enumerate(spec.vocab)}
    atom_types = []
    charged = False
    for atom in mol.GetAtoms():
        k = index.get(atom.GetSymbol())
        if k is None:
            return "out_of_vocab_atom"
        atom_types.append(k)
        if atom.GetFormalCharge() != 0:
            charged = True
    if charged and charges == "skip":
        return "charged_atom"
    if charged and charges == "keep" and any(abs(a.GetFormalCharge()) > 1 for a in mol.GetAtoms()):
        return "unsupported_charge"
    max_atoms = MAX_ATOMS[dataset]
    if n > max_atoms:
        return "too_many_atoms"
    canonical = Chem.MolToSmiles(mol)
    extra = atom_feature_indices(mol, spec)  # before kekulization: aromaticity is a feature
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except Exception:  # pragma: no cover - sanitized molecules always kekulize
        return "unsupported_bond"
    A = np.zeros((max_atoms, max_atoms), dtype=np.float32)
    for bond in mol.GetBonds():
        order = BOND_ORDER.get(bond.GetBondType())
        if order is None:
            return "unsupported_bond"
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        A[i, j] = A[j, i] = order
    return np.asarray(atom_types, dtype=np.int64), extra, A, canonical, charged


def smiles_to_graph(smiles: str, dataset: str, charges: str | None = None,
                    atom_features: Sequence[str] = DEFAULT_ATOM_FEATURES) -> tuple[np.ndarray, np.ndarray] | None:
    """``(X, A)`` float32 arrays for one SMILES, or ``None`` if it is skipped.

    ``X``: ``(max_atoms, F)`` one-hot blocks of ``atom_features`` (default: the atom type only,
    ``F = len(vocab)``), zero rows for padding.
    ``A``: ``(max_atoms, max_atoms)`` symmetric bond orders 0..3 of the kekulized molecule.
    """
    out = encode_smiles(smiles, dataset, charges, atom_features)
    if isinstance(out, str):
        return None
    return out[0], out[1]


# --------------------------------------------------------------------------- helpers
def node_flags(X: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` float32 flags: 1 for a real atom (non-zero one-hot row), 0 for padding."""
    return (X.abs().sum(-1) > 0).to(torch.float32)


def scale_adjacency(A: torch.Tensor, mode: str = "raw") -> torch.Tensor:
    """Map raw bond orders (0..3) to the scale a model sees.

    ``"raw"``: unchanged, 0..3 (GDSS).  ``"unit"``: divided by 3, in [0, 1].
    """
    if mode == "raw":
        return A
    if mode == "unit":
        return A / 3.0
    raise ValueError(f"adjacency mode must be one of {ADJ_MODES}, got {mode!r}")


def unscale_adjacency(A: torch.Tensor, mode: str = "raw") -> torch.Tensor:
    """Inverse of :func:`scale_adjacency` (back to the raw 0..3 scale)."""
    if mode == "raw":
        return A
    if mode == "unit":
        return A * 3.0
    raise ValueError(f"adjacency mode must be one of {ADJ_MODES}, got {mode!r}")


@dataclass
class MolDataset:
    """Dense train/test tensors of a dataset; ``X`` holds the blocks of ``atom_features``."""

    name: str
    vocab: list[str]
    max_atoms: int
    train_smiles: list[str]
    test_smiles: list[str]
    X_train: torch.Tensor  # float32 B x N x F
    A_train: torch.Tensor  # float32 B x N x N, raw bond orders 0..3
    X_test: torch.Tensor
    A_test: torch.Tensor
    n_skipped: dict[str, int]  # reason -> count, over train+test
    split_source: str
    index_convention: str
    split_entries_not_found: int = 0
    stats: dict = field(default_factory=dict)
    atom_features: list[str] = field(default_factory=lambda: list(DEFAULT_ATOM_FEATURES))

    @property
    def feature_spec(self) -> AtomFeatureSpec:
        return AtomFeatureSpec.build(self.atom_features, vocab=self.vocab)

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    def flags(self, split: str = "train") -> torch.Tensor:
        """Node flags ``(B, N)`` of the train or test tensors."""
        if split == "train":
            return node_flags(self.X_train)
        if split == "test":
            return node_flags(self.X_test)
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def adjacency(self, split: str = "train", mode: str = "raw") -> torch.Tensor:
        A = self.A_train if split == "train" else self.A_test
        return scale_adjacency(A, mode)

    def summary(self) -> str:
        return (
            f"{self.name}: {self.n_train} train / {self.n_test} test molecules, "
            f"max_atoms={self.max_atoms}, vocab={self.vocab}, skipped={self.n_skipped}, "
            f"split={self.split_source}, split entries not found={self.split_entries_not_found}"
            + ("" if self.feature_spec.is_default else f", atom features {self.feature_spec.describe()}")
        )


# --------------------------------------------------------------------------- loading
def _file_identity(paths: Sequence[Path]) -> list:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(Path(p).resolve()), st.st_size, int(st.st_mtime)])
    return out


def _encode_many(smiles: Sequence[str], name: str, charges: str, spec: AtomFeatureSpec):
    """Encode a list: type indices ``(B, N)`` int8 and non-type block indices ``(B, N, k)`` int8
    (-1 = padding / none), bond orders ``(B, N, N)`` uint8, canonical SMILES, skip counts, #charged."""
    max_atoms = MAX_ATOMS[name]
    k_extra = len(spec.extra_blocks)
    Ts = np.full((len(smiles), max_atoms), -1, dtype=np.int8)
    Es = np.full((len(smiles), max_atoms, k_extra), -1, dtype=np.int8)
    As = np.zeros((len(smiles), max_atoms, max_atoms), dtype=np.uint8)
    canon, reasons, n_charged = [], {}, 0
    k = 0
    for s in smiles:
        out = _encode(s, name, charges, spec)
        if isinstance(out, str):
            reasons[out] = reasons.get(out, 0) + 1
            continue
        types, extra, A, c, charged = out
        Ts[k, : len(types)] = types
        Es[k, : len(types)] = extra
        As[k] = A.astype(np.uint8)
        canon.append(c)
        n_charged += int(charged)
        k += 1
    return Ts[:k], Es[:k], As[:k], canon, reasons, n_charged


def _types_to_onehot(T: torch.Tensor, F: int) -> torch.Tensor:
    """Atom-type indices (-1 = padding) -> float32 one-hot with zero padding rows."""
    return torch.nn.functional.one_hot(T.long() + 1, F + 1)[..., 1:].to(torch.float32)


def _blocks_to_x(T: torch.Tensor, E: torch.Tensor | None, spec: AtomFeatureSpec) -> torch.Tensor:
    """X ``(B, N, spec.width)`` from type indices and non-type block indices (-1: no column on)."""
    X = _types_to_onehot(T, len(spec.vocab))
    if not spec.extra_blocks:
        return X
    parts = [X] + [_types_to_onehot(E[..., k], b.width) for k, b in enumerate(spec.extra_blocks)]
    return torch.cat(parts, dim=-1)


def load_dataset(
    name: str | Source,
    split_path: str | None = None,
    seed: int = 42,
    limit: int | None = None,
    cache_dir: str = "data/cache",
    *,
    atom_features: Sequence[str] = DEFAULT_ATOM_FEATURES,
    charges: str | None = None,
    split_index_base: int = 1,
    test_fraction: float = 0.1,
    download: bool = True,
    use_cache: bool = True,
    verbose: bool = False,
    **source_options,
) -> MolDataset:
    """Load ``"qm9"``, ``"zinc250k"`` or ``"moses"`` (or any :class:`molgen.sources.Source`) as dense graph
    tensors: the source's molecules, split, parsed and encoded, cached on disk.

    split_path, seed, test_fraction, split_index_base: the split (:class:`molgen.sources.SplitSpec`):
        ``None`` = the default split file (``../shared/data/valid_idx_<name>.json`` beside the repository) if
        it exists, else a seeded random split (``test_fraction`` of the molecules); ``"random"`` forces the
        seeded random split; any other value is a split file that must exist. ``split_index_base``: 1
        (default, MoFlow's convention) or 0 (GDSS's), see the sources. MOSES always uses molsets' own
        train/test files.
    limit: keep only the first ``limit`` molecules of each of train and test (in source /
        split-file order), before parsing; for quick runs and tests.
    download: fetch missing raw files (ZINC250k) rather than fail.
    source_options: the options of the dataset's source (``molgen.sources.SOURCES[name]``): ``source_path``
        (the raw data instead of the installed / downloaded files); for ZINC250k also ``zinc_url``,
        ``zinc_sha256`` and ``fetch``.
    atom_features: the blocks of X (:mod:`molgen.features`); default ``["type"]``, GDSS's one-hot
        atom type.
    charges: ``"drop"`` / ``"skip"`` without the ``charge`` feature, ``"keep"`` with it; ``None``
        (default) picks accordingly (:func:`resolve_charges`).
    cache_dir: parsed tensors are cached here (relative paths: relative to the repo root),
        keyed by dataset, source files, split file contents, seed, limit and options (the feature
        set enters the key when it is not the default, so caches of the default encoding stay valid).
    """
    t0 = time.perf_counter()
    if isinstance(name, Source):
        if source_options:
            raise ValueError(f"options {sorted(source_options)} go to the source, which is given already")
        source = name
    else:
        _check_dataset(name)
        source = SOURCES[name](**source_options)
    name = source.name
    spec = _spec(name, atom_features)
    charges = resolve_charges(charges, spec)
    split = SplitSpec(split_path, seed, split_index_base, test_fraction)
    cache_root = resolve_dir(cache_dir)
    source_files = source.files(cache_root, download=download)
    key_obj = {
        "v": CACHE_VERSION,
        "name": name,
        "sources": _file_identity(source_files),
        "split": source.split_key(split),
        "limit": limit,
        "charges": charges,
    }
    if not spec.is_default:
        key_obj["atom_features"] = list(spec.names)
    key = hashlib.sha256(json.dumps(key_obj, sort_keys=True).encode()).hexdigest()[:20]
    cache_file = cache_root / f"molgen_{name}_{key}.pt"
    if use_cache and cache_file.exists():
        try:
            blob = torch.load(cache_file, weights_only=True)
            ds = _dataset_from_blob(blob)
            ds.stats["load_seconds"] = time.perf_counter() - t0
            ds.stats["from_cache"] = str(cache_file)
            return ds
        except Exception as e:  # corrupt / incompatible cache: rebuild
            if verbose:
                print(f"[molgen.data] ignoring unreadable cache {cache_file}: {e}")

    rows = source.split(source_files, split)
    train_smi, test_smi = rows.train_smiles, rows.test_smiles
    if limit is not None:
        train_smi, test_smi = train_smi[:limit], test_smi[:limit]

    if verbose:
        print(f"[molgen.data] parsing {len(train_smi)} train + {len(test_smi)} test SMILES of {name} ...")
    Ttr, Etr, Atr, ctr, rtr, chtr = _encode_many(train_smi, name, charges, spec)
    Tte, Ete, Ate, cte, rte, chte = _encode_many(test_smi, name, charges, spec)
    n_skipped = {r: rtr.get(r, 0) + rte.get(r, 0) for r in SKIP_REASONS if rtr.get(r, 0) + rte.get(r, 0)}
    stats = {
        "source_files": [str(p) for p in source_files],
        "n_source_rows": rows.n_rows,
        "n_split_entries": rows.n_entries,
        "n_train_before_parse": len(train_smi),
        "n_test_before_parse": len(test_smi),
        "skipped_train": rtr,
        "skipped_test": rte,
        "n_charged_kept": chtr + chte,
        "charges": charges,
        "split_index_base": split_index_base,
        "limit": limit,
        "parse_seconds": time.perf_counter() - t0,
    }
    blob = {
        "name": name,
        "vocab": list(ATOM_VOCAB[name]),
        "max_atoms": MAX_ATOMS[name],
        # one string each: torch.load(weights_only=True) unpickles long lists slowly
        "train_smiles": "\n".join(ctr),
        "test_smiles": "\n".join(cte),
        "T_train": torch.from_numpy(Ttr),
        "A_train": torch.from_numpy(Atr),
        "T_test": torch.from_numpy(Tte),
        "A_test": torch.from_numpy(Ate),
        "n_skipped": n_skipped,
        "split_source": rows.source,
        "index_convention": rows.index_convention,
        "split_entries_not_found": rows.not_found,
        "stats": json.loads(json.dumps(stats)),
    }
    if not spec.is_default:  # default blobs keep the original layout
        blob.update(atom_features=list(spec.names), E_train=torch.from_numpy(Etr), E_test=torch.from_numpy(Ete))
    if use_cache:
        try:
            save_torch(blob, cache_file)
        except OSError as e:  # read-only location: still return the data
            if verbose:
                print(f"[molgen.data] could not write cache {cache_file}: {e}")
    ds = _dataset_from_blob(blob)
    ds.stats["load_seconds"] = time.perf_counter() - t0
    ds.stats["from_cache"] = None
    return ds


def _dataset_from_blob(blob: dict) -> MolDataset:
    spec = AtomFeatureSpec.build(blob.get("atom_features", DEFAULT_ATOM_FEATURES), vocab=blob["vocab"])
    return MolDataset(
        name=blob["name"],
        vocab=list(blob["vocab"]),
        max_atoms=int(blob["max_atoms"]),
        train_smiles=blob["train_smiles"].split("\n") if blob["train_smiles"] else [],
        test_smiles=blob["test_smiles"].split("\n") if blob["test_smiles"] else [],
        X_train=_blocks_to_x(blob["T_train"], blob.get("E_train"), spec),
        A_train=blob["A_train"].to(torch.float32),
        X_test=_blocks_to_x(blob["T_test"], blob.get("E_test"), spec),
        A_test=blob["A_test"].to(torch.float32),
        n_skipped=dict(blob["n_skipped"]),
        split_source=blob["split_source"],
        index_convention=blob["index_convention"],
        split_entries_not_found=int(blob["split_entries_not_found"]),
        stats=dict(blob["stats"]),
        atom_features=list(spec.names),
    )


__all__ = [
    "ATOM_VOCAB",
    "AtomFeatureSpec",
    "MAX_ATOMS",
    "MolDataset",
    "atom_feature_indices",
    "encode_smiles",
    "indices_to_x",
    "load_dataset",
    "node_flags",
    "resolve_charges",
    "scale_adjacency",
    "smiles_to_graph",
    "unscale_adjacency",
]
