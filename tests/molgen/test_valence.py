"""The valence decoder: bond orders from the generated charges and hydrogen counts on A's bond topology."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from molgen import data as D
from molgen import sources as S
from molgen.decode import decode_graphs, graphs_to_mols, mols_to_smiles
from molgen.features import AtomFeatureSpec
from molgen.valence import allowed_valences, assign_bond_orders, bond_valence_targets

FEAT = ["type", "charge", "aromatic", "hybridization", "num_hs", "ring"]
CHARGED = ["C[N+](=O)[O-]", "[NH3+]CC([O-])=O", "C[N+]#[C-]", "[NH3+]CC(=O)[O-]", "O=C([O-])C[NH+]1CC1"]


def _encode(smiles, features=FEAT):
    Xs, As, ref = [], [], []
    for s in smiles:
        out = D.encode_smiles(s, "qm9", atom_features=features)
        if isinstance(out, str):
            continue
        Xs.append(out[0]), As.append(out[1]), ref.append(out[2])
    return torch.from_numpy(np.stack(Xs)), torch.from_numpy(np.stack(As)), ref


@pytest.fixture(scope="module")
def qm9_graphs():
    """Every 90th QM9 molecule (about 1,500, aromatic rings and methyl groups among them) and a few charged
    ones, encoded with every atom feature."""
    smiles = pd.concat([pd.read_csv(p, usecols=["SMILES"]) for p in S.qm9_csv_paths()])["SMILES"].tolist()[::90]
    X, A, ref = _encode(smiles + CHARGED)
    assert sum(any(c in s for c in "cno") for s in ref) > 100
    return X, A, ref


def test_allowed_valences_follow_the_isoelectronic_element():
    assert allowed_valences("C", 0) == (4,) and allowed_valences("N", 1) == (4,)
    assert allowed_valences("O", -1) == (1,) and allowed_valences("N", -1) == (2,)
    assert allowed_valences("C", -1) == (3,) and allowed_valences("F", 0) == (1,)
    assert bond_valence_targets("C", 0, 1) == {3}
    assert bond_valence_targets("C", 0, "3+") == {1, 0}
    assert bond_valence_targets("N", 1, 0) == {4}
    assert bond_valence_targets("O", 0, None) == {0, 1, 2}
    assert bond_valence_targets("F", 0, 2) == frozenset()


def test_assign_bond_orders_meets_the_targets_closest_to_a():
    ring = np.zeros((6, 6))
    for i in range(6):
        ring[i, (i + 1) % 6] = ring[(i + 1) % 6, i] = 1.5
    orders = assign_bond_orders(ring, [frozenset({3})] * 6)  # benzene: every C has one H
    assert orders is not None and sorted(orders.sum(1).tolist()) == [3] * 6
    assert sorted(orders[np.triu_indices(6, 1)].tolist())[-6:] == [1, 1, 1, 2, 2, 2]
    # A's values break the tie between the two Kekule structures
    ring[0, 1] = ring[1, 0] = 1.9
    assert assign_bond_orders(ring, [frozenset({3})] * 6)[0, 1] == 2
    # C=O with A near a single bond: the targets (CH2=O) win over A
    w = np.array([[0.0, 0.9], [0.9, 0.0]])
    assert assign_bond_orders(w, [frozenset({2}), frozenset({2})])[0, 1] == 2
    # a CH3 bonded to two atoms contradicts the topology: no assignment
    w3 = np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=float)
    assert assign_bond_orders(w3, [frozenset({1}), frozenset({3}), frozenset({3})]) is None
    # an isolated atom needs a target of 0
    assert assign_bond_orders(np.zeros((1, 1)), [frozenset({0})]).tolist() == [[0]]
    assert assign_bond_orders(np.zeros((1, 1)), [frozenset({2})]) is None


@pytest.mark.parametrize("bonds", ["exact", "topology"])
def test_feature_decoding_round_trips_qm9(qm9_graphs, bonds):
    """QM9 molecules (charged ones included) decode back to their canonical SMILES from the atom features and
    A: with A's bond orders, and with A reduced to the bond topology (every bond 1.0): charges and hydrogen
    counts fix the orders."""
    X, A, ref = qm9_graphs
    if bonds == "topology":
        A = (A > 0).float()
    out = decode_graphs(X, A, D.node_flags(X), "qm9", decoder="valence", atom_features=FEAT)
    assert all(d.valid_wo_correction and d.from_features for d in out)
    assert mols_to_smiles([d.mol for d in out]) == ref
    changed = sum(d.bonds_changed for d in out)
    assert (changed == 0) if bonds == "exact" else (changed > 500)
    # GDSS's decoder needs the orders: from the topology alone most molecules come out wrong
    if bonds == "topology":
        gdss = mols_to_smiles(graphs_to_mols(X, A, D.node_flags(X), "qm9", atom_features=FEAT).mols)
        assert sum(a == b for a, b in zip(gdss, ref)) < 0.8 * len(ref)


def test_contradictory_features_fall_back_to_gdss():
    """A graph whose hydrogen counts no bond orders can meet is decoded as GDSS's decoder would."""
    X, A, _ = _encode(["CC=O"])
    num_hs = AtomFeatureSpec.build(FEAT, dataset="qm9").block("num_hs").slice
    X[0, 2, num_hs] = torch.tensor([0.0, 0.0, 1.0, 0.0])  # the O claims two hydrogens
    flags = D.node_flags(X)
    (out,) = decode_graphs(X, A, flags, "qm9", decoder="valence", atom_features=FEAT)
    assert not out.from_features and out.bonds_changed == 0
    gdss = graphs_to_mols(X, A, flags, "qm9", atom_features=FEAT)
    assert out.valid_wo_correction == gdss.valid_wo_correction[0]
    assert mols_to_smiles([out.mol]) == mols_to_smiles(gdss.mols) == ["CC=O"]


def test_without_features_the_valence_decoder_only_bounds_the_valence():
    """Types only: no hydrogen counts, so any orders up to the valence; an over-valent atom has no
    assignment on its topology and falls back to GDSS (invalid without correction)."""
    X = torch.zeros(1, 9, 4)
    X[0, :6, 0] = 1
    A = torch.zeros(1, 9, 9)
    for k in range(1, 6):
        A[0, 0, k] = A[0, k, 0] = 1
    res = graphs_to_mols(X, A, D.node_flags(X), "qm9", decoder="valence")
    assert res.valid_wo_correction == [False]
    with pytest.raises(ValueError, match="unknown decoder"):
        graphs_to_mols(X, A, None, "qm9", decoder="nope")
