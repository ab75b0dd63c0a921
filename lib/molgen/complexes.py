"""Lift molecules and batched molecular graphs to 2-dimensional cell complexes.

Atoms are 0-cells, bonds 1-cells and rings 2-cells. A batch of ``B`` graphs with ``N`` node slots each becomes
one block-diagonal complex whose node ``b * N + i`` is slot ``i`` of graph ``b`` (padding slots stay isolated
nodes, so node tensors of shape ``(B, N, ...)`` flatten onto it directly). Conventions follow TopoNetX:

* edges are oriented from the smaller to the larger node index and sorted lexicographically, so they are
  grouped by graph; ``B1[u, e] = -1`` and ``B1[v, e] = +1`` for ``e = (u, v)``;
* a ring ``(c_0, ..., c_{s-1})`` is oriented by its cycle order: ``B2[e, f] = +1`` when its boundary step
  ``c_i -> c_{i+1}`` runs along ``e``'s orientation, ``-1`` against it;
* rings are stored canonically: they start at their smallest node and continue towards the smaller of its
  two ring neighbours; within a graph they are sorted by size, then lexicographically.

Two lifts: :func:`lift_graphs` for dense (possibly noisy) adjacencies, with the chordless cycles as rings (what
a diffusion sampler needs at every step), and :func:`lift_mols` for RDKit molecules, with RDKit's symmetrised
SSSR as rings. The two agree whenever the SSSR rings are exactly the chordless cycles up to ``max_ring`` atoms;
they differ e.g. for cubane (6 SSSR four-rings; its graph also has 4 chordless six-cycles) and norbornane
(2 SSSR five-rings; the six-cycle through both two-carbon bridges is chordless too).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from typing import Iterable, Iterator, Sequence

import torch
from rdkit import Chem

Tensor = torch.Tensor

MAX_NODES = 63  # node sets of one graph are int64 bitmasks in the cycle search
MAX_PATHS = 1 << 18  # chordless paths extended at once (bounds the memory of the cycle search)
SYMMETRY_TOL = 1e-5  # relative tolerance of the adjacency symmetry check
DENSE_PAIR_BUDGET = 1 << 26  # booleans used to deduplicate edge pairs without sorting
PAIR_CHUNK = 1 << 22  # ring edge pairs generated at once


@dataclass
class CellComplexBatch:
    """A batch of 2-dimensional cell complexes as one block-diagonal complex (see the module docstring).

    ``face_edges`` (added to the contract): ``(F, L)`` edge ids of each ring's boundary, entry ``i`` being the
    edge between ``face_nodes[f, i]`` and ``face_nodes[f, (i + 1) % size]``, padded with -1.
    """

    batch_size: int
    max_nodes: int
    edge_index: Tensor
    edge_batch: Tensor
    face_nodes: Tensor
    face_size: Tensor
    face_batch: Tensor
    B1: Tensor
    B2: Tensor
    down_index: Tensor
    up_index: Tensor
    face_edges: Tensor

    @property
    def num_nodes(self) -> int:
        return self.batch_size * self.max_nodes

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_faces(self) -> int:
        return int(self.face_nodes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    @property
    def node_adj_index(self) -> Tensor:
        """``(2, 2E)`` node adjacency in both directions: ``edge_index`` followed by its flip."""
        return torch.cat([self.edge_index, self.edge_index.flip(0)], dim=1)

    @property
    def edge_local(self) -> tuple[Tensor, Tensor]:
        """Slot indices ``(i, j)`` (within their graph, ``i < j``) of each edge."""
        offset = self.edge_batch * self.max_nodes
        return self.edge_index[0] - offset, self.edge_index[1] - offset

    def to(self, device: torch.device | str) -> CellComplexBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in moved.items()}
        return replace(self, **moved)

    def edge_values(self, dense: Tensor) -> Tensor:
        """Gather ``dense[b, i, j]`` for every edge: ``(B, N, N[, C]) -> (E[, C])``."""
        expected = (self.batch_size, self.max_nodes, self.max_nodes)
        if dense.dim() < 3 or tuple(dense.shape[:3]) != expected:
            raise ValueError(f"dense must have shape {expected} + channels, got {tuple(dense.shape)}")
        i, j = self.edge_local
        return dense[self.edge_batch, i, j]

    def edges_to_dense(self, values: Tensor) -> Tensor:
        """Scatter per-edge values ``(E[, C])`` to a symmetric ``(B, N, N[, C])`` tensor, zero off the edges."""
        if values.dim() < 1 or values.shape[0] != self.num_edges:
            raise ValueError(f"values must have {self.num_edges} rows (one per edge), got {tuple(values.shape)}")
        shape = (self.batch_size, self.max_nodes, self.max_nodes) + tuple(values.shape[1:])
        i, j = self.edge_local
        b = self.edge_batch
        out = values.new_zeros(shape).index_put((b, i, j), values)
        return out.index_put((b, j, i), values)

    @property
    def down_laplacian(self) -> Tensor:
        """``|B1|^T |B1|`` (E, E), sparse COO: 2 on the diagonal, 1 for edges sharing a node."""
        a = _abs_sparse(self.B1)
        return _spmm(a.t(), a)

    @property
    def up_laplacian(self) -> Tensor:
        """``|B2| |B2|^T`` (E, E), sparse COO: entry (e, e') = number of rings containing both edges."""
        a = _abs_sparse(self.B2)
        return _spmm(a, a.t())

    @property
    def hodge_laplacian(self) -> Tensor:
        """Signed Hodge Laplacian ``L1 = B1^T B1 + B2 B2^T`` (E, E), sparse COO."""
        return (_spmm(self.B1.t(), self.B1) + _spmm(self.B2, self.B2.t())).coalesce()


# ----------------------------------------------------------------------------- public lifts
def lift_graphs(adj: Tensor, flags: Tensor, threshold: float = 0.5, max_ring: int = 8) -> CellComplexBatch:
    """Lift dense graphs to cell complexes: edges where ``adj > threshold`` between real nodes, rings = all
    chordless (induced) cycles with 3..``max_ring`` nodes.

    ``adj``: ``(B, N, N)`` symmetric (up to a relative ``SYMMETRY_TOL``; the upper triangle decides), diagonal
    ignored; ``flags``: ``(B, N)`` in {0, 1}. ``N <= MAX_NODES``.

    The cycle search grows the chordless paths of all graphs together, one node per vectorised step (node
    sets as int64 bitmasks), so its cost follows the number of chordless paths of up to ``max_ring - 1``
    nodes and the output size: small for molecules and for noisy QM9-sized graphs (10,000 of them in well
    under a second), but large for noisy ZINC-sized graphs, which can have hundreds of chordless cycles each
    (pure noise: thousands), so that there the lift is slow (seconds per 1,000 graphs) and memory-hungry
    however it is computed. Paths are extended in pieces of at most ``MAX_PATHS`` and ring edge pairs
    generated in chunks of ``PAIR_CHUNK``, which bounds the working memory beyond the output itself.
    """
    _check_dense(adj, flags, max_ring)
    B, N = int(adj.shape[0]), int(adj.shape[1])
    real = flags != 0
    upper = ((adj > threshold) & real.unsqueeze(1) & real.unsqueeze(2)).triu(1)
    mask = upper | upper.transpose(1, 2)
    g, i, j = upper.nonzero().unbind(1)
    edge_index = torch.stack([g * N + i, g * N + j])
    face_g, faces, sizes = _chordless_cycles(mask, max_ring)
    face_nodes = torch.where(faces >= 0, faces + (face_g * N).unsqueeze(1), faces)
    dtype = adj.dtype if adj.is_floating_point() else torch.float32
    return _assemble(B, N, edge_index, face_nodes, sizes, dtype)


def lift_mols(
    mols: Sequence[Chem.Mol], max_nodes: int, device: torch.device | str = "cpu"
) -> CellComplexBatch:
    """Lift RDKit molecules: atoms in RDKit order (slots ``0..n-1``), edges = bonds, rings = the symmetrised
    SSSR (``Chem.GetSymmSSSR``, what sanitisation stores in ``GetRingInfo().AtomRings()``), stored in the
    canonical rotation/orientation and order of the module docstring. Loops over molecules in Python."""
    if not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r}")
    edges: list[tuple[int, int]] = []
    rings: list[tuple[int, ...]] = []
    for b, mol in enumerate(mols):
        if not isinstance(mol, Chem.Mol):
            raise ValueError(f"mols[{b}] is not an RDKit Mol (got {type(mol).__name__})")
        n = mol.GetNumAtoms()
        if n > max_nodes:
            raise ValueError(f"mols[{b}] has {n} atoms, more than max_nodes={max_nodes}")
        off = b * max_nodes
        for bond in mol.GetBonds():
            u, v = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
            edges.append((off + u, off + v))
        mol_rings = sorted((_canonical_ring(r) for r in Chem.GetSymmSSSR(mol)), key=lambda r: (len(r), r))
        rings.extend(tuple(off + a for a in r) for r in mol_rings)
    edges.sort()
    edge_index = torch.tensor(edges, dtype=torch.long, device=device).reshape(-1, 2).t().contiguous()
    L = max((len(r) for r in rings), default=3)
    face_nodes = torch.tensor([list(r) + [-1] * (L - len(r)) for r in rings], dtype=torch.long, device=device)
    face_nodes = face_nodes.reshape(-1, L)
    sizes = torch.tensor([len(r) for r in rings], dtype=torch.long, device=device)
    return _assemble(len(mols), max_nodes, edge_index, face_nodes, sizes, torch.float32)


