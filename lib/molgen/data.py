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
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem, RDLogger

from common.io import atomic_path, save_torch
from .features import ATOM_VOCAB, DEFAULT_ATOM_FEATURES, AtomFeatureSpec

RDLogger.DisableLog("rdApp.*")

# Maximum number of heavy atoms per molecule (QM9 and ZINC250k as in GDSS/MoFlow; MOSES:
# the largest molecule of molsets' train+test files has 27 heavy atoms).
MAX_ATOMS: dict[str, int] = {"qm9": 9, "zinc250k": 38, "moses": 27}

BOND_ORDER = {
    Chem.BondType.SINGLE: 1,
    Chem.BondType.DOUBLE: 2,
    Chem.BondType.TRIPLE: 3,
}
ADJ_MODES = ("raw", "unit")
CHARGE_MODES = ("drop", "skip", "keep")

# ZINC250k: the chemical_vae CSV used by GraphNVP/MoFlow/GDSS (GDSS's data/zinc250k.csv
# is this file with an index column).  Checksum recorded independently by several public
# projects: 22,606,589 bytes, 249,455 rows, md5 b59078b2b04c6e9431280e3dc42048d5.
ZINC250K_URL = (
    "https://raw.githubusercontent.com/aspuru-guzik-group/chemical_vae/master/"
    "models/zinc_properties/250k_rndm_zinc_drugs_clean_3.csv"
)
ZINC250K_SHA256 = "35e3f1a52b1badc0697e373d73a18ad773f415936ff992f4c6baa2e067b3e6ae"
ZINC250K_FILENAME = "250k_rndm_zinc_drugs_clean_3.csv"

# Bump when the encoding or the cache layout changes (invalidates old caches).
CACHE_VERSION = 2

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPLIT_FILES = {"qm9": "valid_idx_qm9.json", "zinc250k": "valid_idx_zinc250k.json"}

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


# --------------------------------------------------------------------------- sources
def _site_packages_dirs() -> list[Path]:
    dirs = []
    for p in sys.path:
        if p and ("site-packages" in p or "dist-packages" in p):
            dirs.append(Path(p))
    return dirs


def _find_package_file(dist_name: str, rel_path: str) -> Path:
    """Locate a data file shipped by an installed distribution without importing it."""
    try:
        from importlib import metadata

        dist = metadata.distribution(dist_name)
        for f in dist.files or []:
            if str(f).replace("\\", "/") == rel_path:
                p = Path(dist.locate_file(f))
                if p.exists():
                    return p
    except Exception:
        pass
    for d in _site_packages_dirs():
        for hit in glob.glob(str(d / rel_path)):
            return Path(hit)
    raise FileNotFoundError(
        f"{rel_path} not found: is the {dist_name!r} package installed? "
        f"(pip install {dist_name}; see requirements.txt)"
    )


def qm9_csv_paths() -> list[Path]:
    """The three qm9pack CSV parts (``import qm9pack`` itself is broken, so by path)."""
    return [_find_package_file("qm9pack", f"qm9pack/data/qm9_part{i}.csv") for i in (1, 2, 3)]


def moses_csv_paths() -> dict[str, Path]:
    return {s: _find_package_file("molsets", f"moses/dataset/data/{s}.csv.gz") for s in ("train", "test")}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _default_fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f)


