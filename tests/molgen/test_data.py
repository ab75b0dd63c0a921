"""Datasets: encoding, skipping, splits, caching, ZINC download path."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from molgen import data as D
from molgen import sources as S

FIX = Path(__file__).parent / "fixtures"
QM9_TINY = FIX / "qm9_tiny.csv"
QM9_SPLIT = FIX / "qm9_split_tiny.json"
ZINC_TINY = FIX / "zinc_tiny.csv"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- encoding
def test_vocab_and_sizes():
    assert D.ATOM_VOCAB["qm9"] == ["C", "N", "O", "F"]
    assert D.ATOM_VOCAB["zinc250k"] == ["C", "N", "O", "F", "P", "S", "Cl", "Br", "I"]
    assert D.ATOM_VOCAB["moses"] == ["C", "N", "O", "F", "S", "Cl", "Br"]
    assert D.MAX_ATOMS["qm9"] == 9 and D.MAX_ATOMS["zinc250k"] == 38


def test_smiles_to_graph_benzene_is_kekulized():
    X, A = D.smiles_to_graph("c1ccccc1", "qm9")
    assert X.shape == (9, 4) and A.shape == (9, 9)
    assert X.dtype == np.float32 and A.dtype == np.float32
    assert np.array_equal(X[:6, 0], np.ones(6)) and X[6:].sum() == 0 and X[:6, 1:].sum() == 0
    assert np.array_equal(A, A.T) and np.all(np.diag(A) == 0)
    ring = A[:6, :6]
    assert sorted(np.unique(ring).tolist()) == [0.0, 1.0, 2.0]
    assert (ring == 2).sum() == 6 and (ring == 1).sum() == 6  # 3 double + 3 single bonds
    assert A[6:].sum() == 0


def test_smiles_to_graph_atom_order_and_bond_orders():
    X, A = D.smiles_to_graph("N#CC(=O)F", "qm9")
    assert X[:5].argmax(1).tolist() == [1, 0, 0, 2, 3]  # N C C O F in RDKit order
    assert A[0, 1] == 3 and A[1, 2] == 1 and A[2, 3] == 2 and A[2, 4] == 1
    assert A.sum() == 2 * (3 + 1 + 2 + 1)


@pytest.mark.parametrize(
    "smiles,reason",
    [
        ("C1CC", "malformed_smiles"),
        ("not a smiles", "malformed_smiles"),
        ("", "malformed_smiles"),
        ("CCS", "out_of_vocab_atom"),
        ("CC[Si](C)C", "out_of_vocab_atom"),
        ("CCCCCCCCCC", "too_many_atoms"),
    ],
)
def test_skip_reasons(smiles, reason):
    assert D.encode_smiles(smiles, "qm9") == reason
    assert D.smiles_to_graph(smiles, "qm9") is None


def test_charges_drop_or_skip():
    X, A = D.smiles_to_graph("[NH3+]CC([O-])=O", "qm9")  # kept, element only
    assert X[:5].argmax(1).tolist() == [1, 0, 0, 2, 2]
    assert D.smiles_to_graph("[NH3+]CC([O-])=O", "qm9", charges="skip") is None
    assert D.encode_smiles("[NH3+]CC([O-])=O", "qm9", charges="skip") == "charged_atom"
    # zinc vocabulary
    X, A = D.smiles_to_graph("O=C(Nc1ccc(I)cc1)c1ccc(Cl)s1", "zinc250k")
    assert X.shape == (38, 9)
    assert D.smiles_to_graph("CCS", "zinc250k") is not None
    with pytest.raises(ValueError):
        D.smiles_to_graph("CC", "nope")


def test_scale_adjacency_and_flags():
    A = torch.tensor([[[0.0, 3.0], [3.0, 0.0]]])
    assert torch.equal(D.scale_adjacency(A, "raw"), A)
    assert torch.allclose(D.scale_adjacency(A, "unit"), A / 3)
    assert torch.allclose(D.unscale_adjacency(D.scale_adjacency(A, "unit"), "unit"), A)
    with pytest.raises(ValueError):
        D.scale_adjacency(A, "log")
    X = torch.zeros(1, 3, 4)
    X[0, 0, 1] = 1
    X[0, 1, 0] = 1
    assert D.node_flags(X).tolist() == [[1.0, 1.0, 0.0]]


# ----------------------------------------------------------------------------- loading
def test_split_file_1_based(tmp_path):
    ds = D.load_dataset("qm9", split_path=str(QM9_SPLIT), source_path=QM9_TINY, cache_dir=tmp_path)
    assert ds.split_entries_not_found == 2  # 4 (absent from the source) and 99999
    assert "1-based" in ds.index_convention
    assert "split file" in ds.split_source and "2 not found" in ds.split_source
    assert ds.test_smiles[:3] == ["N", "CC", "c1ccccc1"]
    assert ds.test_smiles[3] == "[NH3+]CC(=O)[O-]"  # canonical source SMILES, charges kept
    assert ds.n_test == 4 and ds.n_train == 8
    assert ds.n_skipped == {"malformed_smiles": 1, "out_of_vocab_atom": 1, "too_many_atoms": 1}
    assert ds.stats["n_charged_kept"] == 1
    assert ds.X_train.shape == (8, 9, 4) and ds.A_train.shape == (8, 9, 9)
    assert ds.X_train.dtype == torch.float32 and ds.A_train.dtype == torch.float32
    assert ds.flags("train").sum(1).tolist() == [1, 1, 2, 2, 2, 3, 3, 5]  # C O C#N C=O CO CC#C CC#N OC(F)(F)F
    assert ds.train_smiles[0] == "C"
    # rows line up with the SMILES (tensors keep the source atom order, SMILES are canonical)
    from molgen.decode import graphs_to_mols, mols_to_smiles

    res = graphs_to_mols(ds.X_train, ds.A_train, ds.flags("train"), "qm9")
    assert mols_to_smiles(res.mols) == ds.train_smiles
    X, A = D.smiles_to_graph("CC#C", "qm9")  # source row 9, kept in source atom order
    assert torch.equal(ds.X_train[5], torch.from_numpy(X)) and torch.equal(ds.A_train[5], torch.from_numpy(A))


def test_split_file_0_based_and_charge_skip(tmp_path):
    ds = D.load_dataset(
        "qm9", split_path=str(QM9_SPLIT), source_path=QM9_TINY, cache_dir=tmp_path, split_index_base=0, charges="skip"
    )
    # entries + 1 = molecule numbers 3, 8, 14, 15, 5, 100000
    assert ds.split_entries_not_found == 1
    assert ds.test_smiles == ["O", "CO", "C#N"]  # 14 charged -> skipped, 15 too many atoms
    assert ds.stats["skipped_test"] == {"charged_atom": 1, "too_many_atoms": 1}
    assert "0-based" in ds.index_convention


def test_random_split_fallback_and_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "default_split_path", lambda name: None)
    ds1 = D.load_dataset("qm9", source_path=QM9_TINY, cache_dir=tmp_path, seed=3)
    assert ds1.split_source.startswith("seeded random split, seed=3")
    assert ds1.stats["from_cache"] is None
    assert ds1.n_train + ds1.n_test + sum(ds1.n_skipped.values()) == 15
    ds2 = D.load_dataset("qm9", source_path=QM9_TINY, cache_dir=tmp_path, seed=3)
    assert ds2.stats["from_cache"]
    assert ds2.train_smiles == ds1.train_smiles and ds2.test_smiles == ds1.test_smiles
    assert torch.equal(ds2.X_train, ds1.X_train) and torch.equal(ds2.A_test, ds1.A_test)
    assert ds2.n_skipped == ds1.n_skipped and ds2.split_source == ds1.split_source
    ds3 = D.load_dataset("qm9", split_path="random", source_path=QM9_TINY, cache_dir=tmp_path, seed=4, test_fraction=0.4)
    assert ds3.n_test + ds3.stats["skipped_test"].get("malformed_smiles", 0) >= 1
    assert ds3.stats["n_test_before_parse"] == 6
    # a different split gives a different cache file, no tmp files left behind
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len([f for f in files if f.endswith(".pt")]) == 2 and not [f for f in files if f.endswith(".tmp")]
    # limit
    ds4 = D.load_dataset("qm9", split_path=str(QM9_SPLIT), source_path=QM9_TINY, cache_dir=tmp_path, limit=2)
    assert ds4.n_test == 2 and ds4.stats["n_train_before_parse"] == 2


def test_a_source_object_loads_as_its_name_does(tmp_path):
    """A dataset is its source (``molgen.sources``): every dataset the config names has one, with its vocabulary,
    and a source object given to load_dataset loads what its name with the same options does."""
    import typing

    from molgen.config import DataConfig

    assert set(S.SOURCES) == set(D.ATOM_VOCAB) == set(typing.get_args(DataConfig.model_fields["dataset"].annotation))
    by_name = D.load_dataset("qm9", split_path=str(QM9_SPLIT), source_path=QM9_TINY, cache_dir=tmp_path)
    by_source = D.load_dataset(S.QM9(source_path=QM9_TINY), split_path=str(QM9_SPLIT), cache_dir=tmp_path)
    assert by_source.stats["from_cache"] and by_source.train_smiles == by_name.train_smiles
    assert torch.equal(by_source.X_test, by_name.X_test)
    with pytest.raises(ValueError, match="source"):
        D.load_dataset(S.QM9(), source_path=QM9_TINY, cache_dir=tmp_path)


def test_missing_split_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.load_dataset("qm9", split_path=str(tmp_path / "nope.json"), source_path=QM9_TINY, cache_dir=tmp_path)


def test_real_qm9_with_shared_split(tmp_path):
    split = S.default_split_path("qm9")
    if split is None:
        pytest.skip("../shared/data/valid_idx_qm9.json not available")
    ds = D.load_dataset("qm9", cache_dir=tmp_path, limit=150)
    assert ds.split_entries_not_found == 0
    assert ds.n_test == 150 and ds.n_train == 150
    assert ds.X_test.shape == (150, 9, 4)
    # the first test entry is QM9 molecule number 7278 (1-based convention)
    first = json.loads(split.read_text())["valid_idxs"][0]
    import pandas as pd

    df = pd.concat([pd.read_csv(p, usecols=["Index", "SMILES"]) for p in S.qm9_csv_paths()])
    src = df.loc[df["Index"] == int(first), "SMILES"].item()
    from rdkit import Chem

    assert ds.test_smiles[0] == Chem.MolToSmiles(Chem.MolFromSmiles(src))


# ----------------------------------------------------------------------------- ZINC download
def test_zinc_download_file_url_and_load(tmp_path):
    cache = tmp_path / "cache"
    url = ZINC_TINY.resolve().as_uri()
    path = S.fetch_zinc250k(cache, url=url, sha256=_sha(ZINC_TINY))
    assert path == cache / S.ZINC250K_FILENAME and _sha(path) == _sha(ZINC_TINY)
    ds = D.load_dataset(
        "zinc250k", split_path="random", cache_dir=cache, zinc_url=url, zinc_sha256=_sha(ZINC_TINY), test_fraction=0.3
    )
    assert ds.n_skipped == {"malformed_smiles": 1, "out_of_vocab_atom": 1}
    assert ds.n_train + ds.n_test == 8
    assert ds.X_train.shape[1:] == (38, 9) and not any("\n" in s for s in ds.train_smiles)
    # a ZINC split file: 1-based rows (MoFlow convention) by default
    split = tmp_path / "zsplit.json"
    split.write_text(json.dumps([1, 3, 10, 11]))
    ds = D.load_dataset("zinc250k", split_path=str(split), cache_dir=cache, zinc_sha256=_sha(ZINC_TINY), download=False)
    assert ds.split_entries_not_found == 1 and ds.n_test == 2  # row 10 (index 9) is malformed
    assert ds.stats["skipped_test"] == {"malformed_smiles": 1}


def test_zinc_checksum_mismatch(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="checksum mismatch"):
        S.fetch_zinc250k(cache, url=ZINC_TINY.resolve().as_uri(), sha256="0" * 64)
    assert not (cache / S.ZINC250K_FILENAME).exists()
    assert list(cache.iterdir()) == []  # no partial download left
    # an existing file with a wrong checksum is reported, not used
    cache.mkdir(exist_ok=True)
    shutil.copy(ZINC_TINY, cache / S.ZINC250K_FILENAME)
    with pytest.raises(ValueError, match="sha256"):
        S.fetch_zinc250k(cache)


def test_zinc_missing_without_network(tmp_path):
    def offline(url, dest):
        raise urllib.error.URLError("no network")

    with pytest.raises(FileNotFoundError) as e:
        D.load_dataset("zinc250k", cache_dir=tmp_path, fetch=offline)
    msg = str(e.value)
    assert S.ZINC250K_URL in msg and S.ZINC250K_SHA256 in msg and "curl" in msg
    with pytest.raises(FileNotFoundError):
        S.fetch_zinc250k(tmp_path, download=False)
    # a monkeypatched fetch that writes the right bytes is accepted
    calls = []

    def fake(url, dest):
        calls.append(url)
        Path(dest).write_bytes(ZINC_TINY.read_bytes())

    p = S.fetch_zinc250k(tmp_path, sha256=_sha(ZINC_TINY), fetch=fake)
    assert calls == [S.ZINC250K_URL] and p.exists()


# ----------------------------------------------------------------------------- MOSES
def test_moses_given_split(tmp_path):
    src = {}
    for split, rows in {"train": ["CCO", "c1ccccc1Cl", "CC[Si]", "CCBr"], "test": ["CCN", "bad("]}.items():
        p = tmp_path / f"{split}.csv.gz"
        with gzip.open(p, "wt") as f:
            f.write("SMILES\n" + "\n".join(rows) + "\n")
        src[split] = p
    ds = D.load_dataset("moses", source_path=src, cache_dir=tmp_path)
    assert ds.train_smiles == ["CCO", "Clc1ccccc1", "CCBr"] and ds.test_smiles == ["CCN"]
    assert ds.n_skipped == {"malformed_smiles": 1, "out_of_vocab_atom": 1}
    assert "molsets" in ds.split_source
    assert ds.X_train.shape == (3, D.MAX_ATOMS["moses"], 7)
    with pytest.raises(ValueError):
        D.load_dataset("moses", split_path="x.json", source_path=src, cache_dir=tmp_path)


def test_package_files_are_found():
    paths = S.qm9_csv_paths()
    assert len(paths) == 3 and all(p.exists() for p in paths)
    m = S.moses_csv_paths()
    assert m["train"].exists() and m["test"].exists()
