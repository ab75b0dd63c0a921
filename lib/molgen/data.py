"""Molecule datasets for the GDSS baseline: QM9, ZINC250k and MOSES as dense graphs.

A molecule with ``n`` heavy atoms becomes

* ``X``: ``(max_atoms, len(vocab))`` one-hot atom types, rows ``n..max_atoms-1`` all zero
  (padding / "virtual" nodes, as in GDSS where the virtual-node channel is dropped);
* ``A``: ``(max_atoms, max_atoms)`` symmetric bond orders 0 (none), 1, 2, 3 of the
  kekulized molecule, zero diagonal, in RDKit atom order of the parsed SMILES.

Choices (stated, and reported in :class:`MolDataset`):

* Hydrogens are implicit; the SMILES is kekulized (aromatic bonds become 1/2).
* Formal charges: by default (``charges="drop"``) a charged molecule is kept and only the
  element is encoded, which is what GDSS/MoFlow's preprocessing does (their
  ``construct_atomic_number_array`` records the atomic number only); GDSS's decoder then
  puts a +1 charge back on N/O/S atoms whose valence exceeds the neutral one by one.
  ``charges="skip"`` drops such molecules instead (counted as ``charged_atom``).
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
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")

ATOM_VOCAB: dict[str, list[str]] = {
    "qm9": ["C", "N", "O", "F"],
    "zinc250k": ["C", "N", "O", "F", "P", "S", "Cl", "Br", "I"],
    # MOSES keeps C, N, S, O, F, Cl, Br, H (H only implicit in its SMILES).
    "moses": ["C", "N", "O", "F", "S", "Cl", "Br"],
}
# Maximum number of heavy atoms per molecule (QM9 and ZINC250k as in GDSS/MoFlow; MOSES:
# the largest molecule of molsets' train+test files has 27 heavy atoms).
MAX_ATOMS: dict[str, int] = {"qm9": 9, "zinc250k": 38, "moses": 27}

BOND_ORDER = {
    Chem.BondType.SINGLE: 1,
    Chem.BondType.DOUBLE: 2,
    Chem.BondType.TRIPLE: 3,
}
ADJ_MODES = ("raw", "unit")
CHARGE_MODES = ("drop", "skip")

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
    "too_many_atoms",
    "unsupported_bond",
    "empty",
)


# --------------------------------------------------------------------------- encoding
def _check_dataset(dataset: str) -> None:
    if dataset not in ATOM_VOCAB:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(ATOM_VOCAB)}")


def encode_smiles(smiles: str, dataset: str, charges: str = "drop"):
    """Encode one SMILES.

    Returns ``(X, A, canonical_smiles)`` or, when the molecule is skipped, the reason
    (one of :data:`SKIP_REASONS`) as a string.
    """
    out = _encode(smiles, dataset, charges)
    return out if isinstance(out, str) else out[:3]


def _encode(smiles: str, dataset: str, charges: str):
    """As :func:`encode_smiles`, plus a 4th item: whether a formal charge was dropped."""
    _check_dataset(dataset)
    if charges not in CHARGE_MODES:
        raise ValueError(f"charges must be one of {CHARGE_MODES}, got {charges!r}")
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
    vocab = ATOM_VOCAB[dataset]
    index = {s: i for i, s in enumerate(vocab)}
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
    max_atoms = MAX_ATOMS[dataset]
    if n > max_atoms:
        return "too_many_atoms"
    canonical = Chem.MolToSmiles(mol)
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
    X = np.zeros((max_atoms, len(vocab)), dtype=np.float32)
    X[np.arange(n), atom_types] = 1.0
    return X, A, canonical, charged


def smiles_to_graph(smiles: str, dataset: str, charges: str = "drop") -> tuple[np.ndarray, np.ndarray] | None:
    """``(X, A)`` float32 arrays for one SMILES, or ``None`` if it is skipped.

    ``X``: ``(max_atoms, len(vocab))`` one-hot, zero rows for padding.
    ``A``: ``(max_atoms, max_atoms)`` symmetric bond orders 0..3 of the kekulized molecule.
    """
    out = _encode(smiles, dataset, charges)
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
    fd, tmp = tempfile.mkstemp(prefix=".zinc250k.", suffix=".part", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            fetch(url, tmp)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise FileNotFoundError(
                f"ZINC250k CSV not found at {dest} and downloading {url} failed ({e}).\n{how_to}"
            ) from e
        os.chmod(tmp, 0o644)
        digest = _sha256_file(tmp)
        if digest != sha256:
            raise ValueError(
                f"checksum mismatch for ZINC250k downloaded from {url}: sha256 {digest}, "
                f"expected {sha256}; the file was not kept."
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
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


def _atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _encode_many(smiles: Sequence[str], name: str, charges: str):
    max_atoms = MAX_ATOMS[name]
    Xs = np.zeros((len(smiles), max_atoms), dtype=np.int8)  # atom type index, -1 = padding
    As = np.zeros((len(smiles), max_atoms, max_atoms), dtype=np.uint8)
    keep, canon, reasons, n_charged = [], [], {}, 0
    k = 0
    for s in smiles:
        out = _encode(s, name, charges)
        if isinstance(out, str):
            reasons[out] = reasons.get(out, 0) + 1
            continue
        X, A, c, charged = out
        row = X.argmax(1).astype(np.int8)
        row[X.sum(1) == 0] = -1
        Xs[k] = row
        As[k] = A.astype(np.uint8)
        canon.append(c)
        n_charged += int(charged)
        k += 1
    return Xs[:k], As[:k], canon, reasons, n_charged


def _types_to_onehot(T: torch.Tensor, F: int) -> torch.Tensor:
    """Atom-type indices (-1 = padding) -> float32 one-hot with zero padding rows."""
    return torch.nn.functional.one_hot(T.long() + 1, F + 1)[..., 1:].to(torch.float32)


def load_dataset(
    name: str,
    split_path: str | None = None,
    seed: int = 42,
    limit: int | None = None,
    cache_dir: str = "data/cache",
    *,
    charges: str = "drop",
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
    cache_dir: parsed tensors are cached here (relative paths: relative to the repo root),
        keyed by dataset, source files, split file contents, seed, limit and options.
    """
    t0 = time.perf_counter()
    _check_dataset(name)
    if charges not in CHARGE_MODES:
        raise ValueError(f"charges must be one of {CHARGE_MODES}")
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
    Xtr, Atr, ctr, rtr, chtr = _encode_many(train_smi, name, charges)
    Xte, Ate, cte, rte, chte = _encode_many(test_smi, name, charges)
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
        "T_train": torch.from_numpy(Xtr),
        "A_train": torch.from_numpy(Atr),
        "T_test": torch.from_numpy(Xte),
        "A_test": torch.from_numpy(Ate),
        "n_skipped": n_skipped,
        "split_source": split_source,
        "index_convention": index_convention,
        "split_entries_not_found": not_found,
        "stats": json.loads(json.dumps(stats)),
    }
    if use_cache:
        try:
            _atomic_torch_save(blob, cache_file)
        except OSError as e:  # read-only location: still return the data
            if verbose:
                print(f"[molgen.data] could not write cache {cache_file}: {e}")
    ds = _dataset_from_blob(blob)
    ds.stats["load_seconds"] = time.perf_counter() - t0
    ds.stats["from_cache"] = None
    return ds


