"""Cell Attention Networks (Giusti et al. 2023) and two cell-complex score networks for GDSS.

Molecular graphs are lifted to 2-dimensional cell complexes (atoms are 0-cells, bonds 1-cells, chordless rings
2-cells, ``molgen.complexes``). A CAN layer updates edge (1-cell) states by multi-head attention over two
neighbourhoods of each edge: the lower one (edges sharing an atom) and the upper one (edges sharing a ring), each
with its own weights and attention vectors; the two aggregates and a linear skip of the input are summed.

Layers (one call handles a whole batch of complexes):

- ``CANLayer``: the attention layer; with the same configuration it computes the function of topomodelx 0.0.1's
  ``CANLayer`` (version "v1", GAT-style attention), see the class docstring for where they differ;
- ``AttentionLift``: node-to-edge lift, per head a score of the concatenated endpoint features (topomodelx's
  ``MultiHeadLiftLayer``); with ``symmetric=True`` the score is averaged over both endpoint orders, which makes it
  independent of the (u < v) orientation of the edge and hence the score networks permutation equivariant.

Score networks (GDSS interface plus time, ``forward(x, adj, flags, t)``, ``time_conditioned = True``):

- ``CANScoreX`` -> (B, N, F) node-feature score; ``CANScoreA`` -> (B, N, N) symmetric adjacency score with a zero
  diagonal. Both read the complex of the *current noisy* adjacency, thresholded (``lift_complex``:
  ``molgen.neighbourhoods.lift_neighbourhoods(A_t, flags, threshold)``). During sampling no molecule exists,
  only the noisy state (X_t, A_t); the thresholded graph is the one structure the network can see at every
  step, in training and in sampling alike, so it is the complex the network is given. The continuous A_t still
  enters as a node-level dense GCN input and as an edge / pair input. Time enters as a sinusoidal embedding of
  t. ``forward(..., cx)`` takes a complex lifted by the caller: the score of a state (``nets.score.GraphScore``)
  lifts it once for both networks (``lift_key`` says when two networks lift alike).

Neighbourhoods are small dense boolean matrices per graph (``molgen.neighbourhoods.Neighbourhoods``): the bonds
of each graph in ``K`` slots, as GDSS's dense tensors hold atoms. On the CPU the attention aggregate is a fused
C++ kernel (``kernels.can_attend``, with its backward) computing one ``K x K`` score matrix per graph, vectorised
across 16 graphs of about the same size; on other devices the same dense matrices are batched torch ops; a CPU
without the kernel (no compiler) attends over pair lists (work in proportion to the neighbours, not to ``K^2``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter, softmax

from ..neighbourhoods import CellNeighbourhoods, Neighbourhoods, lift_neighbourhoods
from . import kernels
from .gdss import kernel_threads, normalize_adj, use_kernels

if TYPE_CHECKING:
    from ..config import RunConfig

Tensor = torch.Tensor

PAIR_CHUNK = 128
"""Graphs whose atom pairs ``CANScoreA`` scores at once on a CPU (their (graphs, pairs, hidden) tensors fit its
cache; the same numbers as all at once)."""


class CANLayer(nn.Module):
    """One Cell Attention layer on r-cells (here edges) with lower and upper neighbourhoods.

    For each neighbourhood k in {down, up}, with W_k (in -> heads * c), attention vectors a_k^src, a_k^dst (heads, c)::

        h = x W_k;   e_ij = act(a_k^src . h_j + a_k^dst . h_i)    (per head, j a neighbour of target i)
        alpha_ij = softmax_j(e_ij) over the neighbours of i;   m_i^k = sum_j alpha_ij h_j

    then ``out = update(m^down + m^up + x W_skip)``, heads concatenated (``concat``) or averaged.

    ``forward(x (E, in), nb) -> (E, out)`` with ``nb`` the ``Neighbourhoods`` of the E cells, which must contain
    every self-loop wanted (the lifting's do: every edge is its own lower and upper neighbour, so each softmax is
    over a non-empty set even for edges in no ring; a cell without neighbours gets a zero aggregate).

    Relation to topomodelx 0.0.1 ``CANLayer(version="v1", add_self_loops=True, aggr_func="sum")`` given the
    unsigned Laplacians of the same complex: identical function, weights mapped by ``copy_from_topomodelx`` in the
    tests, except (1) topomodelx normalises by a max over *all* messages before the exp (mathematically the same
    softmax, but it underflows to zero attention for targets whose scores lie ~90 below the global max; here the
    max is per target); (2) topomodelx returns zeros for a neighbourhood matrix without non-zero values (a
    ring-free molecule's up-Laplacian) although it would otherwise add self-loops, so a ring-free molecule alone
    gets no upper term while the same molecule in a batch with a ring gets its self-attention term; here the
    upper self-loop is always present, which makes batches consistent; (3) topomodelx scales the skip by
    1 + 1e-6.
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1, concat: bool = True,
                 skip_connection: bool = True, att_activation: Callable[[Tensor], Tensor] | None = None,
                 update: str | None = "relu", dropout: float = 0.0):
        super().__init__()
        if out_channels % heads:
            raise ValueError(f"out_channels {out_channels} is not divisible by heads {heads}")
        if update not in ("relu", "sigmoid", "tanh", None):
            raise ValueError(f"unknown update {update!r}")
        self.in_channels, self.out_channels, self.heads, self.concat = in_channels, out_channels, heads, concat
        self.head_dim = out_channels // heads
        self.skip_dim = out_channels if concat else self.head_dim
        self.skip_connection, self.update, self.dropout = skip_connection, update, dropout
        self.att_activation = att_activation if att_activation is not None else nn.LeakyReLU(0.2)
        # W_down, W_up (and W_skip) in one weight: rows [down | up | skip]
        self.lin = nn.Linear(in_channels, 2 * out_channels + (self.skip_dim if skip_connection else 0), bias=False)
        self.att_src = nn.Parameter(torch.empty(2, heads, self.head_dim))
        self.att_dst = nn.Parameter(torch.empty(2, heads, self.head_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        for k in range(2):
            nn.init.xavier_uniform_(self.att_src.data[k])
            nn.init.xavier_uniform_(self.att_dst.data[k])

    def _attend_padded(self, h: Tensor, s_src: Tensor, s_dst: Tensor, marks: Tensor, nb: Neighbourhoods) -> Tensor:
        """Attention aggregate (E, heads, c) of h (E, heads, c) over the neighbourhood ``marks`` (E, K), given the
        per-cell source and target scores a^src . h and a^dst . h (E, heads): the cells of each graph padded to
        K slots, one K x K score matrix per graph and head (the form for a GPU)."""
        b, k, rows = nb.batch_size, marks.shape[1], nb.padded_rows

        def padded(v: Tensor) -> Tensor:
            return v.new_zeros((b * k,) + v.shape[1:]).index_copy(0, rows, v).reshape((b, k) + v.shape[1:])

        mask = padded(marks).unsqueeze(-1)  # B, K (target), K (source), 1
        score = self.att_activation(padded(s_dst).unsqueeze(2) + padded(s_src).unsqueeze(1))  # B, K, K, heads
        score = score.masked_fill(~mask, torch.finfo(score.dtype).min)
        alpha = torch.softmax(score, dim=2).masked_fill(~mask, 0.0)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        out = torch.einsum("btsh,bshc->bthc", alpha, padded(h))
        return out.reshape((b * k,) + h.shape[1:]).index_select(0, rows)

    def _attend_pairs(self, h: Tensor, s_src: Tensor, s_dst: Tensor, index: Tensor) -> Tensor:
        """The same aggregate over the (target, source) pair list ``index`` (the form for a CPU without the fused
        kernel: work in proportion to the pairs)."""
        tgt, src = index[0], index[1]
        score = self.att_activation(s_src.index_select(0, src) + s_dst.index_select(0, tgt))
        alpha = softmax(score, tgt, num_nodes=h.shape[0])
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        msg = h.index_select(0, src) * alpha.unsqueeze(-1)
        return scatter(msg, tgt, dim=0, dim_size=h.shape[0], reduce="sum")

    def _attend(self, h: Tensor, s_src: Tensor, s_dst: Tensor, k: int, nb: Neighbourhoods) -> Tensor:
        """Aggregate over neighbourhood k (0: down, 1: up) with the torch ops suiting the device."""
        if h.device.type == "cpu":
            return self._attend_pairs(h, s_src, s_dst, nb.down_pairs if k == 0 else nb.up_pairs)
        return self._attend_padded(h, s_src, s_dst, nb.down if k == 0 else nb.up, nb)

    def _fused(self, x: Tensor) -> bool:
        """The fused CPU aggregate (``kernels.can_attend``, forward and backward) replaces the torch ops when no
        attention dropout is active and the attention activation is a leaky ReLU."""
        return (not (self.training and self.dropout > 0) and isinstance(self.att_activation, nn.LeakyReLU)
                and use_kernels(self, x))

    def forward(self, x: Tensor, nb: Neighbourhoods) -> Tensor:
        n, o, nh = x.shape[0], self.out_channels, self.heads
        # the scores a . (W x) are linear in x: their weights a W are appended to the one matmul
        w = self.lin.weight
        att = torch.stack([self.att_src, self.att_dst], 1)  # (neighbourhood, src / dst, heads, c)
        w_att = torch.einsum("kshc,khci->kshi", att, w[:2 * o].reshape(2, nh, self.head_dim, -1))
        z = x @ torch.cat([w, w_att.reshape(4 * nh, -1)]).t()
        # one split (its backward is one cat): messages down / up, skip, scores (down src, down dst, up src, up dst)
        z_down, z_up, z_skip, d_src, d_dst, u_src, u_dst = z.split([o, o, w.shape[0] - 2 * o] + [nh] * 4, dim=1)
        if self._fused(x):
            slope, threads = self.att_activation.negative_slope, kernel_threads(self)
            m = kernels.can_attend(z_down, d_src, d_dst, nb.down_packed, nb.graph_ptr, nb.order, nh, slope,
                                   threads=threads)
            m = kernels.can_attend(z_up, u_src, u_dst, nb.up_packed, nb.graph_ptr, nb.order, nh, slope, out=m,
                                   threads=threads)
            m = m.reshape(n, nh, self.head_dim)
        else:
            m = (self._attend(z_down.reshape(n, nh, self.head_dim), d_src, d_dst, 0, nb)
                 + self._attend(z_up.reshape(n, nh, self.head_dim), u_src, u_dst, 1, nb))
        m = m.reshape(n, o) if self.concat else m.mean(1)
        if self.skip_connection:
            m = m + z_skip
        if self.update == "relu":
            return F.relu(m)
        if self.update == "sigmoid":
            return torch.sigmoid(m)
        if self.update == "tanh":
            return torch.tanh(m)
        return m


class AttentionLift(nn.Module):
    """Node-to-edge attention lift: per head h, ``act([x_u, x_v] . a_h)`` for edge (u, v), read out over heads.

    ``readout`` "cat" keeps the ``heads`` scores as edge channels ("sum", "avg", "max" reduce them to one);
    ``symmetric=True`` averages ``act`` over both endpoint orders, so the edge signal does not depend on which
    endpoint is called u. With ``symmetric=False`` this is topomodelx's ``MultiHeadLiftLayer`` (edges taken from
    the indices of its sparse ``adjacency_0``). ``forward(x0 (N, F), edge_index (2, E), x1 (E, F1) | None)`` ->
    (E, heads or 1 [+ F1]), with x1 concatenated after the lifted signal.
    """

    def __init__(self, in_channels: int, heads: int = 1, activation: Callable[[Tensor], Tensor] = torch.relu,
                 readout: str = "cat", dropout: float = 0.0, symmetric: bool = True):
        super().__init__()
        if readout not in ("cat", "sum", "avg", "max"):
            raise ValueError(f"unknown readout {readout!r}")
        self.in_channels, self.heads, self.readout = in_channels, heads, readout
        self.activation, self.dropout, self.symmetric = activation, dropout, symmetric
        self.att = nn.Parameter(torch.empty(2 * in_channels, heads))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.att, gain=nn.init.calculate_gain("relu"))

    @property
    def out_channels(self) -> int:
        return self.heads if self.readout == "cat" else 1

    def forward(self, x0: Tensor, edge_index: Tensor, x1: Tensor | None = None) -> Tensor:
        f = self.in_channels
        pu = x0 @ self.att[:f]  # the score splits into an endpoint-u part and an endpoint-v part
        pv = x0 @ self.att[f:]
        u, v = edge_index[0], edge_index[1]
        s = self.activation(pu.index_select(0, u) + pv.index_select(0, v))
        if self.symmetric:
            s = 0.5 * (s + self.activation(pu.index_select(0, v) + pv.index_select(0, u)))
        if self.readout == "sum":
            s = s.sum(1, keepdim=True)
        elif self.readout == "avg":
            s = s.mean(1, keepdim=True)
        elif self.readout == "max":
            s = s.max(1, keepdim=True).values
        s = F.dropout(s, self.dropout, training=self.training)
        return s if x1 is None else torch.cat([s, x1], dim=1)


def time_embedding(t: Tensor, dim: int, max_freq: float = 1000.0) -> Tensor:
    """Sinusoidal features (B, dim) of t in [0, 1]: sin and cos at frequencies geometric in [1, max_freq]."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half, device=t.device, dtype=t.dtype))
    ang = t.reshape(-1, 1) * freqs
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


def _mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with SiLU in between (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        if i:
            layers.append(nn.SiLU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def ring_attributes(cx, x: Tensor, adj: Tensor, n_atom_types: int, max_ring: int,
                    bond_unit: float = 1.0) -> Tensor:
    """2-cell attributes (F_rings, max_ring) of the current state: one-hot ring size 3..max_ring, the fraction
    of ring bonds with round(A_t / bond_unit) == 2 (double bonds: an aromaticity proxy for kekulised rings), and a
    heteroatom score sum_{ring atoms} (1 - clamp(x[:, 0], 0, 1)) with channel 0 = carbon of the atom-type block."""
    b, n, _ = adj.shape
    fn, size = cx.face_nodes, cx.face_size
    nf, length = fn.shape
    if nf == 0:
        return adj.new_zeros(0, max_ring)
    valid = fn >= 0
    node = fn.clamp(min=0)
    onehot = F.one_hot((size - 3).clamp(0, max_ring - 3), max_ring - 2).to(adj.dtype)
    # ring bonds: consecutive ring atoms in cycle order, closing the cycle at position size - 1
    pos = torch.arange(length, device=fn.device)
    nxt_pos = torch.where(pos + 1 < size.unsqueeze(1), pos + 1, torch.zeros_like(pos))
    nxt = node.gather(1, nxt_pos)
    bond = adj.reshape(-1).index_select(0, (node * n + nxt % n).reshape(-1)).reshape(nf, length)
    double = ((torch.round(bond / bond_unit) == 2) & valid).to(adj.dtype).sum(1) / size.to(adj.dtype)
    carbon = x[..., :n_atom_types].reshape(b * n, -1)[:, 0].clamp(0.0, 1.0)
    hetero = ((1.0 - carbon.index_select(0, node.reshape(-1)).reshape(nf, length)) * valid).sum(1)
    return torch.cat([onehot, double.unsqueeze(1), hetero.unsqueeze(1)], dim=1)


class _CellEncoder(nn.Module):
    """Shared trunk of both score networks: node states from X_t, A_t and t, edge states from a CAN stack.

    - time: sinusoidal embedding of t -> MLP -> ``temb`` (B, hidden), added to the node input and given to edges;
    - nodes: h_0 = lin(X_t) + temb, then ``gcn_depth`` dense GCN layers over the continuous A_t (GDSS's
      normalisation), h_{l+1} = tanh(GCN(h_l)); node state = lin([h_0, ..., h_L]);
    - complex: the lift of the thresholded A_t (``CellNeighbourhoods``), given by the caller;
    - edges: [AttentionLift(node states), A_t[u, v], temb, ring input] -> lin -> e_0, then per CAN layer
      e <- LayerNorm(e + CAN(e)); with ``ring_features`` the ring input is the mean over the rings of an edge of
      an embedding of ``ring_attributes`` plus the number of such rings (zero for edges in no ring).
    """

    def __init__(self, max_feat_num: int, hidden: int, num_layers: int, heads: int, gcn_depth: int,
                 ring_features: bool, n_atom_types: int, max_ring: int, threshold: float, bond_unit: float):
        super().__init__()
        self.hidden, self.ring_features, self.n_atom_types = hidden, ring_features, n_atom_types
        self.max_ring, self.threshold, self.bond_unit = max_ring, threshold, bond_unit
        self.time_mlp = _mlp([hidden, hidden, hidden])
        self.node_in = nn.Linear(max_feat_num, hidden)
        self.gcns = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(gcn_depth))
        self.node_out = nn.Linear(hidden * (gcn_depth + 1), hidden)
        self.lift = AttentionLift(hidden, heads=hidden, symmetric=True)
        ring_dim = 0
        if ring_features:
            self.ring_mlp = _mlp([max_ring, hidden, hidden])
            ring_dim = hidden + 1
        self.edge_in = nn.Linear(hidden + 1 + hidden + ring_dim, hidden)
        self.layers = nn.ModuleList(CANLayer(hidden, hidden, heads=heads) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor, t: Tensor, cx: CellNeighbourhoods):
        """(node states (B*N, hidden), edge states (E, hidden), temb (B, hidden))."""
        b, n, _ = x.shape
        temb = self.time_mlp(time_embedding(t.reshape(-1).expand(b).to(x.dtype), self.hidden))
        mask = flags.unsqueeze(-1)
        h = (self.node_in(x) + temb.unsqueeze(1)) * mask
        hs = [h]
        if self.gcns:
            a_hat = normalize_adj(adj)
            for gcn in self.gcns:
                h = torch.tanh(a_hat @ gcn(h)) * mask
                hs.append(h)
        h = (self.node_out(torch.cat(hs, -1)) * mask).reshape(b * n, -1)

        ei = cx.edge_index
        a_uv = adj.reshape(-1).index_select(0, ei[0] * n + ei[1] % n).unsqueeze(1)
        parts = [self.lift(h, ei), a_uv, temb.index_select(0, cx.edge_batch)]
        if self.ring_features:
            parts.append(self._ring_input(cx, x, adj))
        e = self.edge_in(torch.cat(parts, dim=1))
        for layer, norm in zip(self.layers, self.norms):
            e = norm(e + layer(e, cx.neighbourhoods))
        return h, e, temb

    def _ring_input(self, cx: CellNeighbourhoods, x: Tensor, adj: Tensor) -> Tensor:
        """(E, hidden + 1): mean over the rings of each edge of the ring embedding, and the number of rings."""
        emb = self.ring_mlp(ring_attributes(cx, x, adj, self.n_atom_types, self.max_ring, self.bond_unit))
        num_edges, length = cx.num_edges, cx.face_edges.shape[1]
        rows = torch.where(cx.face_edges >= 0, cx.face_edges, num_edges).reshape(-1)  # padding: a spare row
        count = x.new_zeros(num_edges + 1).index_add_(0, rows, x.new_ones(rows.shape))[:num_edges]
        summed = emb.new_zeros(num_edges + 1, emb.shape[1]).index_add_(
            0, rows, emb.unsqueeze(1).expand(-1, length, -1).reshape(-1, emb.shape[1]))[:num_edges]
        return torch.cat([summed / count.clamp(min=1.0).unsqueeze(1), count.unsqueeze(1)], dim=1)


def _pool_to_nodes(e: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """|B1| e: the sum of the states of the edges incident to each node."""
    return e.new_zeros(num_nodes, e.shape[1]).index_add_(0, edge_index[0], e).index_add_(0, edge_index[1], e)


class _CANScore(nn.Module):
    """What both cell-attention score networks share: the time-conditioned trunk over the lifted complex.

    Args: ``max_feat_num`` F; ``hidden`` width of node / edge / time states; ``num_layers`` CAN layers;
    ``heads`` attention heads (divides ``hidden``); ``gcn_depth`` dense GCN layers over A_t in the node branch;
    ``ring_features`` 2-cell attributes as an edge input; ``n_atom_types`` size of the atom-type block of X
    (channel 0 = carbon); ``max_ring`` longest ring lifted; ``threshold`` on A_t for the lifted bonds;
    ``bond_unit`` bond order 1 in A's scale (1 for raw orders, 1/3 for "unit").

    ``forward(x, adj, flags, t, cx=None)``: ``cx`` the ``lift_complex(adj, flags)`` of this state when the
    caller has it (one lift for both networks of a score); lifted here otherwise.
    """

    time_conditioned = True
    kernel_bound = False
    """Much of its CPU work is torch ops: torch gets the run's threads (``build.configure_threads``)."""

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "_CANScore":
        """The network of ``model.can``, its atom-type block and bond unit read from ``data``; input: X and the
        derived features (``data.input_feat_num``), output (CANScoreX): the score of X."""
        c, d = cfg.model.can, cfg.data
        kw = {"out_feat": d.max_feat_num} if cls is CANScoreX else {}
        return cls(d.input_feat_num("x" if cls is CANScoreX else "adj"), **kw, hidden=c.hidden, num_layers=c.num_layers, heads=c.heads, gcn_depth=c.gcn_depth,
                   ring_features=c.ring_features, n_atom_types=d.feature_spec.blocks[0].width, max_ring=c.max_ring,
                   threshold=c.threshold, bond_unit=d.bond_unit)

    def __init__(self, max_feat_num: int, hidden: int = 24, num_layers: int = 3, heads: int = 4,
                 gcn_depth: int = 2, ring_features: bool = False, n_atom_types: int | None = None,
                 max_ring: int = 8, threshold: float = 0.5, bond_unit: float = 1.0):
        super().__init__()
        self.nfeat = max_feat_num
        self.trunk = _CellEncoder(max_feat_num, hidden, num_layers, heads, gcn_depth, ring_features,
                                  n_atom_types or max_feat_num, max_ring, threshold, bond_unit)

    @property
    def lift_key(self) -> tuple[str, float, int]:
        """Networks with equal keys read the same complex of a state."""
        return ("lift_neighbourhoods", self.trunk.threshold, self.trunk.max_ring)

    def lift_complex(self, adj: Tensor, flags: Tensor) -> CellNeighbourhoods:
        """The complex this network reads of the noisy adjacency ``adj`` (B, N, N)."""
        return lift_neighbourhoods(adj, flags, self.trunk.threshold, self.trunk.max_ring)


class CANScoreX(_CANScore):
    """Time-conditioned node-feature score s(X_t, A_t, t) (B, N, F) from a cell-attention trunk.

    Output: MLP([node state, |B1|-pooled edge states, temb]) per node, masked by the flags. Args: ``_CANScore``;
    ``out_feat`` the score's width when the input has more columns than X (derived features; default F).
    """

    def __init__(self, max_feat_num: int, hidden: int = 24, out_feat: int | None = None, **kw):
        super().__init__(max_feat_num, hidden, **kw)
        self.final = _mlp([3 * hidden, 2 * hidden, out_feat or max_feat_num])

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor, t: Tensor,
                cx: CellNeighbourhoods | None = None) -> Tensor:
        b, n, _ = x.shape
        cx = self.lift_complex(adj, flags) if cx is None else cx
        h, e, temb = self.trunk(x, adj, flags, t, cx)
        pooled = _pool_to_nodes(e, cx.edge_index, b * n)
        node_t = temb.unsqueeze(1).expand(b, n, -1).reshape(b * n, -1)
        out = self.final(torch.cat([h, pooled, node_t], dim=1)).reshape(b, n, -1)
        return out * flags.unsqueeze(-1)


