"""Atom feature sets: spec, encoding of hand-checked molecules, decoding with charges, config, cache, consistency."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from rdkit import Chem

from molgen import cli
from molgen import data as D
from molgen import sources as S
from molgen.config import ConfigError, config_differences, dump_config, load_config, validate
from molgen.decode import feature_consistency, graphs_to_mols, mols_to_smiles
from molgen.features import AtomFeatureSpec, check_atom_features

FIX = Path(__file__).parent / "fixtures"
QM9_TINY = FIX / "qm9_tiny.csv"
QM9_SPLIT = FIX / "qm9_split_tiny.json"
FEAT = ["type", "charge", "aromatic", "hybridization", "num_hs", "ring"]
ALL = ["type", "charge", "aromatic", "hybridization", "num_hs", "degree", "ring"]


def _blocks(X: np.ndarray, spec: AtomFeatureSpec) -> list[dict]:
    """Per real atom: block name -> category label (None when no column is on)."""
    rows = []
    for x in X[X[:, spec.blocks[0].slice].sum(1) > 0]:
        row = {}
        for b in spec.blocks:
            on = np.nonzero(x[b.slice])[0]
            assert len(on) <= 1, (b.name, x)
            row[b.name] = b.categories[on[0]] if len(on) else None
        rows.append(row)
    return rows


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = a.numpy() if isinstance(a, torch.Tensor) else a
        h.update(str(tuple(a.shape)).encode())
        h.update(str(a.dtype).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- spec
def test_spec_blocks_widths_and_slices():
    spec = AtomFeatureSpec.build(ALL, dataset="qm9")
    assert spec.names == tuple(ALL)
    assert [b.width for b in spec.blocks] == [4, 3, 1, 3, 4, 4, 8]
    assert spec.width == 27 and spec.block("charge").slice == slice(4, 7) and spec.block("ring").stop == 27
    assert spec.describe().endswith("= 27") and "charge 3" in spec.describe()
    assert AtomFeatureSpec.build(dataset="zinc250k").width == 9 and AtomFeatureSpec.build(dataset="qm9").is_default
    assert AtomFeatureSpec.build(FEAT, dataset="qm9").width == 23
    with pytest.raises(ValueError, match=r"unknown atom feature\(s\) \['colour'\]"):
        check_atom_features(["type", "colour"])
    with pytest.raises(ValueError, match="more than once"):
        check_atom_features(["type", "charge", "charge"])
    with pytest.raises(ValueError, match="must start with 'type'"):
        check_atom_features(["charge", "type"])
    with pytest.raises(ValueError, match="must start with 'type'"):
        check_atom_features([])
    with pytest.raises(ValueError, match="list of names"):
        check_atom_features("type")
    with pytest.raises(ValueError, match="unknown dataset"):
        AtomFeatureSpec.build(FEAT, dataset="nope")


# ----------------------------------------------------------------------------- encoding
def test_hand_checked_molecules():
    spec = AtomFeatureSpec.build(ALL, dataset="qm9")
    enc = {s: _blocks(D.smiles_to_graph(s, "qm9", atom_features=ALL)[0], spec)
           for s in ("C[N+](=O)[O-]", "c1ccncc1", "C1CC1", "CCO")}
    sp3, sp2 = "SP3", "SP2"
    # nitromethane: atoms C, N+, O (double), O- (RDKit order of the SMILES)
    assert enc["C[N+](=O)[O-]"] == [
        dict(type="C", charge=0, aromatic=None, hybridization=sp3, num_hs="3+", degree=1, ring=0),
        dict(type="N", charge=1, aromatic=None, hybridization=sp2, num_hs=0, degree=3, ring=0),
        dict(type="O", charge=0, aromatic=None, hybridization=sp2, num_hs=0, degree=1, ring=0),
        dict(type="O", charge=-1, aromatic=None, hybridization=sp2, num_hs=0, degree=1, ring=0),
    ]
    # pyridine: aromatic 6-ring, CH and a bare N
    ch = dict(type="C", charge=0, aromatic=True, hybridization=sp2, num_hs=1, degree=2, ring=6)
    assert enc["c1ccncc1"] == [ch, ch, ch, dict(ch, type="N", num_hs=0), ch, ch]
    # cyclopropane: three sp3 CH2 in a 3-ring
    assert enc["C1CC1"] == [dict(type="C", charge=0, aromatic=None, hybridization=sp3, num_hs=2, degree=2, ring=3)] * 3
    assert enc["CCO"] == [
        dict(type="C", charge=0, aromatic=None, hybridization=sp3, num_hs="3+", degree=1, ring=0),
        dict(type="C", charge=0, aromatic=None, hybridization=sp3, num_hs=2, degree=2, ring=0),
        dict(type="O", charge=0, aromatic=None, hybridization=sp3, num_hs=1, degree=1, ring=0),
    ]
    # a lone atom has no degree category; a 9-ring is "9+"
    assert _blocks(D.smiles_to_graph("C", "qm9", atom_features=ALL)[0], spec)[0]["degree"] is None
    assert {r["ring"] for r in _blocks(D.smiles_to_graph("C1CCCCCCCC1", "qm9", atom_features=ALL)[0], spec)} == {"9+"}
    # the bonds (A) do not depend on the feature set; the type block is the default X
    for s in ("C[N+](=O)[O-]", "c1ccncc1"):
        X0, A0 = D.smiles_to_graph(s, "qm9")
        X1, A1 = D.smiles_to_graph(s, "qm9", atom_features=ALL)
        assert np.array_equal(A0, A1) and np.array_equal(X1[:, :4], X0) and X1.shape == (9, 27)


def test_default_encoding_is_bit_identical_to_before(tmp_path):
    """Digests computed with the encoder as it was before atom features existed (git HEAD at the time)."""
    arrays = []
    for s in ("C[N+](=O)[O-]", "c1ccncc1", "C1CC1", "CCO", "[NH3+]CC([O-])=O", "N#CC(=O)F"):
        arrays += list(D.smiles_to_graph(s, "qm9", atom_features=["type"]))
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    assert h.hexdigest() == "28b4e086a450b4ec5d015605412655394606ee1f5f9a21388eecd39a444bf648"
    ds = D.load_dataset("qm9", split_path=str(QM9_SPLIT), source_path=QM9_TINY, cache_dir=tmp_path)
    assert _digest(ds.X_train, ds.A_train, ds.X_test, ds.A_test) == (
        "3909fa1a8db7315942f65121e71fe31699510d7eb8425045ba83c4073559fa3d")
    assert ds.atom_features == ["type"] and "atom features" not in ds.summary()


def test_charge_modes_and_unsupported_charges():
    assert D.encode_smiles("[NH3+]CC([O-])=O", "qm9", charges="skip") == "charged_atom"
    with pytest.raises(ValueError, match="charges='drop' does not fit"):
        D.encode_smiles("CC", "qm9", charges="drop", atom_features=["type", "charge"])
    with pytest.raises(ValueError, match="charges='keep' does not fit"):
        D.encode_smiles("CC", "qm9", charges="keep")
    with pytest.raises(ValueError, match="charges must be one of"):
        D.encode_smiles("CC", "qm9", charges="strip")
    assert D.encode_smiles("C[N+2]C", "qm9", atom_features=["type", "charge"]) == "unsupported_charge"
    X, _, canon = D.encode_smiles("[NH3+]CC([O-])=O", "qm9", atom_features=["type", "charge"])
    assert canon == "[NH3+]CC(=O)[O-]" and X[:5, 4:7].argmax(1).tolist() == [2, 1, 1, 0, 1]  # N+ C C O- O


# ----------------------------------------------------------------------------- decoding
def _decode(smiles_list, features=("type", "charge"), correct=False):
    gs = [D.smiles_to_graph(s, "qm9", atom_features=features) for s in smiles_list]
    assert all(g is not None for g in gs)
    X = torch.from_numpy(np.stack([g[0] for g in gs]))
    A = torch.from_numpy(np.stack([g[1] for g in gs]))
    return graphs_to_mols(X, A, D.node_flags(X), "qm9", correct=correct, atom_features=list(features)), X, A


def test_charged_round_trip_without_correction():
    smiles = ["C[N+](=O)[O-]", "[NH3+]CC([O-])=O", "c1cc[nH+]cc1", "C[N+]#[C-]", "[O-][N+]#N", "CC(=O)[O-]",
              "C[NH3+]", "[NH3+]C1CC1C(=O)[O-]", "O=[N+]([O-])c1ccco1"]
    res, _, _ = _decode(smiles)
    assert all(res.valid_wo_correction)
    assert mols_to_smiles(res.mols) == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in smiles]
    # the other blocks are not imposed: decoding with all of them gives the same molecules
    res_all, _, _ = _decode(smiles, ALL)
    assert mols_to_smiles(res_all.mols) == mols_to_smiles(res.mols)


def test_charged_qm9_molecules_round_trip():
    """The charged molecules of one qm9pack part decode back exactly, valid without correction."""
    path = S.qm9_csv_paths()[0]
    smi = pd.read_csv(path, usecols=["SMILES"])["SMILES"]
    charged = smi[smi.str.contains(r"\+|-\]", regex=True)].tolist()
    assert len(charged) > 50
    res, _, _ = _decode(charged)
    assert all(res.valid_wo_correction)
    assert mols_to_smiles(res.mols) == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in charged]


def _graph(atoms, charges, bonds, features=("type", "charge")):
    spec = AtomFeatureSpec.build(features, dataset="qm9")
    X = torch.zeros(1, 9, spec.width)
    A = torch.zeros(1, 9, 9)
    cb = spec.block("charge")
    for i, (a, c) in enumerate(zip(atoms, charges)):
        X[0, i, spec.vocab.index(a)] = 1
        X[0, i, cb.start + cb.categories.index(c)] = 1
    for i, j, o in bonds:
        A[0, i, j] = A[0, j, i] = o
    return X, A


def test_valence_check_and_correction_keep_given_charges():
    # N+ with four bonds is valid as generated
    X, A = _graph(["N", "C", "C", "C", "C"], [1, 0, 0, 0, 0], [(0, k, 1) for k in range(1, 5)])
    res = graphs_to_mols(X, A, None, "qm9", atom_features=["type", "charge"])
    assert res.valid_wo_correction == [True] and mols_to_smiles(res.mols) == ["C[N+](C)(C)C"]
    # O- with two bonds is invalid; the correction lowers a bond and keeps the charge
    X, A = _graph(["O", "C", "C"], [-1, 0, 0], [(0, 1, 1), (0, 2, 1)])
    res = graphs_to_mols(X, A, None, "qm9", atom_features=["type", "charge"])
    assert res.valid_wo_correction == [False] and mols_to_smiles(res.mols) == ["C[O-]"]
    assert graphs_to_mols(X, A, None, "qm9", correct=False, atom_features=["type", "charge"]).mols == [None]
    # an atom within its neutral valence but with a charge that forbids it is checked by RDKit (no fast path)
    X, A = _graph(["C", "C", "C", "C", "C"], [1, 0, 0, 0, 0], [(0, k, 1) for k in range(1, 5)])
    res = graphs_to_mols(X, A, None, "qm9", atom_features=["type", "charge"])
    assert res.valid_wo_correction == [False] and mols_to_smiles(res.mols) == ["C[C+](C)C"]
    # GDSS's +1 rule charges atoms decoded as neutral, never one given another charge
    X, A = _graph(["N", "C", "C", "C", "C"], [0, 0, 0, 0, 0], [(0, k, 1) for k in range(1, 5)])
    res = graphs_to_mols(X, A, None, "qm9", atom_features=["type", "charge"])
    assert res.valid_wo_correction == [True] and mols_to_smiles(res.mols) == ["C[N+](C)(C)C"]
    X, A = _graph(["N", "C", "C", "C"], [-1, 0, 0, 0], [(0, k, 1) for k in range(1, 4)])
    res = graphs_to_mols(X, A, None, "qm9", atom_features=["type", "charge"])
    assert res.valid_wo_correction == [False] and mols_to_smiles(res.mols) == ["C[N-]C"]


def test_decoding_reads_the_type_block_only():
    X, A = _graph(["C", "C"], [0, 0], [(0, 1, 1)])
    X[0, 2:, 5] = 0.9  # a charge column on at padding rows does not make atoms
    res = graphs_to_mols(X, A, None, "qm9", atom_features=["type", "charge"])
    assert mols_to_smiles(res.mols) == ["CC"]
    X[0, 1, 4:7] = torch.tensor([0.2, 0.3, 0.1])  # no charge column above 0.5: neutral
    assert mols_to_smiles(graphs_to_mols(X, A, None, "qm9", atom_features=["type", "charge"]).mols) == ["CC"]
    with pytest.raises(ValueError, match=r"need type 4 \+ charge 3 = 7"):
        graphs_to_mols(X[..., :6], A, None, "qm9", atom_features=["type", "charge"])
    with pytest.raises(ValueError, match="7 channels"):
        graphs_to_mols(X, A, None, "qm9")


def test_feature_consistency():
    smiles = ["C[N+](=O)[O-]", "c1ccncc1", "C1CC1", "CCO", "OC1=NC=CO1"]
    _, X, A = _decode(smiles, FEAT)
    spec = AtomFeatureSpec.build(FEAT, dataset="qm9")
    full = feature_consistency(X, A, D.node_flags(X), "qm9", atom_features=FEAT)
    n_atoms = 4 + 6 + 3 + 3 + 6
    assert full == {"n_graphs": 5, "n_atoms": n_atoms, "blocks": {b: 1.0 for b in FEAT[1:]}, "all": 1.0}
    # one wrong aromatic bit and one wrong hydrogen count: each block loses one atom
    X2 = X.clone()
    ar, hs = spec.block("aromatic"), spec.block("num_hs")
    X2[2, 0, ar.start] = 1.0  # cyclopropane C marked aromatic
    X2[3, 2, hs.slice] = torch.tensor([0.0, 0.0, 0.9, 0.0])  # ethanol O with 2 H
    res = feature_consistency(X2, A, D.node_flags(X2), "qm9", atom_features=FEAT)
    assert res["blocks"]["aromatic"] == pytest.approx((n_atoms - 1) / n_atoms)
    assert res["blocks"]["num_hs"] == pytest.approx((n_atoms - 1) / n_atoms)
    assert res["blocks"]["ring"] == 1.0 and res["all"] == pytest.approx((n_atoms - 2) / n_atoms)
    # a charge the molecule does not have: nitro N decoded neutral gets GDSS's +1, which disagrees
    X3 = X.clone()
    cb = spec.block("charge")
    X3[0, 1, cb.slice] = torch.tensor([0.0, 1.0, 0.0])
    assert feature_consistency(X3, A, None, "qm9", atom_features=FEAT)["blocks"]["charge"] == pytest.approx(
        (n_atoms - 1) / n_atoms)
    # graphs not valid without correction are left out; no atoms -> rates None
    A4 = A.clone()
    A4[2, 0, 1] = A4[2, 1, 0] = 3.0  # cyclopropane with a triple and a double bond: pentavalent C
    A4[2, 0, 2] = A4[2, 2, 0] = 2.0
    assert feature_consistency(X, A4, None, "qm9", atom_features=FEAT)["n_graphs"] == 4
    empty = feature_consistency(torch.zeros(1, 9, 23), torch.zeros(1, 9, 9), None, "qm9", atom_features=FEAT)
    assert empty == {"n_graphs": 0, "n_atoms": 0, "blocks": {b: None for b in FEAT[1:]}, "all": None}


# ----------------------------------------------------------------------------- loading and cache
def test_cache_key_and_blob_depend_on_the_feature_set(tmp_path):
    kw = dict(split_path=str(QM9_SPLIT), source_path=QM9_TINY, cache_dir=tmp_path)
    base = D.load_dataset("qm9", **kw)
    feat = D.load_dataset("qm9", atom_features=FEAT, **kw)
    files = sorted(tmp_path.glob("molgen_qm9_*.pt"))
    assert len(files) == 2 and base.stats["from_cache"] is None and feat.stats["from_cache"] is None
    assert not list(tmp_path.glob(".*.tmp"))
    assert feat.X_train.shape == (8, 9, 23) and feat.atom_features == FEAT and "charge 3" in feat.summary()
    assert torch.equal(feat.X_train[..., :4], base.X_train) and torch.equal(feat.A_train, base.A_train)
    # charged molecules are kept with their charges (the glycine zwitterion of the test split)
    assert feat.n_test == base.n_test and feat.stats["charges"] == "keep" and feat.stats["n_charged_kept"] == 1
    again = D.load_dataset("qm9", atom_features=FEAT, **kw)
    assert again.stats["from_cache"] is not None and again.atom_features == FEAT
    for k in ("X_train", "A_train", "X_test", "A_test"):
        assert torch.equal(getattr(again, k), getattr(feat, k)), k
    other = D.load_dataset("qm9", atom_features=["type", "charge"], **kw)
    assert other.stats["from_cache"] is None and len(list(tmp_path.glob("molgen_qm9_*.pt"))) == 3
    # every X row is the encoding of its molecule
    X, _ = D.smiles_to_graph("[NH3+]CC([O-])=O", "qm9", atom_features=FEAT)  # source SMILES of the row
    assert torch.equal(feat.X_test[3], torch.from_numpy(X))
    with pytest.raises(ValueError, match="charges='skip' does not fit"):
        D.load_dataset("qm9", atom_features=FEAT, charges="skip", **kw)


# ----------------------------------------------------------------------------- config
def test_config_validation_and_backward_compatibility():
    with pytest.raises(ConfigError, match=r"data\.max_feat_num=4 but data\.atom_features .* give X 7 columns"):
        load_config("qm9_gdss", ["data.atom_features=[type, charge]"])
    with pytest.raises(ConfigError, match=r"set data\.max_feat_num: 9"):
        load_config("zinc250k_gdss", ["data.max_feat_num=4"])
    with pytest.raises(ConfigError, match="unknown atom feature"):
        load_config("qm9_gdss", ["data.atom_features=[type, spin]", "data.max_feat_num=5"])
    ok = load_config("qm9_gdss", ["data.atom_features=[type, charge]", "data.max_feat_num=7"])
    assert ok.data.feature_spec.width == 7
    for name in ("qm9_gdss_feat", "tiny_feat"):
        cfg = load_config(name)
        assert cfg.data.atom_features == FEAT and cfg.data.max_feat_num == 23
    feat, base = load_config("qm9_gdss_feat"), load_config("qm9_gdss")
    assert sorted(d.split(":")[0] for d in config_differences(base, feat)) == [
        "data.atom_features", "data.max_feat_num"]
    # the default feature set is not dumped: configs and checkpoints from before the field are unchanged
    assert "atom_features" not in base.model_dump(mode="json")["data"] and "atom_features" not in dump_config(base)
    assert feat.model_dump(mode="json")["data"]["atom_features"] == FEAT
    old = yaml.safe_load(dump_config(base))
    assert validate(old).data.atom_features == ["type"] and config_differences(old, base) == []
    assert yaml.safe_load(dump_config(feat)) == feat.model_dump(mode="json")


@pytest.mark.integration
def test_cli_train_and_sample_with_features(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--config", "tiny_feat", "--out", str(run), "--quiet", "--set", "data.limit=32",
                     "--set", "train.num_epochs=1"]) == 0
    out = tmp_path / "s.smi"
    assert cli.main(["sample", "--run", str(run), "--n", "16", "--out", str(out), "--quiet"]) == 0
    meta = json.loads((tmp_path / "s.smi.json").read_text())
    assert meta["atom_features"] == FEAT and set(meta["feature_consistency"]["blocks"]) == set(FEAT[1:])
    assert meta["feature_consistency"]["n_graphs"] == meta["n_valid_wo_correction"]
    assert all(Chem.MolFromSmiles(s) is not None for s in out.read_text().splitlines())
