"""Cell-complex lifting (molgen.complexes): TopoNetX oracle, chordless cycles vs networkx, batching,
permutations, dense <-> edge round trips, input errors."""

from __future__ import annotations

import csv
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from rdkit import Chem
from toponetx.classes import CellComplex

import molgen.complexes as C
from molgen.complexes import MAX_NODES, CellComplexBatch, lift_graphs, lift_mols
from molgen.data import smiles_to_graph

FIX = Path(__file__).parent / "fixtures"

HAND_PICKED = [
    "c1ccccc1",  # benzene
    "c1ccc2ccccc2c1",  # naphthalene
    "c1ccc2cc3ccccc3cc2c1",  # anthracene
    "C12C3C4C1C5C2C3C45",  # cubane
    "C12C3C1C4C2C34",  # prismane
    "C1CC11CC1",  # spiro[2.2]pentane
    "C1CCC2(C1)CCCCC2",  # spiro[4.5]decane
    "C1C2CC12",  # bicyclo[1.1.0]butane
    "C1C2CC1C2",  # bicyclo[1.1.1]pentane
    "C1CC2CCC1C2",  # norbornane
    "C1CC2CCC1CC2",  # bicyclo[2.2.2]octane
    "C1C2CC3CC1CC(C2)C3",  # adamantane
    "C1CCC2CCCCC2C1",  # decalin
    "c1ccc2[nH]ccc2c1",  # indole
    "c1ccc2cccccc-2cc1",  # azulene
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",  # caffeine
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "C1=CC=CC=CC=C1",  # cyclooctatetraene
    "C1CCCCCCCCC1",  # cyclodecane (10-ring)
    "OC1C2CC1N2",
    "CC1(C)C2CCC1(C)C(=O)C2",  # camphor
    "C1CC1C1CC1",  # bicyclopropyl
    "N#CC1=CC=CO1",
]


def _fixture_smiles() -> list[str]:
    with open(FIX / "qm9_tiny.csv") as f:
        rows = [r["SMILES"] for r in csv.DictReader(f)]
    return [s for s in rows if Chem.MolFromSmiles(s) is not None]


ORACLE_SMILES = _fixture_smiles() + HAND_PICKED
# Symmetrised SSSR != chordless cycles of up to 10 atoms (hand-checked): cubane's graph (the 3-cube) also has
# 4 chordless 6-cycles (around each pair of opposite corners); norbornane (and camphor, a norbornane) the
# 6-cycle through both C2 bridges; adamantane 3 chordless 8-cycles (around each pair of opposite CH2 groups).
DIFFERENT = {
    "C12C3C4C1C5C2C3C45": (6, 10),
    "C1CC2CCC1C2": (2, 3),
    "CC1(C)C2CCC1(C)C(=O)C2": (2, 3),
    "C1C2CC3CC1CC(C2)C3": (4, 7),
}


def _dense(sp: torch.Tensor) -> np.ndarray:
    return sp.to_dense().numpy()