def _dataset_from_blob(blob: dict) -> MolDataset:
    F = len(blob["vocab"])
    return MolDataset(
        name=blob["name"],
        vocab=list(blob["vocab"]),
        max_atoms=int(blob["max_atoms"]),
        train_smiles=blob["train_smiles"].split("\n") if blob["train_smiles"] else [],
        test_smiles=blob["test_smiles"].split("\n") if blob["test_smiles"] else [],
        X_train=_types_to_onehot(blob["T_train"], F),
        A_train=blob["A_train"].to(torch.float32),
        X_test=_types_to_onehot(blob["T_test"], F),
        A_test=blob["A_test"].to(torch.float32),
        n_skipped=dict(blob["n_skipped"]),
        split_source=blob["split_source"],
        index_convention=blob["index_convention"],
        split_entries_not_found=int(blob["split_entries_not_found"]),
        stats=dict(blob["stats"]),
    )


__all__ = [
    "ATOM_VOCAB",
    "MAX_ATOMS",
    "MolDataset",
    "ZINC250K_SHA256",
    "ZINC250K_URL",
    "encode_smiles",
    "fetch_zinc250k",
    "load_dataset",
    "node_flags",
    "read_split_file",
    "scale_adjacency",
    "smiles_to_graph",
    "unscale_adjacency",
]
