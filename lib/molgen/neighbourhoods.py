"""What the cell-attention networks read of a cell complex, lifted from dense noisy graphs once per score call.

``lift_graphs`` (``molgen.complexes``) builds the whole complex: sparse incidence matrices ``B1``, ``B2`` and
neighbourhoods as sorted pair lists. A score network reads less, and :func:`lift_neighbourhoods` computes only
that, in the layout of GDSS's dense tensors: the bonds of each graph get slots ``0..K-1`` (``K`` the most bonds
of a graph in the batch), and each neighbourhood of a bond is one row of ``K`` booleans over the slots of its
graph (:class:`Neighbourhoods`): a small dense matrix per graph, stored for the bonds that exist. Building
the rows is a scatter per neighbourhood (no sorting, no pair lists). The fused CPU attention reads them
bit-packed (``pack_marks``), the PyTorch path for a GPU pads them to one ``K x K`` matrix per graph, the one for
a CPU without the kernel expands them to pair lists (``Neighbourhoods.pairs``); each form is computed once per
lift, when first asked for. Bonds, rings and neighbourhoods are those of
``lift_graphs(adj, flags, threshold, max_ring)`` (the tests check it).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .complexes import CellComplexBatch, _check_dense, _chordless_cycles

Tensor = torch.Tensor


@dataclass(frozen=True)
class Neighbourhoods:
    """Lower (shared atom) and upper (shared ring) neighbourhoods of E bonds numbered graph by graph.

    ``down``, ``up``: (E, K) bool, row e marks the slots of the bonds in e's neighbourhood (bond e itself
    included in both); ``slot`` (E,) each bond's slot in its graph, ``batch`` (E,) its graph, ``first`` (E,)
    the id of its graph's first bond (bond ids are ``first + slot``); ``graph_ptr`` (B + 1,) the first bond of
    each graph and the number of bonds; ``order`` (B,) the graphs by number of bonds (the fused kernel
    vectorises across graphs of about the same size).
    """

    down: Tensor
    up: Tensor
    slot: Tensor
    batch: Tensor
    first: Tensor
    graph_ptr: Tensor
    order: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.order.shape[0])

    @property
    def slots(self) -> int:
        return int(self.down.shape[1])

    @property
    def padded_rows(self) -> Tensor:
        """(E,) row ``batch * K + slot`` of each bond in a (B * K, ...) per-graph padded layout."""
        return self.batch * self.slots + self.slot

    @cached_property
    def down_packed(self) -> Tensor:
        """``down`` bit-packed for the fused kernel (``pack_marks``)."""
        return pack_marks(self.down)

    @cached_property
    def up_packed(self) -> Tensor:
        return pack_marks(self.up)

    @cached_property
    def down_pairs(self) -> Tensor:
        return self.pairs(self.down)

    @cached_property
    def up_pairs(self) -> Tensor:
        return self.pairs(self.up)

    def pairs(self, marks: Tensor) -> Tensor:
        """(2, nnz) (target, source) bond ids of ``marks`` (``down`` or ``up``), sorted by target, then source:
        the ``down_index`` / ``up_index`` of ``lift_graphs``."""
        tgt, slot = marks.nonzero().unbind(1)
        return torch.stack([tgt, self.first.index_select(0, tgt) + slot])

    @classmethod
    def from_pairs(cls, down_index: Tensor, up_index: Tensor, edge_batch: Tensor,
                   batch_size: int) -> Neighbourhoods:
        """From (target, source) pair lists of bonds sorted by graph, e.g. a ``lift_graphs`` complex's."""
        num = int(edge_batch.shape[0])
        counts = torch.bincount(edge_batch, minlength=batch_size)
        ptr = _pointers(counts)
        first = ptr.index_select(0, edge_batch)
        slots = int(counts.max()) if num else 0
        marks = []
        for index in (down_index, up_index):
            m = torch.zeros(num, slots, dtype=torch.bool, device=edge_batch.device)
            m[index[0], index[1] - first.index_select(0, index[1])] = True
            marks.append(m)
        return cls(marks[0], marks[1], torch.arange(num, device=edge_batch.device) - first, edge_batch, first, ptr,
                   torch.argsort(counts, stable=True))

    @classmethod
    def of_complex(cls, cx: CellComplexBatch) -> Neighbourhoods:
        return cls.from_pairs(cx.down_index, cx.up_index, cx.edge_batch, cx.batch_size)


@dataclass(frozen=True)
class CellNeighbourhoods:
    """Bonds, rings and bond neighbourhoods of a batch of ``B`` graphs with ``N`` node slots (global node id
    ``b * N + i``), named as in :class:`molgen.complexes.CellComplexBatch`: ``edge_index`` (2, E) with
    ``u < v``, sorted; ``edge_batch`` (E,); ``face_nodes`` (F, L) ring atoms in cycle order (global ids, -1
    padded), ``face_size`` (F,), ``face_batch`` (F,), ``face_edges`` (F, L) the bond between ring atoms i and
    i + 1 (-1 padded); ``neighbourhoods``; ``pair_rows`` (E,) the row ``b * P + p`` of each bond in the strict
    upper triangles of the batch (``P = N (N - 1) / 2`` pairs in ``torch.triu_indices`` order)."""

    batch_size: int
    max_nodes: int
    edge_index: Tensor
    edge_batch: Tensor
    pair_rows: Tensor
    neighbourhoods: Neighbourhoods
    face_nodes: Tensor
    face_size: Tensor
    face_batch: Tensor
    face_edges: Tensor

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_faces(self) -> int:
        return int(self.face_nodes.shape[0])