def _toponetx(mol: Chem.Mol, rings) -> CellComplex:
    cc = CellComplex()
    for a in range(mol.GetNumAtoms()):
        cc.add_node(a)
    for bond in mol.GetBonds():  # RDKit bond order, (begin, end) as RDKit has them
        cc.add_edge(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
    for r in rings:
        cc.add_cell(list(r), rank=2)
    return cc


def _graph(smiles: str, n: int = 38):
    X, A = smiles_to_graph(smiles, "zinc250k")
    A = torch.from_numpy(A)[:n, :n]
    flags = torch.from_numpy((X.sum(-1) > 0).astype(np.float32))[:n]
    return A, flags


def _random_batch(B: int, N: int, seed: int, noise: float = 1.0, p_real: float = 0.8):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randint(1, N + 1, (B,), generator=gen)
    flags = (torch.arange(N) < k.unsqueeze(1)).float()
    a = (torch.rand(B, N, N, generator=gen) < 0.25).float() + noise * torch.randn(B, N, N, generator=gen)
    a = a.triu(1)
    return a + a.transpose(1, 2), flags


# ----------------------------------------------------------------------------- TopoNetX oracle
@pytest.mark.parametrize("smiles", ORACLE_SMILES)
def test_matches_toponetx(smiles):
    mol = Chem.MolFromSmiles(smiles)
    n = mol.GetNumAtoms()
    cx = lift_mols([mol], max_nodes=n + 2)  # two padding slots
    rdkit_rings = [tuple(r) for r in mol.GetRingInfo().AtomRings()]
    assert sorted(map(sorted, rdkit_rings)) == sorted(map(sorted, Chem.GetSymmSSSR(mol)))
    cc = _toponetx(mol, rdkit_rings)

    nodes, edges, B1 = cc.incidence_matrix(1, index=True)
    assert list(nodes) == list(range(n))
    ours = [tuple(e) for e in cx.edge_index.t().tolist()]
    assert ours == list(edges)  # TopoNetX sorts edges; so do we
    assert ours == sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds())
    assert np.array_equal(_dense(cx.B1)[:n], B1.toarray()) and not _dense(cx.B1)[n:].any()

    ours_b2 = _dense(cx.B2)
    assert ours_b2.shape[1] == len(rdkit_rings) == cx.num_faces
    if rdkit_rings:
        theirs = cc.incidence_matrix(2).toarray()
        by_nodes = {frozenset(r): i for i, r in enumerate(rdkit_rings)}
        for f, ring in enumerate(cx.face_nodes.tolist()):
            col = theirs[:, by_nodes[frozenset(a for a in ring if a >= 0)]]
            assert np.array_equal(ours_b2[:, f], col) or np.array_equal(ours_b2[:, f], -col)
        same_orientation = _toponetx(mol, [[a for a in r if a >= 0] for r in cx.face_nodes.tolist()])
        assert np.array_equal(ours_b2, same_orientation.incidence_matrix(2).toarray())

    down = cc.down_laplacian_matrix(1, signed=False).toarray() if cx.num_edges else np.zeros((0, 0))
    assert np.array_equal(_dense(cx.down_laplacian), down)
    if rdkit_rings:
        B2_abs = abs(cc.incidence_matrix(2, signed=False))
        assert np.array_equal(_dense(cx.up_laplacian), (B2_abs @ B2_abs.T).toarray())
        assert np.array_equal(_dense(cx.up_laplacian), cc.up_laplacian_matrix(1, signed=False).toarray())
    else:
        assert not _dense(cx.up_laplacian).any()
    hodge = cc.hodge_laplacian_matrix(1, signed=True).toarray() if cx.num_edges else np.zeros((0, 0))
    assert np.array_equal(_dense(cx.hodge_laplacian), hodge)

    assert torch.equal(cx.down_index, cx.down_laplacian.indices())
    up_pattern = (cx.up_laplacian.to_dense() + torch.eye(cx.num_edges)).to_sparse().indices()
    assert torch.equal(cx.up_index, up_pattern)


def test_edge_order_differs_from_rdkit_bond_order():
    """The oracle's edge check is not vacuous: RDKit's bond order is not the sorted one here."""
    mol = Chem.MolFromSmiles("c1ccc2ccccc2c1")
    bonds = [tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()]
    assert bonds != sorted(bonds)
    assert any(b.GetBeginAtomIdx() > b.GetEndAtomIdx() for b in Chem.MolFromSmiles("C1CCC2(C1)CCCCC2").GetBonds())


def test_canonical_rings():
    cx = lift_mols([Chem.MolFromSmiles("C1CC2CCC1CC2")], max_nodes=8)
    for ring, size in zip(cx.face_nodes.tolist(), cx.face_size.tolist()):
        ring = ring[:size]
        assert ring[0] == min(ring) and ring[1] < ring[-1]
    assert cx.face_size.tolist() == sorted(cx.face_size.tolist())


# ----------------------------------------------------------------------------- lift_graphs vs lift_mols
@pytest.mark.parametrize("smiles", [s for s in ORACLE_SMILES if s not in DIFFERENT])
def test_graph_lift_matches_mol_lift(smiles):
    mol = Chem.MolFromSmiles(smiles)
    n = 38
    A, flags = _graph(smiles, n)
    g, m = lift_graphs(A[None], flags[None], max_ring=10), lift_mols([mol], n)
    for name in ("edge_index", "face_nodes", "face_size", "down_index", "up_index", "face_edges"):
        assert torch.equal(getattr(g, name), getattr(m, name)), name
    assert torch.equal(g.B1.to_dense(), m.B1.to_dense()) and torch.equal(g.B2.to_dense(), m.B2.to_dense())


