"""Cell attention layers against topomodelx 0.0.1, and the two cell-complex score networks: agreement with the
pair-list formulation they replaced (``can_reference``), batch consistency, permutation equivariance, symmetry,
masks, gradients, one lift per score, and the time argument of ``score_fn``."""
from __future__ import annotations

from dataclasses import replace

import can_reference
import pytest
import torch
from rdkit import Chem

from molgen.complexes import lift_graphs
from molgen.neighbourhoods import Neighbourhoods, lift_neighbourhoods, pack_marks
from molgen.nets import can, kernels
from molgen.nets.can import AttentionLift, CANLayer, CANScoreA, CANScoreX
from molgen.nets.gdss import set_kernel_threads, set_use_kernels
from molgen.nets.score import GraphScore, score_fn
from molgen.sde import VESDE, VPSDE

SMILES = ["c1ccccc1O", "CCN(C)C", "C1CC1C(=O)O", "C1CC2CCC1C2", "OC1CCOC1", "CC(=O)N", "c1ccncc1", "CC#N"]


def mol_batch(smiles, n=9):
    """Kekulised molecules as dense (X one-hot [C, N, O, F], A bond orders, flags)."""
    b = len(smiles)
    x, adj, flags = torch.zeros(b, n, 4), torch.zeros(b, n, n), torch.zeros(b, n)
    for g, s in enumerate(smiles):
        m = Chem.MolFromSmiles(s)
        Chem.Kekulize(m, clearAromaticFlags=True)
        for atom in m.GetAtoms():
            x[g, atom.GetIdx(), "CNOF".index(atom.GetSymbol())] = 1.0
            flags[g, atom.GetIdx()] = 1.0
        for bond in m.GetBonds():
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            adj[g, i, j] = adj[g, j, i] = bond.GetBondTypeAsDouble()
    return x, adj, flags


def noisy(smiles, n=9, sigma=0.3, seed=0):
    x, adj, flags = mol_batch(smiles, n)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(adj.shape, generator=g).triu(1)
    adj = (adj + sigma * (z + z.transpose(1, 2))) * flags[:, :, None] * flags[:, None, :]
    x = (x + sigma * torch.randn(x.shape, generator=g)) * flags[..., None]
    return x, adj, flags


def copy_from_topomodelx(ours: CANLayer, ref) -> None:
    """Load the weights of a topomodelx v1 CANLayer into ours (lin columns: [down | up | skip])."""
    o = ours.out_channels
    with torch.no_grad():
        ours.lin.weight[:o] = ref.lower_att.lin.weight
        ours.lin.weight[o:2 * o] = ref.upper_att.lin.weight
        ours.lin.weight[2 * o:] = ref.lin.weight
        for k, att in enumerate((ref.lower_att, ref.upper_att)):
            ours.att_src[k] = att.att_weight_src[0]
            ours.att_dst[k] = att.att_weight_dst[0]


