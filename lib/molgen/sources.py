"""Where each dataset's molecules come from and how they split into train and test: one ``Source`` per dataset
(``SOURCES``: QM9, ZINC250k, MOSES), read by ``molgen.data.load_dataset``, which parses, caches and encodes
whatever a source gives it.

A source finds its raw files (``files``: an installed package's data, or a download checked against its
sha256), says what decides its split (``split_key``, part of the parsed cache's key) and returns the train and
test SMILES (``split``). QM9 and ZINC250k split a table of rows by a split file of test entries (GDSS's,
``../shared/data/valid_idx_<name>.json`` beside the repository by default) or by a seeded random draw
(``RowSource``); MOSES comes with its own train and test files. A dataset is added as one class here and one
line in ``SOURCES`` (and its atom vocabulary in ``molgen.features``, its name in ``config.DataConfig``).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np

from common.io import atomic_path

REPO_ROOT = Path(__file__).resolve().parents[2]

# ZINC250k: the chemical_vae CSV used by GraphNVP/MoFlow/GDSS (GDSS's data/zinc250k.csv
# is this file with an index column).  Checksum recorded independently by several public
# projects: 22,606,589 bytes, 249,455 rows, md5 b59078b2b04c6e9431280e3dc42048d5.
ZINC250K_URL = (
    "https://raw.githubusercontent.com/aspuru-guzik-group/chemical_vae/master/"
    "models/zinc_properties/250k_rndm_zinc_drugs_clean_3.csv"
)
ZINC250K_SHA256 = "35e3f1a52b1badc0697e373d73a18ad773f415936ff992f4c6baa2e067b3e6ae"
ZINC250K_FILENAME = "250k_rndm_zinc_drugs_clean_3.csv"


def resolve_dir(path: str | os.PathLike) -> Path:
    """Relative paths are taken relative to the repository root (not the CWD)."""
    p = Path(path)
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


# --------------------------------------------------------------------------- files
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


def sha256_file(path: Path) -> str:
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
    cache_dir = resolve_dir(cache_dir)
    dest = cache_dir / ZINC250K_FILENAME
    how_to = (
        f"Get it on a machine with internet access, e.g.\n"
        f"  curl -L -o {dest} {ZINC250K_URL}\n"
        f"(expected sha256 {ZINC250K_SHA256}), then copy it to {dest}."
    )
    if dest.exists():
        digest = sha256_file(dest)
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
        digest = sha256_file(tmp)
        if digest != sha256:
            raise ValueError(
                f"checksum mismatch for ZINC250k downloaded from {url}: sha256 {digest}, "
                f"expected {sha256}; the file was not kept."
            )
    return dest


# --------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class SplitSpec:
    """How to split a dataset that has no split of its own.

    ``path``: ``None`` = the default split file (``../shared/data/<split file>`` beside the repository) if it
    exists, else a seeded random split; ``"random"`` = the seeded random split (``test_fraction`` of the rows,
    ``seed``); any other value is a split file that must exist. ``index_base``: how split entries are read (1:
    MoFlow's convention, 0: GDSS's; see the sources).
    """

    path: str | None = None
    seed: int = 42
    index_base: int = 1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.index_base not in (0, 1):
            raise ValueError("split_index_base must be 0 or 1")


@dataclass
class Split:
    """The train and test rows of a dataset before parsing, and how they were chosen."""

    train_smiles: list[str]
    test_smiles: list[str]
    n_rows: int
    source: str
    index_convention: str
    n_entries: int = 0
    not_found: int = 0


def default_split_path(name: str) -> Path | None:
    """``../shared/data/valid_idx_<name>.json`` beside the repository (or under ``$MOLGEN_SPLIT_DIR``), if it
    exists and ``name`` has a default split file."""
    source = SOURCES.get(name)
    fname = getattr(source, "split_file_name", None)
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


# --------------------------------------------------------------------------- sources
class Source(ABC):
    """One dataset's raw molecules and train/test split, for ``molgen.data.load_dataset``."""

    name: ClassVar[str]
    max_atoms: ClassVar[int]
    """Heavy atoms of the largest molecule kept (the N of the dense tensors)."""

    @abstractmethod
    def files(self, cache_root: Path, download: bool = True) -> list[Path]:
        """The raw files (fetched into ``cache_root`` if missing and ``download``); their identity keys the
        parsed cache."""

    @abstractmethod
    def split_key(self, spec: SplitSpec) -> dict:
        """What decides the split, for the parsed cache's key; an error for a split the dataset cannot make."""

    @abstractmethod
    def split(self, files: list[Path], spec: SplitSpec) -> Split:
        """The train and test SMILES in source (or split-file) order."""