@pytest.mark.parametrize("smiles", list(DIFFERENT))
def test_graph_lift_differs_from_sssr(smiles):
    n_sssr, n_chordless = DIFFERENT[smiles]
    A, flags = _graph(smiles)
    g, m = lift_graphs(A[None], flags[None], max_ring=10), lift_mols([Chem.MolFromSmiles(smiles)], 38)
    assert (m.num_faces, g.num_faces) == (n_sssr, n_chordless)
    sssr = {tuple(r) for r in m.face_nodes.tolist()}
    assert sssr <= {tuple(r[: m.face_nodes.shape[1]]) for r in g.face_nodes.tolist()}


def test_cubane_extra_rings_are_six_cycles_around_opposite_corners():
    A, flags = _graph("C12C3C4C1C5C2C3C45", 9)
    g = lift_graphs(A[None], flags[None])
    six = [set(r) for r, s in zip(g.face_nodes.tolist(), g.face_size.tolist()) if s == 6]
    assert len(six) == 4
    G = nx.Graph(g.edge_index.t().tolist())
    for ring in six:
        a, b = set(range(8)) - ring
        assert nx.shortest_path_length(G, a, b) == 3  # the two corners left out are opposite


# ----------------------------------------------------------------------------- chordless cycles
@pytest.mark.parametrize("N,max_ring,seed", [(9, 8, 0), (9, 5, 1), (12, 8, 2), (20, 6, 3)])
def test_cycles_match_networkx(N, max_ring, seed):
    adj, flags = _random_batch(40, N, seed)
    cx = lift_graphs(adj, flags, max_ring=max_ring)
    for b in range(40):
        G = nx.Graph()
        G.add_edges_from((u - b * N, v - b * N) for u, v in cx.edge_index[:, cx.edge_batch == b].t().tolist())
        want = {frozenset(c) for c in nx.chordless_cycles(G, length_bound=max_ring) if len(c) >= 3}
        faces = [[a - b * N for a in r if a >= 0] for r in cx.face_nodes[cx.face_batch == b].tolist()]
        assert len(faces) == len(want) and {frozenset(f) for f in faces} == want
        for f in faces:  # in cycle order
            assert all(G.has_edge(f[i], f[(i + 1) % len(f)]) for i in range(len(f)))


def test_frontier_pieces_give_the_same_result(monkeypatch):
    adj, flags = _random_batch(60, 12, 5)
    whole = lift_graphs(adj, flags)
    monkeypatch.setattr(C, "MAX_PATHS", 7)
    pieces = lift_graphs(adj, flags)
    for name in ("edge_index", "face_nodes", "face_size", "face_batch", "up_index"):
        assert torch.equal(getattr(whole, name), getattr(pieces, name)), name


def test_largest_supported_n():
    N = MAX_NODES
    adj = torch.zeros(1, N, N)
    for u, v in [(60, 61), (61, 62), (60, 62), (0, 62), (0, 59), (59, 60)]:
        adj[0, u, v] = adj[0, v, u] = 1
    cx = lift_graphs(adj, torch.ones(1, N))
    assert sorted(tuple(r[:s]) for r, s in zip(cx.face_nodes.tolist(), cx.face_size.tolist())) == [
        (0, 59, 60, 62),
        (60, 61, 62),
    ]


# ----------------------------------------------------------------------------- batching, permutation
def _block(cx: CellComplexBatch, b: int) -> dict[str, torch.Tensor]:
    """Graph b of a batch, re-indexed as if lifted alone."""
    N = cx.max_nodes
    e_sel, f_sel = cx.edge_batch == b, cx.face_batch == b
    e0, f0 = int(e_sel.nonzero()[0]) if e_sel.any() else 0, int(f_sel.nonzero()[0]) if f_sel.any() else 0
    faces = cx.face_nodes[f_sel]
    face_edges = cx.face_edges[f_sel]

    def pairs(index):
        keep = cx.edge_batch[index[0]] == b
        return index[:, keep] - e0

    B1 = cx.B1.to_dense()[b * N : (b + 1) * N][:, e_sel]
    return {
        "edge_index": cx.edge_index[:, e_sel] - b * N,
        "face_nodes": torch.where(faces >= 0, faces - b * N, faces),
        "face_edges": torch.where(face_edges >= 0, face_edges - e0, face_edges),
        "down_index": pairs(cx.down_index),
        "up_index": pairs(cx.up_index),
        "B1": B1,
        "B2": cx.B2.to_dense()[e_sel][:, f_sel],
        "f0": torch.tensor(f0),
    }