def lift_neighbourhoods(adj: Tensor, flags: Tensor, threshold: float = 0.5,
                        max_ring: int = 8) -> CellNeighbourhoods:
    """Bonds where ``adj > threshold`` between real nodes, rings = chordless cycles of 3..``max_ring`` nodes,
    and the bond neighbourhoods, of dense graphs ``adj`` (B, N, N) with node ``flags`` (B, N) (the arguments
    and checks of :func:`molgen.complexes.lift_graphs`)."""
    _check_dense(adj, flags, max_ring)
    b, n = int(adj.shape[0]), int(adj.shape[1])
    device = adj.device
    real = flags != 0
    upper = ((adj > threshold) & real.unsqueeze(1) & real.unsqueeze(2)).triu(1)
    g, i, j = upper.nonzero().unbind(1)
    num = int(g.shape[0])
    counts = upper.sum((1, 2))
    graph_ptr = _pointers(counts)
    first = graph_ptr.index_select(0, g)
    slot = torch.arange(num, device=device) - first
    slots = int(counts.max()) if num else 0
    atom_i, atom_j = g * n + i, g * n + j  # global atom ids of the bonds' ends
    at = torch.full((b * n, n), -1, dtype=torch.long, device=device)  # slot of the bond (atom, atom), -1: none
    at.index_put_((atom_i, j), slot)
    at.index_put_((atom_j, i), slot)

    # lower neighbours of bond (i, j): the bonds at atom i or at atom j (rows of an atom x slot incidence)
    incident = torch.zeros(b * n, slots, dtype=torch.bool, device=device)
    incident.index_put_((torch.cat([atom_i, atom_j]), torch.cat([slot, slot])),
                        torch.ones((), dtype=torch.bool, device=device))
    down = incident.index_select(0, atom_i).logical_or_(incident.index_select(0, atom_j))

    face_g, faces, sizes = _chordless_cycles(upper | upper.transpose(1, 2), max_ring)
    length = int(faces.shape[1])
    pos = torch.arange(length, device=device)
    valid = pos < sizes.unsqueeze(1)
    nxt = torch.where(pos + 1 < sizes.unsqueeze(1), pos + 1, torch.zeros_like(pos))
    node = faces.clamp(min=0)
    ring_slot = at[(face_g * n).unsqueeze(1) + node, node.gather(1, nxt)]
    ring_slot = torch.where(valid, ring_slot, ring_slot[:, :1])  # padding: the ring's first bond again
    ring_bond = ring_slot + graph_ptr.index_select(0, face_g).unsqueeze(1)
    # upper neighbours: the bond itself, and every bond of a ring it bounds
    up = torch.zeros(num, slots, dtype=torch.bool, device=device)
    up[torch.arange(num, device=device), slot] = True
    up[ring_bond.unsqueeze(2).expand(-1, -1, length).reshape(-1),
       ring_slot.unsqueeze(1).expand(-1, length, -1).reshape(-1)] = True

    p = n * (n - 1) // 2
    return CellNeighbourhoods(
        batch_size=b,
        max_nodes=n,
        edge_index=torch.stack([atom_i, atom_j]),
        edge_batch=g,
        pair_rows=g * p + i * (2 * n - i - 1) // 2 + (j - i - 1),
        neighbourhoods=Neighbourhoods(down, up, slot, g, first, graph_ptr, torch.argsort(counts, stable=True)),
        face_nodes=torch.where(faces >= 0, faces + (face_g * n).unsqueeze(1), faces),
        face_size=sizes,
        face_batch=face_g,
        face_edges=torch.where(valid, ring_bond, -1),
    )


def pack_marks(marks: Tensor) -> Tensor:
    """(E, K) bool -> (E, ceil(K / 8)) uint8, slot s in bit s % 8 of byte s // 8: the rows the fused kernel reads
    (``nets.kernels.can_attend``)."""
    e, k = marks.shape
    w = -(-k // 8)
    padded = marks.new_zeros(e, w * 8)
    padded[:, :k] = marks
    bits = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=marks.device)
    return (padded.reshape(e, w, 8).to(torch.uint8) * bits).sum(-1, dtype=torch.uint8)


def _pointers(counts: Tensor) -> Tensor:
    """(B + 1,) offsets of consecutive groups of ``counts`` (B,) items."""
    ptr = counts.new_zeros(counts.shape[0] + 1)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


__all__ = ["CellNeighbourhoods", "Neighbourhoods", "lift_neighbourhoods", "pack_marks"]
