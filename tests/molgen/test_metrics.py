"""Metrics on tiny known sets; NSPDK re-implementation against EDeN."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from molgen import data as D
from molgen import metrics as M
from molgen import sources as S

TRAIN = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCC", "C1CCCCC1", "CC#N", "OCCO"]
TEST = ["CCCO", "CCNC", "c1ccncc1", "CC(C)=O", "CCOC", "C1CCNCC1", "CCC#N", "NCCO"]
ZINC_LIKE = [
    "CC(C)(C)c1ccc2occ(CC(=O)Nc3ccccc3F)c2c1",
    "C[C@@H]1CC(Nc2cncc(-c3nncn3C)c2)C[C@@H](C)C1",
    "N#Cc1ccc(-c2ccc(O[C@@H](C(=O)N3CCCC3)c3ccccc3)cc2)cc1",
    "O=C(Nc1ccc(Cl)cc1)c1ccc(Br)s1",
    "C[NH+]1CCC(CC1)NC(=O)c1ccc(I)cc1",
    "O=P(O)(O)OCC",
    "[O-][n+]1ccccc1",
    "C",
    "CC.O",
]


def _qm9_smiles(n=120):
    return pd.read_csv(S.qm9_csv_paths()[2], usecols=["SMILES"], nrows=n)["SMILES"].tolist()


def test_validity_uniqueness_novelty():
    gen = [None, "C1CC", "", "CCO", "OCC", "CCCCO", Chem.MolFromSmiles("CCCCO"), "c1ccccc1"]
    out = M.evaluate_samples(gen, TRAIN, TEST, n_valid_wo_correction=3, compute_fcd=False, compute_nspdk=False)
    assert out["n_samples"] == 8
    assert out["validity_wo_correction"] == pytest.approx(3 / 8)
    assert out["n_valid"] == 5 and out["validity"] == pytest.approx(5 / 8)
    assert out["n_unique"] == 3 and out["uniqueness"] == pytest.approx(3 / 5)  # CCO, CCCCO, benzene
    assert out["novelty"] == pytest.approx(1 / 3)  # only CCCCO is not in TRAIN
    assert math.isnan(out["fcd"]) and math.isnan(out["nspdk"])
    for key in ("validity_wo_correction", "validity", "uniqueness", "novelty", "fcd", "nspdk", "n_samples"):
        assert key in out


def test_identical_sets_and_duplicates():
    out = M.evaluate_samples(TRAIN, TRAIN, TEST, len(TRAIN), compute_fcd=False, compute_nspdk=False)
    assert out["novelty"] == 0.0 and out["uniqueness"] == 1.0 and out["validity"] == 1.0
    out = M.evaluate_samples(["CCO"] * 4, TRAIN, TEST, 4, compute_fcd=False, compute_nspdk=False)
    assert out["uniqueness"] == 0.25 and out["novelty"] == 0.0
    # training SMILES given in another (non-canonical) spelling are still matched
    out = M.evaluate_samples(["OCC", "NCC"], ["C(O)C", "C(C)N"], TEST, 2, compute_fcd=False, compute_nspdk=False)
    assert out["novelty"] == 0.0
    out = M.evaluate_samples([None, None], TRAIN, TEST, 0, compute_fcd=False)
    assert out["validity"] == 0.0 and math.isnan(out["uniqueness"]) and math.isnan(out["nspdk"])


def test_n_generated_and_dataset_argument(monkeypatch):
    # a SMILES file holds only the decoded molecules: the others count as invalid
    out = M.evaluate_samples(["CCO", "CCCCO"], TRAIN, TEST, 1, n_generated=4, compute_fcd=False, compute_nspdk=False)
    assert out["n_samples"] == 4 and out["validity"] == 0.5 and out["validity_wo_correction"] == 0.25
    with pytest.raises(ValueError):
        M.evaluate_samples(["CCO"] * 3, TRAIN, TEST, 1, n_generated=2)
    out = M.evaluate_samples(["CCO"], TRAIN, TEST, compute_fcd=False, compute_nspdk=False)
    assert math.isnan(out["validity_wo_correction"])

    class _DS:
        train_smiles, test_smiles = TRAIN, TEST

    monkeypatch.setattr(D, "load_dataset", lambda name: _DS())
    out = M.evaluate_samples(["CCO", "CCCCO"], dataset="qm9", n_valid_wo_correction=2, compute_fcd=False,
                             compute_nspdk=False)
    assert out["novelty"] == 0.5
    with pytest.raises(ValueError):
        M.evaluate_samples(["CCO"], TRAIN, TEST, dataset="qm9")


def test_hash_emulation_matches_interpreter():
    assert M._hash_selfcheck()


def test_nspdk_features_equal_eden():
    from eden.graph import vectorize

    mols = [Chem.MolFromSmiles(s) for s in _qm9_smiles(150) + ZINC_LIKE]
    fe = vectorize(M.mols_to_nx(mols), complexity=4, discrete=True)
    ff = M.nspdk_features(mols, label_hash="python")
    assert fe.shape == ff.shape
    assert abs(fe - ff).max() < 1e-12
    # networkx input gives the same features; batching does not matter
    ff2 = M.nspdk_features(M.mols_to_nx(mols), label_hash="python", batch_size=7)
    assert abs(fe - ff2).max() < 1e-12
    # rows are unit vectors
    norms = np.sqrt(np.asarray(ff.multiply(ff).sum(1)).ravel())
    assert np.allclose(norms, 1.0)
    # the stable label hash differs from eden only through hash collisions
    fs = M.nspdk_features(mols, label_hash="stable")
    k_e = (fe @ fe.T).toarray()
    k_s = (fs @ fs.T).toarray()
    assert np.abs(k_e - k_s).mean() < 0.01  # 16-bit hashing: collisions shift single entries by ~0.01-0.05


def test_nspdk_mmd_properties():
    qm9 = _qm9_smiles(200)
    a, b = qm9[:100], qm9[100:]
    assert M.nspdk_mmd(a, a) == pytest.approx(0.0, abs=1e-12)
    assert M.nspdk_mmd(list(reversed(a)), a) == pytest.approx(0.0, abs=1e-12)
    d_ab = M.nspdk_mmd(a, b)
    d_az = M.nspdk_mmd(a, ZINC_LIKE)
    assert 0 < d_ab < d_az
    # linear-kernel identity: same value as GDSS's mean(Kxx) + mean(Kyy) - 2 mean(Kxy)
    fa = M.nspdk_features([Chem.MolFromSmiles(s) for s in a])
    fb = M.nspdk_features([Chem.MolFromSmiles(s) for s in b])
    kxx, kyy, kxy = (fa @ fa.T).toarray(), (fb @ fb.T).toarray(), (fa @ fb.T).toarray()
    assert M.mmd_linear(fa, fb) == pytest.approx(kxx.mean() + kyy.mean() - 2 * kxy.mean(), rel=1e-9)
    assert d_ab == pytest.approx(M.mmd_linear(fa, fb), rel=1e-9)
    # eden backend vs fast backend with eden's label hashing
    e = M.nspdk_mmd(a[:40], b[:40], backend="eden")
    f = M.nspdk_mmd(a[:40], b[:40], backend="fast", label_hash="python")
    assert f == pytest.approx(e, rel=1e-9, abs=1e-12)
    # invalid / empty items are dropped
    assert M.nspdk_mmd([None, "", "C1CC"] + a, a) == pytest.approx(0.0, abs=1e-12)


def test_fcd_offline(tmp_path):
    qm9 = _qm9_smiles(80)
    assert abs(M.fcd(qm9[:40], qm9[:40])) < 1e-3
    out = M.evaluate_samples(qm9[:40], TRAIN, qm9[40:], 40, cache_dir=tmp_path)
    assert out["fcd"] > 0.1 and np.isfinite(out["fcd"]) and out["nspdk"] > 0
    # test-set statistics were written to the disk cache and are read back from there
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("molgen_fcdref_") for n in names) and any(n.startswith("molgen_nspdkref_") for n in names)
    mem = M.fcd_reference_stats(qm9[40:])
    disk = M.fcd_reference_stats(qm9[40:], cache_dir=tmp_path)
    assert np.array_equal(disk["mu"], mem["mu"]) and np.array_equal(disk["sigma"], mem["sigma"])
    assert M.nspdk_mmd(qm9[:40], qm9[40:], cache_dir=tmp_path) == pytest.approx(out["nspdk"], rel=1e-12)
    # one Reference computes its statistics once and gives the same metrics
    ref = M.Reference(TRAIN, qm9[40:])
    again = M.evaluate_samples(qm9[:40], n_valid_wo_correction=40, reference=ref)
    assert ref.fcd_stats is ref.fcd_stats and ref.nspdk_features() is ref.nspdk_features()
    for metric in ("fcd", "nspdk"):
        assert again[metric] == pytest.approx(out[metric], rel=1e-12)
    with pytest.raises(ValueError):
        M.evaluate_samples(qm9[:40], TRAIN, qm9[40:], reference=ref)