def test_batch_equals_graphs_lifted_alone():
    adj, flags = _random_batch(25, 9, 7)
    cx = lift_graphs(adj, flags)
    assert torch.equal(cx.edge_batch, cx.edge_batch.sort().values)
    assert torch.equal(cx.face_batch, cx.face_batch.sort().values)
    for b in range(25):
        alone = _block(lift_graphs(adj[b : b + 1], flags[b : b + 1]), 0)
        part = _block(cx, b)
        for name, t in alone.items():
            if name == "f0":
                continue
            L = t.shape[1] if name in ("face_nodes", "face_edges") else None
            got = part[name][:, :L] if L is not None else part[name]
            if L is not None:
                assert (part[name][:, L:] == -1).all()
            assert torch.equal(got, t), (b, name)


def test_permuting_nodes_permutes_the_complex():
    gen = torch.Generator().manual_seed(3)
    adj, flags = _random_batch(20, 9, 11, noise=0.6)
    for b in range(20):
        k = int(flags[b].sum())
        perm = torch.cat([torch.randperm(k, generator=gen), torch.arange(k, 9)])  # real atoms stay first
        a, ap = adj[b : b + 1], adj[b : b + 1][:, perm][:, :, perm]
        cx, cp = lift_graphs(a, flags[b : b + 1]), lift_graphs(ap, flags[b : b + 1])
        assert (cx.num_edges, cx.num_faces) == (cp.num_edges, cp.num_faces)
        assert sorted(cx.face_size.tolist()) == sorted(cp.face_size.tolist())
        # slot i of the permuted graph is slot perm[i] of the original
        mapped = {frozenset(perm[x].item() for x in r if x >= 0) for r in cp.face_nodes.tolist()}
        assert mapped == {frozenset(x for x in r if x >= 0) for r in cx.face_nodes.tolist()}
        mapped_edges = {frozenset(perm[x].item() for x in e) for e in cp.edge_index.t().tolist()}
        assert mapped_edges == {frozenset(e) for e in cx.edge_index.t().tolist()}
        ev = torch.linalg.eigvalsh(cx.hodge_laplacian.to_dense())
        evp = torch.linalg.eigvalsh(cp.hodge_laplacian.to_dense())
        assert torch.allclose(ev, evp, atol=1e-4)


# ----------------------------------------------------------------------------- dense <-> edges, masks, threshold
def test_edge_values_round_trip():
    adj, flags = _random_batch(16, 9, 2)
    cx = lift_graphs(adj, flags, threshold=0.3)
    vals = cx.edge_values(adj)
    assert (vals > 0.3).all()
    edge_mask = cx.edges_to_dense(torch.ones(cx.num_edges)).bool()
    assert torch.equal(cx.edges_to_dense(vals), adj * edge_mask)
    chans = torch.randn(cx.num_edges, 3)
    dense = cx.edges_to_dense(chans)
    assert dense.shape == (16, 9, 9, 3) and torch.equal(dense, dense.transpose(1, 2))
    assert torch.equal(cx.edge_values(dense), chans)
    x = torch.randn(cx.num_edges, requires_grad=True)
    cx.edges_to_dense(x).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


def test_threshold_and_padding():
    adj, flags = _random_batch(30, 9, 4)
    for t in (-0.5, 0.5, 1.5):
        cx = lift_graphs(adj, flags, threshold=t)
        real = flags.reshape(-1).bool()
        assert real[cx.edge_index].all()
        assert real[cx.face_nodes[cx.face_nodes >= 0]].all()
        want = ((adj > t) & (flags.unsqueeze(1) * flags.unsqueeze(2)).bool()).triu(1).sum()
        assert cx.num_edges == int(want)
        assert (cx.edge_values(adj) > t).all()
        assert (cx.edge_index[0] < cx.edge_index[1]).all()
        keys = cx.edge_index[0] * cx.num_nodes + cx.edge_index[1]
        assert torch.equal(keys, keys.sort().values)


