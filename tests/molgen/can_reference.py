"""The cell-attention score networks as they were computed before the dense-neighbourhood formulation (commit
1a87dd3): the ``lift_graphs`` complex of the noisy graph, neighbourhoods as (target, source) pair lists, the
attention through torch_geometric's ``softmax`` / ``scatter``, the pair score through gathers along the node
axis. Evaluated with the parameters of ``molgen.nets.can``'s modules, as the oracle of the tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_geometric.utils import scatter, softmax

from molgen.complexes import lift_graphs
from molgen.nets.can import ring_attributes, time_embedding
from molgen.nets.gdss import normalize_adj


def _attend(layer, h, s_src, s_dst, index):
    tgt, src = index[0], index[1]
    score = layer.att_activation(s_src.index_select(0, src) + s_dst.index_select(0, tgt))
    alpha = softmax(score, tgt, num_nodes=h.shape[0])
    msg = h.index_select(0, src) * alpha.unsqueeze(-1)
    return scatter(msg, tgt, dim=0, dim_size=h.shape[0], reduce="sum")


def can_layer(layer, x, down_index, up_index):
    n, o, nh, c = x.shape[0], layer.out_channels, layer.heads, layer.head_dim
    w = layer.lin.weight
    z = x @ w.t()
    z_down, z_up, z_skip = z[:, :o], z[:, o:2 * o], z[:, 2 * o:]
    hd, hu = z_down.reshape(n, nh, c), z_up.reshape(n, nh, c)
    m = (_attend(layer, hd, (hd * layer.att_src[0]).sum(-1), (hd * layer.att_dst[0]).sum(-1), down_index)
         + _attend(layer, hu, (hu * layer.att_src[1]).sum(-1), (hu * layer.att_dst[1]).sum(-1), up_index))
    m = m.reshape(n, o) if layer.concat else m.mean(1)
    if layer.skip_connection:
        m = m + z_skip
    return {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, None: lambda v: v}[layer.update](m)


def _lift(lift, x0, edge_index):
    f = lift.in_channels
    pu, pv = x0 @ lift.att[:f], x0 @ lift.att[f:]
    u, v = edge_index[0], edge_index[1]
    s = lift.activation(pu[u] + pv[v])
    return 0.5 * (s + lift.activation(pu[v] + pv[u])) if lift.symmetric else s


def trunk(tr, x, adj, flags, t):
    b, n, _ = x.shape
    temb = tr.time_mlp(time_embedding(t.reshape(-1).expand(b).to(x.dtype), tr.hidden))
    mask = flags.unsqueeze(-1)
    h = (tr.node_in(x) + temb.unsqueeze(1)) * mask
    hs = [h]
    a_hat = normalize_adj(adj)
    for gcn in tr.gcns:
        h = torch.tanh(a_hat @ gcn(h)) * mask
        hs.append(h)
    h = (tr.node_out(torch.cat(hs, -1)) * mask).reshape(b * n, -1)
    cx = lift_graphs(adj, flags, threshold=tr.threshold, max_ring=tr.max_ring)
    ei = cx.edge_index
    a_uv = adj.reshape(-1)[ei[0] * n + ei[1] % n].unsqueeze(1)
    parts = [_lift(tr.lift, h, ei), a_uv, temb[cx.edge_batch]]
    if tr.ring_features:
        emb = tr.ring_mlp(ring_attributes(cx, x, adj, tr.n_atom_types, tr.max_ring, tr.bond_unit))
        inc = cx.B2.coalesce().indices()
        count = scatter(torch.ones_like(inc[0], dtype=x.dtype), inc[0], dim=0, dim_size=ei.shape[1])
        summed = scatter(emb[inc[1]], inc[0], dim=0, dim_size=ei.shape[1])
        parts.append(torch.cat([summed / count.clamp(min=1.0).unsqueeze(1), count.unsqueeze(1)], dim=1))
    e = tr.edge_in(torch.cat(parts, dim=1))
    for layer, norm in zip(tr.layers, tr.norms):
        e = norm(e + can_layer(layer, e, cx.down_index, cx.up_index))
    return h, e, temb, cx


def _pool(e, edge_index, num_nodes):
    return (scatter(e, edge_index[0], dim=0, dim_size=num_nodes)
            + scatter(e, edge_index[1], dim=0, dim_size=num_nodes))


def score_x(net, x, adj, flags, t):
    b, n, _ = x.shape
    h, e, temb, cx = trunk(net.trunk, x, adj, flags, t)
    node_t = temb.unsqueeze(1).expand(b, n, -1).reshape(b * n, -1)
    out = net.final(torch.cat([h, _pool(e, cx.edge_index, b * n), node_t], dim=1)).reshape(b, n, -1)
    return out * flags.unsqueeze(-1)


def score_a(net, x, adj, flags, t):
    b, n, _ = x.shape
    h, e, temb, cx = trunk(net.trunk, x, adj, flags, t)
    g = net.node(torch.cat([h, _pool(e, cx.edge_index, b * n)], dim=1)).reshape(b, n, -1)
    iu, ju = torch.triu_indices(n, n, 1)
    p = iu.shape[0]
    gs = net.pair_sum(g)
    a_p = adj[:, iu, ju].unsqueeze(-1)
    z = (gs[:, iu] + gs[:, ju] + a_p * net.pair_adj.weight[:, 0] + net.pair_prod(g[:, iu] * g[:, ju])
         + net.pair_time(temb).unsqueeze(1))
    z = F.silu(z)
    back = torch.full((n, n), p, dtype=torch.long)
    back[iu, ju] = back[ju, iu] = torch.arange(p)
    u, v = cx.edge_index[0] % n, cx.edge_index[1] % n
    z = z.reshape(b * p, -1).index_add(0, cx.edge_batch * p + back[u, v], net.edge_to_pair(e)).reshape(b, p, -1)
    score = net.final(z) * (flags[:, iu] * flags[:, ju]).unsqueeze(-1)
    return torch.cat([score, score.new_zeros(b, 1, 1)], dim=1)[:, back.reshape(-1)].reshape(b, n, n)