# ----------------------------------------------------------------------------- validation
def _check_dense(adj: Tensor, flags: Tensor, max_ring: int) -> None:
    """Raise ValueError naming what is wrong with a dense batch."""
    if not isinstance(adj, Tensor) or adj.dim() != 3 or adj.shape[1] != adj.shape[2]:
        shape = tuple(adj.shape) if isinstance(adj, Tensor) else type(adj).__name__
        raise ValueError(f"adj must be a tensor of shape (B, N, N), got {shape}")
    B, N = int(adj.shape[0]), int(adj.shape[1])
    if N > MAX_NODES:
        raise ValueError(f"N = {N} node slots exceeds the supported maximum of {MAX_NODES}")
    if not isinstance(flags, Tensor) or tuple(flags.shape) != (B, N):
        shape = tuple(flags.shape) if isinstance(flags, Tensor) else type(flags).__name__
        raise ValueError(f"flags must have shape (B, N) = {(B, N)}, got {shape}")
    if flags.device != adj.device:
        raise ValueError(f"flags are on {flags.device} but adj is on {adj.device}")
    if not bool(((flags == 0) | (flags == 1)).all()):
        raise ValueError("flags must contain only 0 and 1")
    if not isinstance(max_ring, int) or max_ring < 3:
        raise ValueError(f"max_ring must be an int >= 3, got {max_ring!r}")
    if adj.is_floating_point():
        if bool(torch.isnan(adj).any()):
            raise ValueError("adj contains NaN")
        scale = max(1.0, float(adj.abs().max())) if adj.numel() else 1.0
        if adj.numel() and float((adj - adj.transpose(1, 2)).abs().max()) > SYMMETRY_TOL * scale:
            raise ValueError("adj is not symmetric (adj != adj.transpose(1, 2))")
    elif not torch.equal(adj, adj.transpose(1, 2)):
        raise ValueError("adj is not symmetric (adj != adj.transpose(1, 2))")