class RowSource(Source):
    """A table of molecules split by a file of test entries or a seeded random draw over its rows."""

    split_file_name: ClassVar[str]
    """The default split file, looked up by ``default_split_path``."""
    random_rows: ClassVar[str]
    """What the rows of a random split are, for ``Split.index_convention``."""

    @abstractmethod
    def read_rows(self, files: list[Path]) -> tuple[list[int], list[str]]:
        """(ids, SMILES) of the rows in file order; the ids are what split entries refer to."""

    @abstractmethod
    def test_rows(self, ids: list[int], entries: list[int], index_base: int) -> tuple[list[int | None], str]:
        """The row of each split entry (None: not in the table) and how the entries were read."""

    def split_file(self, spec: SplitSpec) -> Path | None:
        if spec.path is None:
            return default_split_path(self.name)
        if spec.path == "random":
            return None
        path = Path(spec.path)
        if not path.exists():
            raise FileNotFoundError(f"split file {path} does not exist")
        return path

    def split_key(self, spec: SplitSpec) -> dict:
        path = self.split_file(spec)
        if path is None:
            return {"random": spec.seed, "test_fraction": spec.test_fraction}
        return {"file": str(path.resolve()), "sha256": sha256_file(path), "base": spec.index_base}

    def split(self, files: list[Path], spec: SplitSpec) -> Split:
        ids, smiles = self.read_rows(files)
        n_rows = len(ids)
        path = self.split_file(spec)
        n_entries = not_found = 0
        if path is not None:
            entries = read_split_file(path)
            n_entries = len(entries)
            rows, convention = self.test_rows(ids, entries, spec.index_base)
            test_pos, seen = [], set()
            for p in rows:
                if p is None:
                    not_found += 1
                elif p not in seen:
                    seen.add(p)
                    test_pos.append(p)
            train_pos = [p for p in range(n_rows) if p not in seen]
            source = f"split file {path} ({n_entries} entries, {not_found} not found)"
        else:
            perm = np.random.default_rng(spec.seed).permutation(n_rows)
            test_set = set(perm[:int(round(spec.test_fraction * n_rows))].tolist())
            test_pos = sorted(test_set)
            train_pos = [p for p in range(n_rows) if p not in test_set]
            source = f"seeded random split, seed={spec.seed}, test_fraction={spec.test_fraction}"
            convention = "random split over source rows " + self.random_rows
        return Split([smiles[p] for p in train_pos], [smiles[p] for p in test_pos], n_rows, source, convention,
                     n_entries, not_found)


class QM9(RowSource):
    """QM9 from qm9pack's three CSV parts (``source_path``: a CSV or a list of CSVs with ``Index`` and
    ``SMILES`` columns instead). Split entries are QM9 molecule numbers: 1-based (``index_base=1``, MoFlow's
    convention) matched to qm9pack's ``Index``, or 0-based rows of GDSS's full 133,885-row CSV
    (``index_base=0``, GDSS's convention: molecule number = entry + 1)."""

    name, max_atoms, split_file_name = "qm9", 9, "valid_idx_qm9.json"
    random_rows = "(qm9pack Index column = QM9 molecule number)"

    def __init__(self, source_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None):
        self.source_path = source_path

    def files(self, cache_root: Path, download: bool = True) -> list[Path]:
        if self.source_path is None:
            return qm9_csv_paths()
        if isinstance(self.source_path, (list, tuple)):
            return [Path(p) for p in self.source_path]
        return [Path(self.source_path)]

    def read_rows(self, files: list[Path]) -> tuple[list[int], list[str]]:
        import pandas as pd

        df = pd.concat([pd.read_csv(p, usecols=["Index", "SMILES"]) for p in files], ignore_index=True)
        return df["Index"].astype(int).tolist(), df["SMILES"].astype(str).tolist()

    def test_rows(self, ids: list[int], entries: list[int], index_base: int) -> tuple[list[int | None], str]:
        pos_of = {mid: p for p, mid in enumerate(ids)}
        convention = (
            "QM9 split entries read as 1-based QM9 molecule numbers (MoFlow convention), matched to "
            "qm9pack's Index column (original 1..133,885 numbering; the 3,054 uncharacterized "
            "molecules are absent from qm9pack)"
            if index_base == 1
            else "QM9 split entries read as 0-based rows of GDSS's full 133,885-row QM9 CSV "
            "(GDSS convention), i.e. molecule number = entry + 1, matched to qm9pack's Index column"
        )
        return [pos_of.get(e + (1 - index_base)) for e in entries], convention


