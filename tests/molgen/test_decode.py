"""Decoding dense graphs into molecules (GDSS rules)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from molgen import data as D
from molgen import sources as S
from molgen.decode import graphs_to_mols, mols_to_smiles, quantize_bonds


def _canon(s):
    return Chem.MolToSmiles(Chem.MolFromSmiles(s))


def _graph(atoms, bonds, dataset="qm9"):
    """X, A (1 graph) from element symbols and (i, j, order) triples."""
    vocab = D.ATOM_VOCAB[dataset]
    N = D.MAX_ATOMS[dataset]
    X = torch.zeros(1, N, len(vocab))
    for i, a in enumerate(atoms):
        X[0, i, vocab.index(a)] = 1
    A = torch.zeros(1, N, N)
    for i, j, o in bonds:
        A[0, i, j] = A[0, j, i] = o
    return X, A


def test_round_trip_qm9():
    """Kekulized QM9 molecules decode back to the same canonical SMILES (neutral ones)."""
    path = S.qm9_csv_paths()[1]
    smiles = pd.read_csv(path, usecols=["SMILES"], nrows=1500)["SMILES"].tolist()
    Xs, As, ref = [], [], []
    for s in smiles:
        g = D.smiles_to_graph(s, "qm9")
        assert g is not None
        Xs.append(g[0])
        As.append(g[1])
        ref.append(_canon(s))
    X, A = torch.from_numpy(np.stack(Xs)), torch.from_numpy(np.stack(As))
    res = graphs_to_mols(X, A, D.node_flags(X), "qm9")
    assert len(res.mols) == len(smiles) and all(res.valid_wo_correction)
    out = mols_to_smiles(res.mols)
    neutral = [i for i, s in enumerate(smiles) if "+" not in s and "-" not in s]
    assert len(neutral) > 1400
    assert [out[i] for i in neutral] == [ref[i] for i in neutral]
    # unit-scaled adjacency decodes identically
    res_u = graphs_to_mols(X, D.scale_adjacency(A, "unit"), D.node_flags(X), "qm9", adj_mode="unit")
    assert mols_to_smiles(res_u.mols) == out
    # numpy input works too
    res_np = graphs_to_mols(X.numpy()[:5], A.numpy()[:5], None, "qm9")
    assert mols_to_smiles(res_np.mols) == out[:5]


def test_round_trip_zinc_like():
    smiles = [
        "CC(C)(C)c1ccc2occ(CC(=O)Nc3ccccc3F)c2c1",
        "O=C(Nc1ccc(I)cc1)c1ccc(Cl)s1",
        "CCOP(=O)(OCC)Cc1ccc(Br)cc1",
        "O=S(=O)(Nc1ccccc1)c1ccccc1",
    ]
    gs = [D.smiles_to_graph(s, "zinc250k") for s in smiles]
    X = torch.from_numpy(np.stack([g[0] for g in gs]))
    A = torch.from_numpy(np.stack([g[1] for g in gs]))
    res = graphs_to_mols(X, A, D.node_flags(X), "zinc250k")
    assert all(res.valid_wo_correction)
    assert mols_to_smiles(res.mols) == [_canon(s) for s in smiles]


def test_charged_molecules_follow_gdss():
    # zwitterion: charges are not encoded, the decoded molecule is the neutral form
    X, A = (torch.from_numpy(a)[None] for a in D.smiles_to_graph("[NH3+]CC([O-])=O", "qm9"))
    assert mols_to_smiles(graphs_to_mols(X, A, None, "qm9").mols) == ["NCC(=O)O"]
    # nitro: N with valence 4 gets a +1 charge (GDSS construct_mol), counted valid w/o correction
    X, A = (torch.from_numpy(a)[None] for a in D.smiles_to_graph("C[N+](=O)[O-]", "qm9"))
    res = graphs_to_mols(X, A, None, "qm9")
    assert res.valid_wo_correction == [True]
    assert mols_to_smiles(res.mols) == ["C[N+](=O)O"]


def test_valency_correction():
    # pentavalent carbon: invalid before correction; GDSS removes its first highest-order bond
    X, A = _graph(["C"] * 6, [(0, k, 1) for k in range(1, 6)])
    res = graphs_to_mols(X, A, None, "qm9")
    assert res.valid_wo_correction == [False] and res.n_valid_wo_correction == 0
    assert mols_to_smiles(res.mols) == ["CC(C)(C)C"]  # the detached methyl is dropped
    assert graphs_to_mols(X, A, None, "qm9", correct=False).mols == [None]
    # the highest-order bond is lowered by one, not removed: C#C=C -> C=C=C
    X, A = _graph(["C", "C", "C"], [(0, 1, 3), (1, 2, 2)])
    res = graphs_to_mols(X, A, None, "qm9")
    assert res.valid_wo_correction == [False]
    assert mols_to_smiles(res.mols) == ["C=C=C"]
    # GDSS keeps a +1 charge given during construction even after correction:
    # O#C (O charged to O+) then C=O makes C pentavalent -> O#C lowered to O=C, O stays [OH+]
    X, A = _graph(["O", "C", "O"], [(0, 1, 3), (1, 2, 2)])
    res = graphs_to_mols(X, A, None, "qm9")
    assert res.valid_wo_correction == [False]
    assert mols_to_smiles(res.mols) == ["O=C=[OH+]"]
    # F with two bonds: lowered until valid, largest fragment kept
    X, A = _graph(["C", "F", "C", "C"], [(0, 1, 1), (1, 2, 1), (2, 3, 1)])
    res = graphs_to_mols(X, A, None, "qm9")
    assert res.valid_wo_correction == [False]
    assert mols_to_smiles(res.mols) == ["CCF"]


def test_largest_fragment_and_flags():
    X, A = _graph(["C", "C", "C", "O", "N"], [(0, 1, 1), (1, 2, 1), (3, 4, 1)])
    res = graphs_to_mols(X, A, None, "qm9")
    assert res.valid_wo_correction == [True]
    assert mols_to_smiles(res.mols) == ["CCC"]
    both = graphs_to_mols(X, A, None, "qm9", largest_fragment=False)
    assert mols_to_smiles(both.mols) == ["CCC.NO"]
    # unflagged nodes are not atoms (their bonds disappear)
    flags = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0, 0, 0, 0, 0]])
    assert mols_to_smiles(graphs_to_mols(X, A, flags, "qm9").mols) == ["CC"]
    # a flagged node whose features are all <= 0.5 is not an atom (GDSS: x > 0.5)
    X2 = X.clone()
    X2[0, 0] = 0.4
    assert mols_to_smiles(graphs_to_mols(X2, A, None, "qm9").mols) == ["CC"]
    assert mols_to_smiles(graphs_to_mols(X2, A, None, "qm9", atom_threshold=None).mols) == ["CCC"]
    # argmax picks the element
    X3 = X.clone()
    X3[0, 2] = torch.tensor([0.2, 0.1, 0.9, 0.0])
    assert mols_to_smiles(graphs_to_mols(X3, A, None, "qm9").mols) == ["CCO"]


def test_empty_graph_is_invalid():
    X = torch.zeros(2, 9, 4)
    A = torch.zeros(2, 9, 9)
    X[1, 0, 0] = 1
    res = graphs_to_mols(X, A, None, "qm9")
    assert res.mols[0] is None and res.valid_wo_correction == [False, True]
    assert mols_to_smiles(res.mols) == [None, "C"]


def test_bond_thresholds():
    A = np.array([-1.0, 0.0, 0.49, 0.5, 1.49, 1.5, 2.49, 2.5, 3.7])
    assert quantize_bonds(A).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    for value, expected in [(0.49, "C.C"), (0.51, "CC"), (1.6, "C=C"), (2.6, "C#C"), (-2.0, "C.C")]:
        X, A = _graph(["C", "C"], [(0, 1, value)])
        assert mols_to_smiles(graphs_to_mols(X, A, None, "qm9", largest_fragment=False).mols) == [expected]


def test_shape_errors():
    with pytest.raises(ValueError):
        graphs_to_mols(torch.zeros(1, 9, 5), torch.zeros(1, 9, 9), None, "qm9")