# ----------------------------------------------------------------------------- chordless cycles
def _bits_to_pairs(sets: Tensor, bits: Tensor) -> tuple[Tensor, Tensor]:
    """Expand int64 bitmasks (M,) to the (row, member) pairs of their set bits, in row-major order."""
    row, w = ((sets.unsqueeze(1) & bits) != 0).nonzero().unbind(1)
    return row, w


def _below_or_at(bits: Tensor, v: Tensor) -> Tensor:
    """Bitmask of the nodes ``<= v`` (int64 wrap-around keeps this right for v = 62)."""
    return (bits.index_select(0, v) << 1) - 1


def _chordless_cycles(mask: Tensor, max_ring: int) -> tuple[Tensor, Tensor, Tensor]:
    """All chordless cycles with 3..max_ring nodes of the symmetric boolean adjacencies ``mask`` (B, N, N).

    Grows chordless paths ``v0, v1, ..., vk`` with ``v0`` their smallest node; a new node must be a neighbour
    of ``vk``, larger than ``v0``, off the path and not adjacent to ``v1..v(k-1)``. If it is adjacent to ``v0``
    it closes a chordless cycle, kept only if it is larger than ``v1`` (each cycle once, in canonical
    orientation); otherwise it extends the path. Returns ``(graph (F,), local nodes (F, L) padded -1,
    sizes (F,))`` sorted by graph, size, then nodes.
    """
    B, N = mask.shape[:2]
    device = mask.device
    bits = torch.ones(N, dtype=torch.long, device=device) << torch.arange(N, device=device)
    nbr = (mask.long() * bits).sum(-1).reshape(-1)  # (B * N,) neighbour bitmasks of node b * N + v
    g, v0, v1 = mask.triu(1).nonzero().unbind(1)
    start = (torch.stack([v0, v1], 1), g, _below_or_at(bits, v0) | bits.index_select(0, v1), 2)
    found: list[tuple[Tensor, Tensor]] = []
    stack = [start]
    while stack:
        paths, g, forbid, k = stack.pop()
        if paths.shape[0] == 0:
            continue
        if paths.shape[0] > MAX_PATHS:  # reversed, so that the first piece is popped first
            pieces = zip(paths.split(MAX_PATHS), g.split(MAX_PATHS), forbid.split(MAX_PATHS))
            stack.extend(reversed([(p, gg, f, k) for p, gg, f in pieces]))
            continue
        last, first, second = paths[:, -1], paths[:, 0], paths[:, 1]
        gn = g * N
        n0 = nbr.index_select(0, gn + first)
        n_last = nbr.index_select(0, gn + last)
        cand = n_last & ~forbid
        row, w = _bits_to_pairs(cand & n0 & ~_below_or_at(bits, second), bits)
        found.append((g.index_select(0, row), torch.cat([paths.index_select(0, row), w.unsqueeze(1)], 1)))
        if k + 1 < max_ring:
            row, w = _bits_to_pairs(cand & ~n0, bits)
            new_forbid = (forbid | n_last).index_select(0, row) | bits.index_select(0, w)
            stack.append((torch.cat([paths.index_select(0, row), w.unsqueeze(1)], 1), g.index_select(0, row),
                          new_forbid, k + 1))
    return _sort_cycles(found, max_ring, device)