class ZINC250k(RowSource):
    """ZINC250k, the chemical_vae CSV GDSS uses, downloaded into the cache and checked against its sha256
    (``zinc_url``, ``zinc_sha256``, ``fetch(url, dest)`` replaceable); ``source_path``: a CSV with a ``smiles``
    column instead (no download, no checksum). Split entries are row numbers, 1-based (``index_base=1``,
    MoFlow's convention) or 0-based (GDSS's)."""

    name, max_atoms, split_file_name = "zinc250k", 38, "valid_idx_zinc250k.json"
    random_rows = "(CSV row order)"

    def __init__(self, source_path: str | os.PathLike | None = None, zinc_url: str = ZINC250K_URL,
                 zinc_sha256: str = ZINC250K_SHA256, fetch: Callable[[str, Path], None] | None = None):
        self.source_path, self.url, self.sha256, self.fetch = source_path, zinc_url, zinc_sha256, fetch

    def files(self, cache_root: Path, download: bool = True) -> list[Path]:
        if self.source_path is not None:
            return [Path(self.source_path)]
        return [fetch_zinc250k(cache_root, url=self.url, sha256=self.sha256, fetch=self.fetch, download=download)]

    def read_rows(self, files: list[Path]) -> tuple[list[int], list[str]]:
        import pandas as pd

        df = pd.read_csv(files[0])
        cols = [c for c in df.columns if str(c).strip().lower() == "smiles"]
        if not cols:
            raise ValueError(f"{files[0]}: no 'smiles' column (columns: {list(df.columns)})")
        smiles = df[cols[0]].astype(str).str.strip().tolist()  # ZINC SMILES end with a newline
        return list(range(len(smiles))), smiles

    def test_rows(self, ids: list[int], entries: list[int], index_base: int) -> tuple[list[int | None], str]:
        convention = (f"ZINC250k split entries read as {'1-based (MoFlow' if index_base == 1 else '0-based (GDSS'}"
                      f" convention) row numbers of {ZINC250K_FILENAME}")
        return [e - index_base if 0 <= e - index_base < len(ids) else None for e in entries], convention


class MOSES(Source):
    """MOSES from the molsets package's train and test files, its own split (``source_path``: a mapping
    ``{"train": path, "test": path}`` instead)."""

    name, max_atoms = "moses", 27  # the largest molecule of molsets' train + test files

    def __init__(self, source_path: dict[str, str | os.PathLike] | None = None):
        self.source_path = source_path

    def _paths(self) -> dict[str, Path]:
        if self.source_path is None:
            return moses_csv_paths()
        return {k: Path(v) for k, v in dict(self.source_path).items()}

    def files(self, cache_root: Path, download: bool = True) -> list[Path]:
        paths = self._paths()
        return [paths["train"], paths["test"]]

    def split_key(self, spec: SplitSpec) -> dict:
        if spec.path not in (None, "random"):
            raise ValueError("MOSES uses molsets' own train/test files; split_path is not supported")
        return {"moses": "given"}

    def split(self, files: list[Path], spec: SplitSpec) -> Split:
        import pandas as pd

        train, test = files
        train_smi = pd.read_csv(train)["SMILES"].astype(str).tolist()
        test_smi = pd.read_csv(test)["SMILES"].astype(str).tolist()
        return Split(train_smi, test_smi, len(train_smi) + len(test_smi),
                     f"molsets package files {train.name} / {test.name} (given train/test split)",
                     "MOSES: rows of molsets' train.csv.gz and test.csv.gz, in file order")


SOURCES: dict[str, type[Source]] = {"qm9": QM9, "zinc250k": ZINC250k, "moses": MOSES}
"""Dataset name -> its source."""