def fetch_zinc250k(
    cache_dir: str | os.PathLike = "data/cache",
    url: str = ZINC250K_URL,
    sha256: str = ZINC250K_SHA256,
    fetch=None,
    download: bool = True,
) -> Path:
    """Return the path of the ZINC250k CSV in ``cache_dir``, downloading it if missing.

    The download goes to a temporary file in ``cache_dir`` and is moved into place only
    after its sha256 matches.  ``fetch(url, dest_path)`` can be replaced (tests);
    ``file://`` URLs work with the default fetcher.
    """
    cache_dir = _resolve_dir(cache_dir)
    dest = cache_dir / ZINC250K_FILENAME
    how_to = (
        f"Get it on a machine with internet access, e.g.\n"
        f"  curl -L -o {dest} {ZINC250K_URL}\n"
        f"(expected sha256 {ZINC250K_SHA256}), then copy it to {dest}."
    )
    if dest.exists():
        digest = _sha256_file(dest)
        if digest != sha256:
            raise ValueError(
                f"ZINC250k file {dest} has sha256 {digest}, expected {sha256}: "
                f"delete it and download again.\n{how_to}"
            )
        return dest
    if not download:
        raise FileNotFoundError(f"ZINC250k CSV not found at {dest}.\n{how_to}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fetch = fetch or _default_fetch
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            fetch(url, tmp)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise FileNotFoundError(
                f"ZINC250k CSV not found at {dest} and downloading {url} failed ({e}).\n{how_to}"
            ) from e
        digest = _sha256_file(tmp)
        if digest != sha256:
            raise ValueError(
                f"checksum mismatch for ZINC250k downloaded from {url}: sha256 {digest}, "
                f"expected {sha256}; the file was not kept."
            )
    return dest


def _resolve_dir(path: str | os.PathLike) -> Path:
    """Relative paths are taken relative to the repository root (not the CWD)."""
    p = Path(path)
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


def default_split_path(name: str) -> Path | None:
    """``../shared/data/valid_idx_<name>.json`` beside the repository, if it exists."""
    fname = DEFAULT_SPLIT_FILES.get(name)
    if fname is None:
        return None
    candidates = [REPO_ROOT.parent / "shared" / "data" / fname, Path.cwd().parent / "shared" / "data" / fname]
    env = os.environ.get("MOLGEN_SPLIT_DIR")
    if env:
        candidates.insert(0, Path(env) / fname)
    for c in candidates:
        if c.exists():
            return c.resolve()
    return None


def read_split_file(path: str | os.PathLike) -> list[int]:
    """Read a split file: ``{"valid_idxs": [...]}`` (QM9, zero-padded strings) or a plain list."""
    with open(path) as f:
        obj = json.load(f)
    if isinstance(obj, dict):
        for key in ("valid_idxs", "valid_idx", "test_idxs", "test_idx"):
            if key in obj:
                obj = obj[key]
                break
        else:
            raise ValueError(f"split file {path}: no 'valid_idxs' key (keys: {list(obj)})")
    if not isinstance(obj, list):
        raise ValueError(f"split file {path}: expected a list of indices")
    return [int(x) for x in obj]


# --------------------------------------------------------------------------- loading
def _read_source(name: str, paths: Sequence[Path]) -> tuple[list[int], list[str]]:
    """Return (ids, smiles) of the qm9/zinc250k source rows, in file order.

    QM9 ids are qm9pack's ``Index`` (QM9 molecule number); ZINC ids are 0-based row positions.
    """
    import pandas as pd

    if name == "qm9":
        df = pd.concat([pd.read_csv(p, usecols=["Index", "SMILES"]) for p in paths], ignore_index=True)
        return df["Index"].astype(int).tolist(), df["SMILES"].astype(str).tolist()
    df = pd.read_csv(paths[0])
    cols = [c for c in df.columns if str(c).strip().lower() == "smiles"]
    if not cols:
        raise ValueError(f"{paths[0]}: no 'smiles' column (columns: {list(df.columns)})")
    smiles = df[cols[0]].astype(str).str.strip().tolist()  # ZINC SMILES end with a newline
    return list(range(len(smiles))), smiles


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
    name: str,
    split_path: str | None = None,
    seed: int = 42,
    limit: int | None = None,
    cache_dir: str = "data/cache",
    *,
    atom_features: Sequence[str] = DEFAULT_ATOM_FEATURES,
    charges: str | None = None,
    split_index_base: int = 1,
    test_fraction: float = 0.1,
    source_path=None,
    download: bool = True,
    zinc_url: str = ZINC250K_URL,
    zinc_sha256: str = ZINC250K_SHA256,
    fetch=None,
    use_cache: bool = True,
    verbose: bool = False,
) -> MolDataset:
    """Load ``"qm9"``, ``"zinc250k"`` or ``"moses"`` as dense graph tensors.

    split_path: ``None`` = the default split file (``../shared/data/valid_idx_<name>.json``
        beside the repository) if it exists, else a seeded random split; ``"random"`` forces
        the seeded random split (``test_fraction`` of the molecules); any other value is a
        split file that must exist.  MOSES always uses molsets' own train/test files.
    split_index_base: how split entries are read.  1 (default, MoFlow's convention): QM9
        entries are 1-based QM9 molecule numbers matched to qm9pack's ``Index`` column and
        ZINC entries are 1-based row numbers of the CSV.  0 (GDSS's convention): entries are
        0-based rows of GDSS's full 133,885-row QM9 CSV (= molecule number entry+1) / of
        the ZINC CSV.
    limit: keep only the first ``limit`` molecules of each of train and test (in source /
        split-file order), before parsing; for quick runs and tests.
    source_path: override the raw data (QM9: a CSV or list of CSVs with ``Index`` and
        ``SMILES`` columns; ZINC250k: the CSV, then no download/checksum).
    atom_features: the blocks of X (:mod:`molgen.features`); default ``["type"]``, GDSS's one-hot
        atom type.
    charges: ``"drop"`` / ``"skip"`` without the ``charge`` feature, ``"keep"`` with it; ``None``
        (default) picks accordingly (:func:`resolve_charges`).
    cache_dir: parsed tensors are cached here (relative paths: relative to the repo root),
        keyed by dataset, source files, split file contents, seed, limit and options (the feature
        set enters the key when it is not the default, so caches of the default encoding stay valid).
    """
    t0 = time.perf_counter()
    spec = _spec(name, atom_features)
    charges = resolve_charges(charges, spec)
    if split_index_base not in (0, 1):
        raise ValueError("split_index_base must be 0 or 1")
    cache_root = _resolve_dir(cache_dir)

    # ---- resolve the source files
    if name == "moses":
        if split_path not in (None, "random"):
            raise ValueError("MOSES uses molsets' own train/test files; split_path is not supported")
        if source_path is not None:
            src = {k: Path(v) for k, v in dict(source_path).items()}
        else:
            src = moses_csv_paths()
        source_files = [src["train"], src["test"]]
    elif name == "zinc250k":
        if source_path is None:
            source_files = [fetch_zinc250k(cache_root, url=zinc_url, sha256=zinc_sha256, fetch=fetch, download=download)]
        else:
            source_files = [Path(source_path)]
    else:
        if source_path is None:
            source_files = qm9_csv_paths()
        elif isinstance(source_path, (list, tuple)):
            source_files = [Path(p) for p in source_path]
        else:
            source_files = [Path(source_path)]

    # ---- resolve the split
    split_file: Path | None = None
    if name != "moses":
        if split_path is None:
            split_file = default_split_path(name)
        elif split_path != "random":
            split_file = Path(split_path)
            if not split_file.exists():
                raise FileNotFoundError(f"split file {split_file} does not exist")
    split_key = (
        {"file": str(split_file.resolve()), "sha256": _sha256_file(split_file), "base": split_index_base}
        if split_file is not None
        else ({"random": seed, "test_fraction": test_fraction} if name != "moses" else {"moses": "given"})
    )
    key_obj = {
        "v": CACHE_VERSION,
        "name": name,
        "sources": _file_identity(source_files),
        "split": split_key,
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

    # ---- read source rows and split them
    not_found = 0
    n_split_entries = 0
    if name == "moses":
        import pandas as pd

        train_smi = pd.read_csv(src["train"])["SMILES"].astype(str).tolist()
        test_smi = pd.read_csv(src["test"])["SMILES"].astype(str).tolist()
        n_rows = len(train_smi) + len(test_smi)
        split_source = f"molsets package files {src['train'].name} / {src['test'].name} (given train/test split)"
        index_convention = "MOSES: rows of molsets' train.csv.gz and test.csv.gz, in file order"
        train_ids, test_ids = list(range(len(train_smi))), list(range(len(test_smi)))
    else:
        ids, smiles = _read_source(name, source_files)
        n_rows = len(ids)
        if split_file is not None:
            entries = read_split_file(split_file)
            n_split_entries = len(entries)
            if name == "qm9":
                pos_of = {mid: p for p, mid in enumerate(ids)}
                wanted = [e + (1 - split_index_base) for e in entries]  # QM9 molecule numbers
                index_convention = (
                    "QM9 split entries read as 1-based QM9 molecule numbers (MoFlow convention), matched to "
                    "qm9pack's Index column (original 1..133,885 numbering; the 3,054 uncharacterized "
                    "molecules are absent from qm9pack)"
                    if split_index_base == 1
                    else "QM9 split entries read as 0-based rows of GDSS's full 133,885-row QM9 CSV "
                    "(GDSS convention), i.e. molecule number = entry + 1, matched to qm9pack's Index column"
                )
            else:
                pos_of = {i: i for i in range(n_rows)}
                wanted = [e - split_index_base for e in entries]  # row positions
                index_convention = (
                    f"ZINC250k split entries read as {'1-based (MoFlow' if split_index_base == 1 else '0-based (GDSS'}"
                    f" convention) row numbers of {ZINC250K_FILENAME}"
                )
            test_pos, seen = [], set()
            for w in wanted:
                p = pos_of.get(w)
                if p is None:
                    not_found += 1
                elif p not in seen:
                    seen.add(p)
                    test_pos.append(p)
            train_pos = [p for p in range(n_rows) if p not in seen]
            split_source = f"split file {split_file} ({n_split_entries} entries, {not_found} not found)"
        else:
            rng = np.random.default_rng(seed)
            perm = rng.permutation(n_rows)
            n_test = int(round(test_fraction * n_rows))
            test_set = set(perm[:n_test].tolist())
            test_pos = sorted(test_set)
            train_pos = [p for p in range(n_rows) if p not in test_set]
            split_source = f"seeded random split, seed={seed}, test_fraction={test_fraction}"
            index_convention = (
                "random split over source rows"
                + (" (qm9pack Index column = QM9 molecule number)" if name == "qm9" else " (CSV row order)")
            )
        train_ids = [ids[p] for p in train_pos]
        test_ids = [ids[p] for p in test_pos]
        train_smi = [smiles[p] for p in train_pos]
        test_smi = [smiles[p] for p in test_pos]

    if limit is not None:
        train_smi, test_smi = train_smi[:limit], test_smi[:limit]
        train_ids, test_ids = train_ids[:limit], test_ids[:limit]

    if verbose:
        print(f"[molgen.data] parsing {len(train_smi)} train + {len(test_smi)} test SMILES of {name} ...")
    Ttr, Etr, Atr, ctr, rtr, chtr = _encode_many(train_smi, name, charges, spec)
    Tte, Ete, Ate, cte, rte, chte = _encode_many(test_smi, name, charges, spec)
    n_skipped = {r: rtr.get(r, 0) + rte.get(r, 0) for r in SKIP_REASONS if rtr.get(r, 0) + rte.get(r, 0)}
    stats = {
        "source_files": [str(p) for p in source_files],
        "n_source_rows": n_rows,
        "n_split_entries": n_split_entries,
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
        "split_source": split_source,
        "index_convention": index_convention,
        "split_entries_not_found": not_found,
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
    "ZINC250K_SHA256",
    "ZINC250K_URL",
    "encode_smiles",
    "fetch_zinc250k",
    "indices_to_x",
    "load_dataset",
    "node_flags",
    "read_split_file",
    "resolve_charges",
    "scale_adjacency",
    "smiles_to_graph",
    "unscale_adjacency",
]