def _sort_cycles(
    found: list[tuple[Tensor, Tensor]], max_ring: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Pad the found cycles to a common width and sort them by (graph, size, nodes).

    Each found block holds cycles of one size in (graph, nodes) order (``nonzero`` keeps the order of the
    parent paths), and the depth-first traversal of ordered pieces emits, for each size, the blocks in that
    order too; so one stable sort by (graph, size) completes the order.
    """
    found = [(g, c) for g, c in found if c.shape[0]]
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty.reshape(0, 3), empty
    L = max(c.shape[1] for _, c in found)
    g = torch.cat([g for g, _ in found])
    cycles = torch.cat([torch.nn.functional.pad(c, (0, L - c.shape[1]), value=-1) for _, c in found])
    sizes = (cycles >= 0).sum(1)
    order = torch.sort(g * (max_ring + 1) + sizes, stable=True).indices
    return g[order], cycles[order], sizes[order]


def _canonical_ring(ring: Sequence[int]) -> tuple[int, ...]:
    """Rotate a cycle to start at its smallest node and run towards the smaller of that node's neighbours."""
    ring = list(ring)
    s = ring.index(min(ring))
    ring = ring[s:] + ring[:s]
    if ring[-1] < ring[1]:
        ring = [ring[0]] + ring[:0:-1]
    return tuple(ring)


# ----------------------------------------------------------------------------- assembly
def _assemble(
    batch_size: int, max_nodes: int, edge_index: Tensor, face_nodes: Tensor, face_size: Tensor, dtype: torch.dtype
) -> CellComplexBatch:
    """Build incidences and neighbourhoods from sorted edges and canonical rings (global node ids)."""
    device = edge_index.device
    n_nodes = batch_size * max_nodes
    E, F = int(edge_index.shape[1]), int(face_nodes.shape[0])
    edge_batch = edge_index[0] // max_nodes
    face_batch = face_nodes[:, 0] // max_nodes if F else face_size.clone()
    edge_ptr = torch.cumsum(torch.bincount(edge_batch, minlength=batch_size), 0)
    edge_ptr = torch.cat([edge_ptr.new_zeros(1), edge_ptr])

    # Incidences (v's, then u's) stably sorted by node are in (node, edge) order: an edge (u, x) with u < x
    # precedes every edge (x, w) in the lexicographic edge order.
    node, flat = torch.sort(edge_index.flip(0).reshape(-1), stable=True)
    edge = flat % max(E, 1)
    b1_sign = torch.where(flat < E, 1.0, -1.0).to(dtype)
    B1 = _sparse(torch.stack([node, edge]), b1_sign, (n_nodes, E))

    face_edges, signs = _face_edges(edge_index, face_nodes, face_size, n_nodes)
    valid = face_edges >= 0
    f_id = torch.arange(F, device=device).unsqueeze(1).expand_as(face_edges)[valid]
    fe, order = torch.sort(face_edges[valid], stable=True)  # (edge, face) order
    B2 = _sparse(torch.stack([fe, f_id[order]]), signs[valid][order].to(dtype), (E, F))

    return CellComplexBatch(
        batch_size=batch_size,
        max_nodes=max_nodes,
        edge_index=edge_index,
        edge_batch=edge_batch,
        face_nodes=face_nodes,
        face_size=face_size,
        face_batch=face_batch,
        B1=B1,
        B2=B2,
        down_index=_pair_index([_down_pairs(node, edge, n_nodes)], edge_batch, edge_ptr),
        up_index=_pair_index(_up_pairs(face_edges, face_size, E), edge_batch, edge_ptr),
        face_edges=face_edges,
    )


def _sparse(indices: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """COO tensor from indices already sorted row-major without duplicates."""
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=False, is_coalesced=True)


def _face_edges(edge_index: Tensor, face_nodes: Tensor, face_size: Tensor, n_nodes: int) -> tuple[Tensor, Tensor]:
    """Edge id (-1 on padding) and orientation sign of each boundary step ``c_i -> c_{i+1}`` of each ring."""
    F, L = face_nodes.shape
    pos = torch.arange(L, device=face_nodes.device).expand(F, L)
    valid = pos < face_size.unsqueeze(1)
    nxt = torch.where(pos + 1 < face_size.unsqueeze(1), pos + 1, torch.zeros_like(pos))
    a, b = face_nodes, face_nodes.gather(1, nxt)
    keys = (torch.minimum(a, b) * n_nodes + torch.maximum(a, b))[valid]
    edge_keys = edge_index[0] * n_nodes + edge_index[1]  # sorted, since edge_index is
    eid = torch.searchsorted(edge_keys, keys)
    if keys.numel() and not bool((edge_keys[eid.clamp(max=max(edge_keys.numel() - 1, 0))] == keys).all()):
        raise ValueError("a ring uses a pair of nodes that is not an edge")
    face_edges = torch.full_like(face_nodes, -1)
    face_edges[valid] = eid
    return face_edges, torch.where(a < b, 1, -1)


def _down_pairs(node: Tensor, edge: Tensor, n_nodes: int) -> tuple[Tensor, Tensor]:
    """(target, source) edge pairs sharing a node, from the incidences sorted by node (self-pairs twice)."""
    deg = torch.bincount(node, minlength=n_nodes)
    start = torch.cumsum(deg, 0) - deg
    rep = deg[node]  # each incidence pairs with all incidences of its node
    tgt = torch.repeat_interleave(edge, rep)
    first = torch.repeat_interleave(start[node], rep)
    within = torch.arange(tgt.shape[0], device=node.device) - torch.repeat_interleave(torch.cumsum(rep, 0) - rep, rep)
    return tgt, edge[first + within]


def _up_pairs(face_edges: Tensor, face_size: Tensor, E: int) -> Iterator[tuple[Tensor, Tensor]]:
    """(target, source) edge pairs sharing a ring, plus a self-pair for every edge (with repeats), in chunks
    of about ``PAIR_CHUNK`` pairs."""
    ar = torch.arange(E, device=face_edges.device)
    yield ar, ar
    for s in torch.unique(face_size).tolist():
        for fe in face_edges[face_size == s, :s].split(max(1, PAIR_CHUNK // (s * s))):
            yield fe.unsqueeze(2).expand(-1, s, s).reshape(-1), fe.unsqueeze(1).expand(-1, s, s).reshape(-1)


def _pair_index(pairs: Iterable[tuple[Tensor, Tensor]], edge_batch: Tensor, edge_ptr: Tensor) -> Tensor:
    """Deduplicate chunks of (target, source) pairs of edges of the same graph -> (2, nnz) sorted by target,
    then source.

    Marks the pairs in a dense (E, most edges of a graph) boolean matrix of in-graph source offsets when that is
    small, else sorts unique int64 keys.
    """
    E = edge_batch.numel()
    width = int((edge_ptr[1:] - edge_ptr[:-1]).max()) if E else 0
    if E * width <= DENSE_PAIR_BUDGET:
        offset = edge_ptr[edge_batch]
        marks = torch.zeros(E, width, dtype=torch.bool, device=edge_batch.device)
        for tgt, src in pairs:
            marks[tgt, src - offset[src]] = True
        t, local = marks.nonzero().unbind(1)
        return torch.stack([t, local + offset[t]])
    keys = torch.unique(torch.cat([torch.unique(tgt * E + src) for tgt, src in pairs]))
    return torch.stack([keys // E, keys % E])


def _spmm(a: Tensor, b: Tensor) -> Tensor:
    """Sparse COO product (torch warns that it goes through its beta CSR support internally)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse.mm(a.coalesce(), b.coalesce()).coalesce()


def _abs_sparse(m: Tensor) -> Tensor:
    return torch.sparse_coo_tensor(m.indices(), m.values().abs(), m.shape, check_invariants=False).coalesce()


__all__ = ["CellComplexBatch", "MAX_NODES", "lift_graphs", "lift_mols"]