@pytest.mark.parametrize("heads,concat", [(1, True), (4, True), (2, False)])
def test_can_layer_matches_topomodelx(heads, concat):
    """Single molecules with rings (norbornane's edges lie in two of its three chordless rings), and a mixed
    batch as one block-diagonal complex (agreement there needs at least one ring in the whole complex)."""
    from topomodelx.nn.cell.can_layer import CANLayer as RefCANLayer
    torch.manual_seed(0)
    leaky = torch.nn.LeakyReLU(0.2)
    for smiles in (["c1ccccc1O"], ["C1CC2CCC1C2"], ["C1CC1C(=O)O"], SMILES):
        _, adj, flags = mol_batch(smiles)
        cx = lift_graphs(adj, flags)
        e = cx.num_edges
        x = torch.randn(e, 6)
        ref = RefCANLayer(6, 8, heads=heads, concat=concat, skip_connection=True, att_activation=leaky,
                          add_self_loops=True, aggr_func="sum", update_func="relu", version="v1")
        ours = CANLayer(6, 8, heads=heads, concat=concat, skip_connection=True, att_activation=leaky, update="relu")
        copy_from_topomodelx(ours, ref)
        want = ref(x, cx.down_laplacian.float(), cx.up_laplacian.float())
        got = ours(x, Neighbourhoods.of_complex(cx))
        assert got.shape == want.shape == (e, 8 if concat else 8 // heads)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert cx.up_laplacian.to_dense().diagonal().max() == 2  # some edge in two rings


def test_can_layer_ring_free_molecule_differs_from_topomodelx_only_by_upper_self_term():
    """topomodelx drops the upper term of a complex without 2-cells; ours keeps each edge's upper self-loop."""
    from topomodelx.nn.cell.can_layer import CANLayer as RefCANLayer
    torch.manual_seed(1)
    _, adj, flags = mol_batch(["CCN(C)C"])
    cx = lift_graphs(adj, flags)
    x = torch.randn(cx.edge_index.shape[1], 5)
    ref = RefCANLayer(5, 6, heads=2, update_func=None, att_activation=torch.nn.LeakyReLU(0.2))
    ours = CANLayer(5, 6, heads=2, update=None)
    copy_from_topomodelx(ours, ref)
    want = ref(x, cx.down_laplacian.float(), cx.up_laplacian.float())
    upper_self = x @ ours.lin.weight[6:12].t()  # softmax over the self-loop alone: the edge's own up-message
    torch.testing.assert_close(ours(x, Neighbourhoods.of_complex(cx)), want + upper_self, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("readout", ["cat", "sum", "avg", "max"])
def test_attention_lift_matches_topomodelx(readout):
    from topomodelx.nn.cell.can_layer import MultiHeadLiftLayer
    torch.manual_seed(0)
    _, adj, flags = mol_batch(["c1ccccc1O"])
    cx = lift_graphs(adj, flags)
    x0, x1 = torch.randn(9, 5), torch.randn(cx.edge_index.shape[1], 3)
    ref = MultiHeadLiftLayer(5, heads=4, signal_lift_readout=readout)
    ours = AttentionLift(5, heads=4, readout=readout, symmetric=False)
    with torch.no_grad():
        ours.att.copy_(ref.lifts.att_parameter)
    a0 = torch.sparse_coo_tensor(cx.edge_index, torch.ones(cx.edge_index.shape[1]), (9, 9)).coalesce()
    torch.testing.assert_close(ours(x0, cx.edge_index, x1), ref(x0, a0, x1), atol=1e-6, rtol=1e-5)
    sym = AttentionLift(5, heads=4, readout=readout, symmetric=True)
    sym.load_state_dict(ours.state_dict())
    torch.testing.assert_close(sym(x0, cx.edge_index), sym(x0, cx.edge_index.flip(0)))


def test_can_layer_batch_equals_one_complex_at_a_time():
    torch.manual_seed(0)
    layer = CANLayer(7, 8, heads=2)
    x, adj, flags = mol_batch(SMILES)
    cx = lift_graphs(adj, flags)
    feats = torch.randn(cx.edge_index.shape[1], 7)
    out = layer(feats, Neighbourhoods.of_complex(cx))
    for g in range(len(SMILES)):
        sel = cx.edge_batch == g
        one = lift_neighbourhoods(adj[g:g + 1], flags[g:g + 1]).neighbourhoods
        torch.testing.assert_close(layer(feats[sel], one), out[sel], atol=1e-6, rtol=1e-5)


def make_nets(ring_features=True, seed=0):
    torch.manual_seed(seed)
    kw = dict(hidden=16, num_layers=2, heads=4, ring_features=ring_features, n_atom_types=4)
    return CANScoreX(4, **kw), CANScoreA(4, **kw)


@pytest.mark.parametrize("ring_features", [False, True])
def test_score_nets_batch_equals_one_graph_at_a_time(ring_features):
    x, adj, flags = noisy(SMILES)
    t = torch.linspace(0.1, 0.9, len(SMILES))
    for net in make_nets(ring_features):
        out = net(x, adj, flags, t)
        for g in range(len(SMILES)):
            one = net(x[g:g + 1], adj[g:g + 1], flags[g:g + 1], t[g:g + 1])
            torch.testing.assert_close(one[0], out[g], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("ring_features", [False, True])
def test_score_nets_permutation_equivariant(ring_features):
    x, adj, flags = noisy(SMILES, sigma=0.4, seed=3)
    t = torch.rand(len(SMILES), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    perm = torch.stack([torch.randperm(9, generator=g) for _ in SMILES])  # also moves padding slots around
    xp = torch.stack([x[i, p] for i, p in enumerate(perm)])
    ap = torch.stack([adj[i][p][:, p] for i, p in enumerate(perm)])
    fp = torch.stack([flags[i, p] for i, p in enumerate(perm)])
    net_x, net_a = make_nets(ring_features)
    sx, sxp = net_x(x, adj, flags, t), net_x(xp, ap, fp, t)
    sa, sap = net_a(x, adj, flags, t), net_a(xp, ap, fp, t)
    for i, p in enumerate(perm):
        torch.testing.assert_close(sxp[i], sx[i, p], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(sap[i], sa[i][p][:, p], atol=1e-5, rtol=1e-4)


def test_outputs_symmetric_zero_diagonal_and_masked():
    x, adj, flags = noisy(SMILES, sigma=0.5)
    t = torch.full((len(SMILES),), 0.5)
    net_x, net_a = make_nets()
    sx, sa = net_x(x, adj, flags, t), net_a(x, adj, flags, t)
    assert sx.shape == x.shape and sa.shape == adj.shape
    torch.testing.assert_close(sa, sa.transpose(1, 2), atol=0, rtol=0)
    assert sa.diagonal(dim1=1, dim2=2).abs().max() == 0
    pad = flags == 0
    assert sx[pad].abs().max() == 0
    assert sa[pad].abs().max() == 0 and sa.transpose(1, 2)[pad].abs().max() == 0
    assert sx[~pad].abs().min() > 0 and sa.abs().sum() > 0


def test_ring_attributes_of_benzene_and_pyridine():
    x, adj, flags = mol_batch(["c1ccccc1O", "c1ccncc1", "C1CC1C(=O)O"])
    cx = lift_graphs(adj, flags)
    attrs = can.ring_attributes(cx, x, adj, n_atom_types=4, max_ring=8)
    order = torch.argsort(cx.face_batch)
    attrs = attrs[order]
    assert attrs.shape == (3, 8)
    torch.testing.assert_close(attrs[:, :6], torch.eye(6)[[3, 3, 0]])  # one-hot sizes 6, 6, 3
    torch.testing.assert_close(attrs[:, 6], torch.tensor([0.5, 0.5, 0.0]))  # kekulised: 3 of 6 bonds double
    torch.testing.assert_close(attrs[:, 7], torch.tensor([0.0, 1.0, 0.0]))  # heteroatoms in the ring


def test_gradients_reach_every_parameter():
    x, adj, flags = noisy(SMILES, sigma=0.2)
    t = torch.full((len(SMILES),), 0.3)
    for net in make_nets(ring_features=True):
        out = net(x, adj, flags, t)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_empty_graphs_do_not_crash():
    x, adj, flags = torch.zeros(2, 9, 4), torch.zeros(2, 9, 9), torch.zeros(2, 9)
    flags[:, :2] = 1.0
    for net in make_nets():
        out = net(x, adj, flags, torch.full((2,), 0.5))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("ring_features", [False, True])
@pytest.mark.parametrize("path", ["fused", "pairs", "padded"])
def test_score_nets_match_the_pair_list_formulation(ring_features, path, monkeypatch):
    """The dense-neighbourhood networks compute the function of the pair-list ones they replaced (same
    parameters, so checkpoints carry over), to 1e-5, on a mixed batch (rings and ring-free molecules, noisy) and
    on a batch without any ring, in the outputs and in every parameter's gradient: with the fused kernel, the
    pair-list torch ops (a CPU without the kernel) and the padded K x K torch ops (a GPU's), the atom pairs
    scored in chunks of 3 graphs."""
    if path == "fused" and not kernels.available():
        pytest.skip(f"fused kernels unavailable: {kernels.unavailable_reason()}")
    if path == "padded":
        monkeypatch.setattr(CANLayer, "_attend", lambda self, h, s, d, k, nb: self._attend_padded(
            h, s, d, nb.down if k == 0 else nb.up, nb))
    monkeypatch.setattr(can, "PAIR_CHUNK", 3)
    t = torch.linspace(0.1, 0.9, len(SMILES))
    ring_free = ["CCN(C)C", "CC(=O)N", "CC#N", "CCO", "OC(=O)CN", "C=CC=O", "CC(C)(C)O", "NCCN"]
    batches = [noisy(SMILES, sigma=0.4, seed=5), mol_batch(ring_free)]
    assert lift_graphs(*batches[0][1:]).num_faces > 0 and lift_graphs(*batches[1][1:]).num_faces == 0
    for net, ref in zip(make_nets(ring_features), (can_reference.score_x, can_reference.score_a)):
        set_use_kernels(net, path == "fused")
        for x, adj, flags in batches:
            net.zero_grad()
            out = net(x, adj, flags, t)
            (out * torch.sin(torch.arange(out.numel()).reshape(out.shape))).sum().backward()
            grads = [p.grad.clone() for p in net.parameters()]
            net.zero_grad()
            want = ref(net, x, adj, flags, t)
            (want * torch.sin(torch.arange(want.numel()).reshape(want.shape))).sum().backward()
            torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
            for (name, p), g in zip(net.named_parameters(), grads):
                torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_score_lifts_once_for_both_networks(monkeypatch):
    """``GraphScore`` lifts the state once and hands the complex to both networks (the same numbers as each
    network lifting its own); networks lifting differently each lift their own."""
    x, adj, flags = noisy(SMILES)
    t = torch.full((len(SMILES),), 0.4)
    net_x, net_a = make_nets()
    sde = VESDE(0.1, 1.0, 100)
    calls = []
    lift = can.lift_neighbourhoods

    def counted(*a, **kw):
        calls.append(a[2:])
        return lift(*a, **kw)

    monkeypatch.setattr(can, "lift_neighbourhoods", counted)
    sx, sa = GraphScore(net_x, net_a, sde, sde)(x, adj, flags, t)
    assert len(calls) == 1
    torch.testing.assert_close(sx, net_x(x, adj, flags, t), atol=0, rtol=0)
    torch.testing.assert_close(sa, net_a(x, adj, flags, t), atol=0, rtol=0)
    calls.clear()
    other = CANScoreA(4, hidden=16, num_layers=2, heads=4, n_atom_types=4, threshold=0.3)
    GraphScore(net_x, other, sde, sde)(x, adj, flags, t)
    assert calls == [(0.5, 8), (0.3, 8)]


class _Recorder(torch.nn.Module):
    time_conditioned = True

    def forward(self, x, adj, flags, t):
        self.t = t
        return torch.ones_like(x)


@pytest.mark.parametrize("sde", [VESDE(0.1, 1.0, 100), VPSDE(0.1, 1.0, 100)])
def test_score_fn_passes_time_to_time_conditioned_nets(sde):
    x, adj, flags = mol_batch(SMILES[:2])
    t = torch.tensor([0.2, 0.7])
    rec = _Recorder()
    score_fn(sde, rec)(x, adj, flags, t)
    assert rec.t is t
    net_x, net_a = make_nets()
    out = score_fn(sde, net_a)(x, adj, flags, t)
    want = net_a(x, adj, flags, t)
    if not isinstance(sde, VESDE):
        want = -want / sde.marginal_prob(torch.zeros_like(t), t)[1][:, None, None]
    torch.testing.assert_close(out, want)


def without_some_upper_neighbours(nb: Neighbourhoods) -> Neighbourhoods:
    """Every third bond without any upper neighbour (an empty softmax), and every bond ordered differently."""
    up = nb.up.clone()
    up[::3] = False
    return replace(nb, up=up, order=torch.flip(nb.order, [0]))


@pytest.mark.parametrize("heads,concat", [(4, True), (2, False)])
def test_attention_forms_agree(heads, concat):
    """The fused kernel (if built), the padded K x K torch ops (a GPU's) and the pair-list ops (a CPU's without
    the kernel) compute one aggregate and its gradients, also for bonds with an empty neighbourhood (a zero
    aggregate) and graphs taken in another order."""
    torch.manual_seed(0)
    layer = CANLayer(7, 8, heads=heads, concat=concat)
    nb = without_some_upper_neighbours(lift_neighbourhoods(*noisy(SMILES * 3, sigma=0.4)[1:]).neighbourhoods)
    n, c = nb.down.shape[0], 8 // heads
    inputs = (3 * torch.randn(n, heads, c), torch.randn(n, heads), torch.randn(n, heads))
    weight = torch.randn(n, heads, c)
    forms = {"pairs": lambda h, s, d, marks, pairs: layer._attend_pairs(h, s, d, pairs),
             "padded": lambda h, s, d, marks, pairs: layer._attend_padded(h, s, d, marks, nb)}
    if kernels.available():
        forms["fused"] = lambda h, s, d, marks, pairs: kernels.can_attend(
            h.reshape(n, -1), s, d, pack_marks(marks), nb.graph_ptr, nb.order, heads, 0.2).reshape(n, heads, c)
    for marks, pairs in ((nb.down, nb.down_pairs), (nb.up, nb.up_pairs)):
        results = {}
        for name, form in forms.items():
            args = [v.clone().requires_grad_() for v in inputs]
            out = form(*args, marks, pairs)
            (out * weight).sum().backward()
            results[name] = [out] + [v.grad for v in args]
        for name in forms:
            for got, want in zip(results[name], results["pairs"]):
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (results["pairs"][0][::3] == 0).all()


@pytest.mark.skipif(not kernels.available(), reason=f"fused kernels unavailable: {kernels.unavailable_reason()}")
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_attention_gradients_equal_torch_path(threads):
    """The fused backward gives the torch path's gradients for the input and every weight of a layer, also when
    the graphs are split over threads."""
    torch.manual_seed(1)
    layer = CANLayer(7, 8, heads=4)
    nb = without_some_upper_neighbours(lift_neighbourhoods(*noisy(SMILES * 40, sigma=0.4)[1:]).neighbourhoods)
    feats = 3 * torch.randn(nb.down.shape[0], 7)
    w = torch.randn(feats.shape[0], 8)
    grads = {}
    set_kernel_threads(layer, threads)
    for fused in (True, False):
        set_use_kernels(layer, fused)
        layer.zero_grad()
        x = feats.clone().requires_grad_()
        assert layer._fused(x) == fused
        (layer(x, nb) * w).sum().backward()
        grads[fused] = [x.grad] + [p.grad.clone() for p in layer.parameters()]
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not kernels.available(), reason=f"fused kernels unavailable: {kernels.unavailable_reason()}")
def test_score_nets_fused_inference_equals_torch_path():
    x, adj, flags = noisy(SMILES, sigma=0.5, seed=4)
    t = torch.linspace(0.05, 0.95, len(SMILES))
    for net in make_nets(ring_features=True):
        with torch.no_grad():
            fused = net(x, adj, flags, t)
            ref = set_use_kernels(net, False)(x, adj, flags, t)
        torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-4)


def test_can_attend_rejects_what_it_cannot_compute():
    if not kernels.available():
        pytest.skip(f"fused kernels unavailable: {kernels.unavailable_reason()}")
    h, s, marks = torch.zeros(3, 8), torch.zeros(3, 2), torch.ones(3, 1, dtype=torch.uint8)
    ptr, order = torch.tensor([0, 3]), torch.tensor([0])
    with pytest.raises(ValueError, match="at most 32 heads"):
        kernels.can_attend(torch.zeros(3, 66), torch.zeros(3, 33), torch.zeros(3, 33), marks, ptr, order, 33, 0.2)
    with pytest.raises(ValueError, match="packed marks must be"):
        kernels.can_attend(h, s, s, marks.bool(), ptr, order, 2, 0.2)
    with pytest.raises(ValueError, match="graph_ptr must end at the 3 cells"):
        kernels.can_attend(h, s, s, marks, torch.tensor([0, 2]), order, 2, 0.2)
    with pytest.raises(ValueError, match="a graph of 9"):
        kernels.can_attend(torch.zeros(9, 8), torch.zeros(9, 2), torch.zeros(9, 2), torch.ones(9, 1, dtype=torch.uint8),
                           torch.tensor([0, 9]), order, 2, 0.2)


def test_training_works_after_sampling_in_the_same_process():
    """Nothing computed under inference mode (sampling) is kept for autograd (training)."""
    x, adj, flags = noisy(SMILES, sigma=0.3)
    t = torch.full((len(SMILES),), 0.5)
    net_x, net_a = make_nets()
    with torch.inference_mode():
        net_a(x, adj, flags, t)
    net_a(x, adj, flags, t).sum().backward()
    assert all(p.grad is not None for p in net_a.parameters())
