"""The network-side lift (``molgen.neighbourhoods``) against the full complex of ``lift_graphs``: the same bonds,
rings and neighbourhoods, on clean molecules, noisy graphs and degenerate batches."""
from __future__ import annotations

import pytest
import torch

from molgen.complexes import lift_graphs
from molgen.neighbourhoods import Neighbourhoods, lift_neighbourhoods
from molgen.sde import sym_noise


def graphs(b: int, n: int, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    flags = (torch.rand(b, n, generator=g) < 0.85).float()
    adj = (1.0 + scale * sym_noise((b, n, n), generator=g)) * (torch.rand(b, n, n, generator=g) < 0.4).float()
    adj = torch.maximum(adj.triu(1), adj.triu(1).transpose(1, 2))
    return adj * flags.unsqueeze(1) * flags.unsqueeze(2), flags


@pytest.mark.parametrize("scale,n,max_ring", [(0.0, 9, 8), (0.5, 9, 8), (1.0, 9, 6), (1.0, 14, 8)])
def test_lift_neighbourhoods_equals_lift_graphs(scale, n, max_ring):
    adj, flags = graphs(64, n, scale, seed=int(10 * scale) + n)
    full = lift_graphs(adj, flags, threshold=0.5, max_ring=max_ring)
    cx = lift_neighbourhoods(adj, flags, threshold=0.5, max_ring=max_ring)
    nb = cx.neighbourhoods
    assert full.num_faces > 0 and full.num_edges > 0
    for name in ("edge_index", "edge_batch", "face_nodes", "face_size", "face_batch", "face_edges"):
        assert torch.equal(getattr(cx, name), getattr(full, name)), name
    assert torch.equal(nb.down_pairs, full.down_index) and torch.equal(nb.up_pairs, full.up_index)
    i, j = full.edge_local
    p = n * (n - 1) // 2
    pair_of = {(a, b): k for k, (a, b) in enumerate(zip(*torch.triu_indices(n, n, 1).tolist()))}
    assert cx.pair_rows.tolist() == [g * p + pair_of[(a, b)] for g, a, b in
                                     zip(full.edge_batch.tolist(), i.tolist(), j.tolist())]
    counts = torch.bincount(full.edge_batch, minlength=64)
    assert torch.equal(nb.graph_ptr[1:] - nb.graph_ptr[:-1], counts) and nb.down.shape[1] == counts.max()
    assert torch.equal(counts[nb.order], counts.sort(stable=True).values)
    assert torch.equal(nb.first + nb.slot, torch.arange(full.num_edges))
    again = Neighbourhoods.of_complex(full)
    assert torch.equal(again.down, nb.down) and torch.equal(again.up, nb.up)


def test_lift_neighbourhoods_of_graphs_without_bonds_or_rings():
    flags = torch.zeros(3, 9)
    flags[:, :2] = 1.0
    cx = lift_neighbourhoods(torch.zeros(3, 9, 9), flags)
    assert cx.num_edges == 0 and cx.num_faces == 0 and cx.neighbourhoods.down.shape == (0, 0)
    adj = torch.zeros(3, 9, 9)
    adj[0, 0, 1] = adj[0, 1, 0] = 1.0
    cx = lift_neighbourhoods(adj, flags)
    assert cx.num_edges == 1 and cx.num_faces == 0
    assert cx.neighbourhoods.down.tolist() == [[True]] and cx.neighbourhoods.up.tolist() == [[True]]
    assert cx.neighbourhoods.graph_ptr.tolist() == [0, 1, 1, 1]


def test_lift_neighbourhoods_rejects_what_lift_graphs_rejects():
    adj, flags = graphs(2, 9, 0.5, seed=0)
    bad = adj.clone()
    bad[0, 0, 1] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        lift_neighbourhoods(bad, flags)
    with pytest.raises(ValueError, match="NaN"):
        lift_neighbourhoods(adj * float("nan"), flags)