def test_structure_fields():
    adj, flags = _random_batch(5, 9, 9)
    cx = lift_graphs(adj.double(), flags)
    assert cx.B1.dtype == torch.float64 and cx.B1.shape == (45, cx.num_edges)
    assert cx.B2.shape == (cx.num_edges, cx.num_faces)
    assert not torch.sparse.mm(cx.B1, cx.B2).to_dense().any()  # boundary of a boundary
    assert cx.node_adj_index.shape == (2, 2 * cx.num_edges)
    assert torch.equal(cx.face_size, (cx.face_nodes >= 0).sum(1))
    assert torch.equal(cx.down_index[0], cx.down_index[0].sort().values)
    assert torch.equal(cx.up_index[0], cx.up_index[0].sort().values)
    selfs = cx.up_index[:, cx.up_index[0] == cx.up_index[1]]
    assert torch.equal(selfs[0], torch.arange(cx.num_edges))
    moved = cx.to("cpu")
    assert torch.equal(moved.up_index, cx.up_index) and moved.batch_size == 5


def test_empty_inputs():
    cx = lift_graphs(torch.zeros(3, 9, 9), torch.zeros(3, 9))
    assert cx.num_edges == 0 and cx.num_faces == 0 and cx.B1.shape == (27, 0)
    assert cx.down_index.shape == (2, 0) and cx.up_index.shape == (2, 0)
    assert lift_mols([], 9).num_edges == 0
    single = lift_mols([Chem.MolFromSmiles("C")], 9)
    assert single.num_edges == 0 and single.B2.shape == (0, 0)


def test_mol_batch_offsets():
    mols = [Chem.MolFromSmiles(s) for s in ("c1ccccc1", "CCO", "C1CC11CC1")]
    cx = lift_mols(mols, 9)
    assert cx.edge_batch.tolist() == [0] * 6 + [1] * 2 + [2] * 6
    assert cx.face_batch.tolist() == [0, 2, 2]
    assert cx.face_nodes[1].tolist() == [18, 19, 20, -1, -1, -1]


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "adj,flags,kwargs,match",
    [
        (torch.zeros(2, 9), torch.ones(2, 9), {}, "adj must be a tensor of shape"),
        (torch.zeros(2, 9, 8), torch.ones(2, 9), {}, "adj must be a tensor of shape"),
        (torch.zeros(2, 9, 9), torch.ones(2, 8), {}, "flags must have shape"),
        (torch.zeros(2, 9, 9), torch.full((2, 9), 0.5), {}, "flags must contain only 0 and 1"),
        (torch.zeros(1, 64, 64), torch.ones(1, 64), {}, "exceeds the supported maximum of 63"),
        (torch.zeros(2, 9, 9), torch.ones(2, 9), {"max_ring": 2}, "max_ring"),
        (torch.full((1, 3, 3), float("nan")), torch.ones(1, 3), {}, "NaN"),
    ],
)
def test_bad_dense_input(adj, flags, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lift_graphs(adj, flags, **kwargs)


def test_non_symmetric_adjacency():
    adj = torch.zeros(1, 4, 4)
    adj[0, 0, 1] = 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        lift_graphs(adj, torch.ones(1, 4))
    adj[0, 1, 0] = 1.0 + 1e-7  # rounding-level asymmetry is tolerated
    assert lift_graphs(adj, torch.ones(1, 4)).num_edges == 1


def test_bad_mol_input_and_dense_shapes():
    with pytest.raises(ValueError, match=r"mols\[1\] has 10 atoms, more than max_nodes=9"):
        lift_mols([Chem.MolFromSmiles("C"), Chem.MolFromSmiles("CCCCCCCCCC")], 9)
    with pytest.raises(ValueError, match=r"mols\[0\] is not an RDKit Mol"):
        lift_mols([None], 9)
    with pytest.raises(ValueError, match="max_nodes"):
        lift_mols([], 0)
    cx = lift_mols([Chem.MolFromSmiles("CCO")], 9)
    with pytest.raises(ValueError, match="dense must have shape"):
        cx.edge_values(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="one per edge"):
        cx.edges_to_dense(torch.zeros(5))