class CANScoreA(_CANScore):
    """Time-conditioned adjacency score s(X_t, A_t, t) (B, N, N), symmetric with a zero diagonal, masked.

    Every atom pair i < j is scored: z_ij = silu(lin([g_i + g_j, g_i * g_j, A_t[i, j], temb])) with node states
    g = lin([node state, |B1|-pooled edge states]); on the current (thresholded) bonds the CAN edge state is added,
    z_ij += lin(e_ij); score_ij = MLP(z_ij). The inputs are symmetric in (i, j), so the score is symmetric by
    construction; it is computed on the pairs i < j and mirrored, the diagonal is zero.

    Args: ``_CANScore`` (``max_feat_num`` only sizes the node input).
    """

    def __init__(self, max_feat_num: int, hidden: int = 24, **kw):
        super().__init__(max_feat_num, hidden, **kw)
        self.node = nn.Linear(2 * hidden, hidden)
        # first pair layer W [g_i + g_j, g_i * g_j, A_t[i, j], temb], split by input block so that the
        # g_i + g_j and temb blocks are computed per node / per graph instead of per pair
        self.pair_sum = nn.Linear(hidden, hidden, bias=False)
        self.pair_prod = nn.Linear(hidden, hidden)
        self.pair_adj = nn.Linear(1, hidden, bias=False)
        self.pair_time = nn.Linear(hidden, hidden, bias=False)
        self.edge_to_pair = nn.Linear(hidden, hidden)
        self.final = _mlp([hidden, hidden, 1])

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor, t: Tensor,
                cx: CellNeighbourhoods | None = None) -> Tensor:
        b, n, _ = x.shape
        cx = self.lift_complex(adj, flags) if cx is None else cx
        h, e, temb = self.trunk(x, adj, flags, t, cx)
        g = self.node(torch.cat([h, _pool_to_nodes(e, cx.edge_index, b * n)], dim=1)).reshape(b, n, -1)
        end_i, end_j, upper, dense = _pair_maps(n, g)
        # per node: its share of the g_i + g_j block and of the time block of the first pair layer
        node_terms = self.pair_sum(g) + 0.5 * self.pair_time(temb).unsqueeze(1)
        a_p = adj.reshape(b, n * n).index_select(1, upper)  # A_t[i, j] (B, P)
        on_bonds = self.edge_to_pair(e)
        p, no_grad = end_i.shape[0], not torch.is_grad_enabled()
        chunk = PAIR_CHUNK if g.device.type == "cpu" else b
        # the bonds of each chunk of graphs: pair rows are sorted, so each chunk's are one run
        cuts = torch.searchsorted(cx.pair_rows, torch.arange(0, b + chunk, chunk, device=g.device).clamp(max=b) * p)
        cuts = cuts.tolist()
        parts = zip(g.split(chunk), node_terms.split(chunk), a_p.split(chunk),
                    on_bonds.split([hi - lo for lo, hi in zip(cuts[:-1], cuts[1:])]))
        scores = []
        for k, (gc, nt, ap, bonds) in enumerate(parts):
            z = self.pair_prod((end_i @ gc) * (end_j @ gc))  # gathers along the node axis as one-hot matmuls
            z.add_((end_i + end_j) @ nt).addcmul_(ap.unsqueeze(-1), self.pair_adj.weight[:, 0])
            z = F.silu(z, inplace=no_grad).reshape(-1, z.shape[-1])
            z.index_add_(0, cx.pair_rows[cuts[k]:cuts[k + 1]] - k * chunk * p, bonds)  # the current bonds' states
            scores.append(self.final(z).reshape(gc.shape[0], p))
        pair_mask = (flags @ end_i.t()) * (flags @ end_j.t())
        return ((torch.cat(scores) * pair_mask) @ dense).reshape(b, n, n)


def _pair_maps(n: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The pairs i < j of n nodes (``torch.triu_indices`` order), with one-hot maps as matrices so that gathers
    along the node axis are small matmuls: ends (P, N) (row p selects node i, resp. j, of pair p), the flat
    index i * n + j (P,), and ``dense`` (P, N * N) placing pair p at (i, j) and (j, i)."""
    iu, ju = torch.triu_indices(n, n, 1, device=like.device)
    p = iu.shape[0]
    rows = torch.arange(p, device=like.device)
    end_i = like.new_zeros(p, n).index_put_((rows, iu), like.new_ones(()))
    end_j = like.new_zeros(p, n).index_put_((rows, ju), like.new_ones(()))
    dense = like.new_zeros(p, n * n).index_put_((rows, iu * n + ju), like.new_ones(()))
    dense.index_put_((rows, ju * n + iu), like.new_ones(()))
    return end_i, end_j, iu * n + ju, dense
