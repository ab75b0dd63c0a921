"""Standard molecule-generation metrics of the GDSS paper (validity, uniqueness, novelty,
FCD, NSPDK MMD), computed on CPU and offline.

Definitions (``n`` = number of generated graphs, including ones that did not decode):

* ``validity_wo_correction`` = graphs valid before GDSS's valency correction / ``n``.
  (GDSS divided by the number of molecules left after correction; we divide by all.)
* ``validity`` = generated items that are valid molecules (after correction) / ``n``.
* ``uniqueness`` = distinct canonical SMILES among the valid ones / number valid.
* ``novelty`` = distinct valid canonical SMILES not in the training set / distinct valid
  (MOSES's ``novelty``, which GDSS reports; training SMILES are canonicalized the same way).
* ``fcd`` = Fréchet ChemNet Distance (``fcd_torch``, weights shipped in the package, CPU)
  between all valid generated SMILES (duplicates kept, as MOSES's ``FCD/Test``) and the
  test SMILES.
* ``nspdk`` = MMD with the NSPDK graph kernel (EDeN's vectorizer, ``complexity=4``,
  ``discrete=True``, nbits=16, normalized features, linear kernel) between the valid
  generated molecules and the test molecules, as graphs with node label = element symbol and
  edge label = ``int(bond order)`` (aromatic bonds -> 1) of the RDKit molecules parsed from
  SMILES, exactly as GDSS's ``mols_to_nx``.  GDSS computes ``mean(K_XX) + mean(K_YY) -
  2 mean(K_XY)`` from full kernel matrices; with a linear kernel this equals
  ``||mean(phi_X) - mean(phi_Y)||^2``, which is what is computed here (no n x m matrices).

``nspdk_features`` is a vectorised re-implementation of EDeN's discrete NSPDK features
(same neighbourhood hashes, same feature hashes, same normalisations).  With
``label_hash="python"`` it reproduces ``eden.graph.vectorize`` exactly within a process
(EDeN hashes string labels with Python's per-process randomised ``hash``); the default
``label_hash="stable"`` hashes labels with CRC32 instead, so values are reproducible across
processes (they differ from EDeN's only through 16-bit hash collisions).

A :class:`Reference` holds the reference molecules (training SMILES for novelty, test SMILES for FCD and
NSPDK) and computes the test set's ChemNet statistics and NSPDK features once, reading and writing them in a
disk cache keyed by the SMILES; evaluating several sample sets against one dataset reuses one ``Reference``.
"""

from __future__ import annotations

import hashlib
import sys
import zlib
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from rdkit import Chem, RDLogger

from common.io import atomic_path, write_npz

RDLogger.DisableLog("rdApp.*")

# ----------------------------------------------------------------------------- SMILES


def canonical_smiles(smiles: str | None) -> str | None:
    """RDKit canonical SMILES, or ``None`` if it does not parse (or is empty)."""
    if smiles is None:
        return None
    if not isinstance(smiles, str):
        return None
    s = smiles.strip()
    if not s:
        return None
    mol = Chem.MolFromSmiles(s)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return Chem.MolToSmiles(mol)


def canonicalize_list(smiles: Iterable[str]) -> list[str | None]:
    return [canonical_smiles(s) for s in smiles]


def _item_to_mol_and_smiles(item):
    """Generated item (SMILES, RDKit mol or None) -> (sanitized mol, canonical SMILES) or (None, None)."""
    if item is None:
        return None, None
    if isinstance(item, str):
        s = item.strip()
        if not s:
            return None, None
        mol = Chem.MolFromSmiles(s)
    else:
        try:
            mol = Chem.MolFromSmiles(Chem.MolToSmiles(item))
        except Exception:
            return None, None
    if mol is None or mol.GetNumAtoms() == 0:
        return None, None
    return mol, Chem.MolToSmiles(mol)


# ----------------------------------------------------------------------------- NSPDK
_MASK64 = (1 << 64) - 1
_XXP1 = np.uint64(11400714785074694791)
_XXP2 = np.uint64(14029467366897019727)
_XXP5 = np.uint64(2870177450012600261)
_LEN_MANGLE = 2870177450012600261 ^ 3527539
_PY_MODULUS = (1 << 61) - 1


def _np_tuplehash(cols: Sequence[np.ndarray]) -> np.ndarray:
    """CPython (3.8+, 64-bit) ``hash(tuple)`` of tuples of ints, vectorised, as uint64.

    ``cols[j]`` holds ``hash(item_j)`` of every tuple (as uint64 two's complement).
    """
    n = len(cols[0])
    acc = np.full(n, _XXP5, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in cols:
            acc = acc + c.astype(np.uint64) * _XXP2
            acc = (acc << np.uint64(31)) | (acc >> np.uint64(33))
            acc = acc * _XXP1
        acc = acc + np.uint64(len(cols) ^ _LEN_MANGLE)
    acc[acc == np.uint64(_MASK64)] = np.uint64(1546275796)
    return acc


def _np_tuplehash_ragged(values: np.ndarray, seg_start: np.ndarray, seg_len: np.ndarray) -> np.ndarray:
    """``hash(tuple(values[s:s+l]))`` for every segment (values = hashes of non-negative ints)."""
    nseg = len(seg_start)
    acc = np.full(nseg, _XXP5, dtype=np.uint64)
    maxlen = int(seg_len.max()) if nseg else 0
    v = values.astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(maxlen):
            active = np.nonzero(seg_len > j)[0]
            a = acc[active] + v[seg_start[active] + j] * _XXP2
            a = (a << np.uint64(31)) | (a >> np.uint64(33))
            acc[active] = a * _XXP1
        acc = acc + (seg_len.astype(np.uint64) ^ np.uint64(_LEN_MANGLE))
    acc[acc == np.uint64(_MASK64)] = np.uint64(1546275796)
    return acc


def _np_int_hash(x: np.ndarray) -> np.ndarray:
    """CPython ``hash(int)`` for int64 values, returned as uint64 two's complement."""
    x = x.astype(np.int64)
    neg = x < 0
    ax = np.where(neg, -(x + 1), x).astype(np.uint64)  # |x| - 1 for negatives (no overflow)
    ax = np.where(neg, ax + np.uint64(1), ax)  # |x| as uint64 (|-2^63| fits)
    m = (ax % np.uint64(_PY_MODULUS)).astype(np.int64)
    h = np.where(neg, -m, m)
    h = np.where(h == -1, -2, h)
    return h.astype(np.uint64)


def _hash_selfcheck() -> bool:
    """Does the numpy emulation agree with this interpreter's ``hash``?"""
    if sys.hash_info.width != 64 or sys.implementation.name != "cpython" or sys.version_info < (3, 8):
        return False
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**33, 50)
    b = rng.integers(0, 10, 50)
    got = _np_tuplehash([a.astype(np.uint64), b.astype(np.uint64)])
    want = np.array([hash((int(x), int(y))) & _MASK64 for x, y in zip(a, b)], dtype=np.uint64)
    r = rng.integers(-(2**63), 2**63 - 1, 50, dtype=np.int64)
    gi = _np_int_hash(r)
    wi = np.array([hash(int(x)) & _MASK64 for x in r], dtype=np.uint64)
    seg = _np_tuplehash_ragged(a.astype(np.uint64), np.array([0, 3, 10]), np.array([3, 7, 0]))
    ws = np.array(
        [hash(tuple(int(x) for x in a[0:3])) & _MASK64, hash(tuple(int(x) for x in a[3:10])) & _MASK64, hash(()) & _MASK64],
        dtype=np.uint64,
    )
    return bool(np.array_equal(got, want) and np.array_equal(gi, wi) and np.array_equal(seg, ws))


_HASH_OK = _hash_selfcheck()
"""The numpy emulation of ``hash`` holds in this interpreter (else NSPDK falls back to EDeN itself)."""


def _label_hlabel(label, mode: str, bitmask: int) -> int:
    if mode == "python" or not isinstance(label, str):
        return int(hash(label) & bitmask) + 1
    return int(zlib.crc32(label.encode()) & bitmask) + 1


def mol_to_nx(mol):
    """GDSS's ``mols_to_nx`` for one molecule: node ``label`` = symbol, edge ``label`` = int bond order."""
    import networkx as nx

    G = nx.Graph()
    for atom in mol.GetAtoms():
        G.add_node(atom.GetIdx(), label=atom.GetSymbol())
    for bond in mol.GetBonds():
        G.add_edge(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), label=int(bond.GetBondTypeAsDouble()))
    return G


def mols_to_nx(mols) -> list:
    return [mol_to_nx(m) for m in mols]


_SYMBOLS = ("*",) + tuple(Chem.GetPeriodicTable().GetElementSymbol(z) for z in range(1, 119))
"""Element symbols by atomic number ("*" for 0, a dummy atom)."""


def _graph_arrays(g):
    """(atom labels, bonds (k,2) int, bond labels, distance matrix) from an RDKit mol or a
    networkx graph with node/edge ``label`` attributes."""
    if isinstance(g, Chem.Mol):
        n = g.GetNumAtoms()
        labels = [_SYMBOLS[g.GetAtomWithIdx(i).GetAtomicNum()] for i in range(n)]
        if n == 0:
            return labels, np.zeros((0, 2), dtype=np.int64), [], np.zeros((0, 0))
        adj = Chem.GetAdjacencyMatrix(g, useBO=True)
        a, b = np.nonzero(np.triu(adj, 1))
        bonds = np.stack([a, b], axis=1).astype(np.int64)
        blabels = adj[a, b].astype(np.int64).tolist()  # int(bond order): aromatic 1.5 -> 1
        return labels, bonds, blabels, np.asarray(Chem.GetDistanceMatrix(g))
    # networkx graph
    import networkx as nx

    nodes = list(g.nodes())
    pos = {n: i for i, n in enumerate(nodes)}
    labels = [g.nodes[n]["label"] for n in nodes]
    edges = [(u, v) for u, v in g.edges() if u != v]
    bonds = np.array([(pos[u], pos[v]) for u, v in edges], dtype=np.int64).reshape(-1, 2)
    blabels = [g.edges[u, v].get("label") for u, v in edges]
    n = len(nodes)
    D = np.full((n, n), 1e8)
    for src, dist in nx.all_pairs_shortest_path_length(g, cutoff=4):
        for dst, d in dist.items():
            D[pos[src], pos[dst]] = d
    return labels, bonds, blabels, D


def nspdk_features(graphs, complexity: int = 4, nbits: int = 16, label_hash: str = "stable", batch_size: int = 2000):
    """NSPDK feature matrix (CSR, ``len(graphs) x 2**nbits + 1``) of RDKit mols or networkx graphs.

    Same features as ``eden.graph.vectorize(graphs, complexity=complexity, discrete=True,
    nbits=nbits)`` (r = d = complexity, inner and global L2 normalisation).
    """
    if not _HASH_OK:  # not 64-bit CPython: fall back to EDeN itself
        from eden.graph import vectorize

        gs = [mol_to_nx(g) if isinstance(g, Chem.Mol) else g for g in graphs]
        return vectorize(gs, complexity=complexity, discrete=True, nbits=nbits)
    if label_hash not in ("stable", "python"):
        raise ValueError("label_hash must be 'stable' or 'python'")
    graphs = list(graphs)
    mats = [
        _nspdk_batch(graphs[i : i + batch_size], complexity, nbits, label_hash)
        for i in range(0, len(graphs), batch_size)
    ]
    if not mats:
        return sp.csr_matrix((0, (1 << nbits) + 1))
    return sp.vstack(mats).tocsr()


def _nspdk_batch(graphs, complexity, nbits, label_hash):
    bitmask = (1 << nbits) - 1
    big = np.uint64(4294967295)  # EDeN's default 32-bit mask for neighbourhood hashes
    max_depth = 2 * complexity  # BFS depth on the edge-expanded graph
    hl_cache: dict = {}

    def hl(label):
        key = (type(label).__name__, label)
        v = hl_cache.get(key)
        if v is None:
            v = hl_cache[key] = _label_hlabel(label, label_hash, bitmask)
        return v

    # ---- per graph: labels, bonds and topological distances (RDKit / networkx)
    ns, ms, Dflat, bond_list, hl_atom_list, hl_edge_list = [], [], [], [], [], []
    for g in graphs:
        labels, bonds, blabels, D = _graph_arrays(g)
        if len(labels) == 0:
            raise ValueError("NSPDK: empty graph (remove empty graphs first, as GDSS does)")
        ns.append(len(labels))
        ms.append(len(bonds))
        Dflat.append(np.minimum(D, 1e6).astype(np.int64).ravel())
        bond_list.append(bonds)
        hl_atom_list.extend(hl(x) for x in labels)
        hl_edge_list.extend(hl(x) for x in blabels)
    G = len(graphs)
    ns, ms = np.asarray(ns, dtype=np.int64), np.asarray(ms, dtype=np.int64)
    a_off = np.r_[0, np.cumsum(ns)[:-1]]  # first atom (= root) of each graph
    e_off = np.r_[0, np.cumsum(ms)[:-1]]
    d_off = np.r_[0, np.cumsum(ns * ns)[:-1]]
    n_roots = int(ns.sum())
    Dflat = np.concatenate(Dflat)
    bonds = np.concatenate(bond_list) if ms.sum() else np.zeros((0, 2), dtype=np.int64)
    # degree of each atom (number of bonds) and node vhlabels: fast_hash_2(hlabel, degree)
    deg = np.zeros(n_roots, dtype=np.int64)
    gb = np.repeat(np.arange(G), ms)
    if len(bonds):
        np.add.at(deg, bonds[:, 0] + a_off[gb], 1)
        np.add.at(deg, bonds[:, 1] + a_off[gb], 1)
    vh_atom = (_np_tuplehash([np.asarray(hl_atom_list, dtype=np.uint64), deg.astype(np.uint64)]) & big) + np.uint64(1)
    vh_edge = (
        _np_tuplehash([np.asarray(hl_edge_list, dtype=np.uint64), np.full(len(bonds), 2, dtype=np.uint64)]) & big
    ) + np.uint64(1)
    # (root, atom) entries: expanded distance 2 * D
    gp = np.repeat(np.arange(G), ns * ns)
    k = np.arange(len(gp)) - d_off[gp]
    pv_l, pu_l = k // ns[gp], k % ns[gp]
    Dp = Dflat
    # (root, edge) entries: expanded distance 2 * min(D[v, a], D[v, b]) + 1
    ge = np.repeat(np.arange(G), ns * ms)
    ke = np.arange(len(ge)) - np.r_[0, np.cumsum(ns * ms)[:-1]][ge]
    ev_l, ee_l = ke // np.maximum(ms[ge], 1), ke % np.maximum(ms[ge], 1)
    eb = bonds[e_off[ge] + ee_l] if len(ge) else np.zeros((0, 2), dtype=np.int64)
    De = np.minimum(Dflat[d_off[ge] + ev_l * ns[ge] + eb[:, 0]], Dflat[d_off[ge] + ev_l * ns[ge] + eb[:, 1]])
    root = np.concatenate([a_off[gp] + pv_l, a_off[ge] + ev_l])
    d = np.concatenate([2 * Dp, 2 * De + 1])
    vh = np.concatenate([vh_atom[a_off[gp] + pu_l], vh_edge[e_off[ge] + ee_l]])
    keep = d <= max_depth
    root, d, vh = root[keep], d[keep], vh[keep]
    # atom pairs (v, u) at original distance <= complexity
    pk = Dp <= complexity
    pmol = gp[pk]
    pv = a_off[pmol] + pv_l[pk]
    pu = a_off[pmol] + pu_l[pk]
    pd_ = 2 * Dp[pk]
    local_v = pv_l[pk]
    # ---- layer hashes: fast_hash(sorted vhlabels of the nodes at distance k from the root)
    order = np.lexsort((vh, d, root))
    root, d, vh = root[order], d[order], vh[order]
    seg_key = root * (max_depth + 1) + d
    starts = np.flatnonzero(np.r_[True, seg_key[1:] != seg_key[:-1]])
    lens = np.diff(np.r_[starts, len(seg_key)])
    layer_hash = (_np_tuplehash_ragged(vh, starts, lens) & big) + np.uint64(1)
    seg_root = root[starts]
    seg_d = d[starts]
    n_layers = np.bincount(seg_root, minlength=n_roots)  # BFS layers are contiguous 0..L-1
    # ---- neighbourhood hashes: fast_hash_vec over layers (running hash in Python-int semantics)
    H = np.zeros((n_roots, max_depth + 1), dtype=np.uint64)
    Lmat = np.zeros((n_roots, max_depth + 1), dtype=np.uint64)
    Lmat[seg_root, seg_d] = layer_hash
    running = np.full(n_roots, 0xAAAAAAAA, dtype=np.int64)
    for i in range(max_depth + 1):
        h = _np_tuplehash([_np_int_hash(running), Lmat[:, i], np.full(n_roots, i, dtype=np.uint64)])
        running = running ^ h.view(np.int64)
        H[:, i] = (running.view(np.uint64) & big) + np.uint64(1)
    # ---- pair features for radius r in 0, 2, .., 2*complexity (expanded units)
    Lv, Lu = n_layers[pv], n_layers[pu]
    f_mol, f_block, f_feat, f_rank = [], [], [], []
    nd = complexity + 1
    for r in range(0, 2 * complexity + 1, 2):
        ok = (r < Lv) & (r < Lu)
        if not ok.any():
            continue
        hv, hu = H[pv[ok], r], H[pu[ok], r]
        first, second = np.minimum(hv, hu), np.maximum(hv, hu)
        dd = pd_[ok].astype(np.uint64)
        rr = np.full(len(hv), r, dtype=np.uint64)
        feat = (_np_tuplehash([first, second, rr, dd]) & np.uint64(bitmask)) + np.uint64(1)
        half = (_np_tuplehash([hu, rr, dd]) & np.uint64(bitmask)) + np.uint64(1)
        block = (r // 2) * nd + pd_[ok] // 2
        # EDeN creates blocks in (v, distance, radius) loop order; later blocks overwrite
        # earlier ones for colliding feature ids, so remember the creation rank.
        rank = local_v[ok] * (nd * nd) + (pd_[ok] // 2) * nd + r // 2
        for f in (feat, half):
            f_mol.append(pmol[ok])
            f_block.append(block)
            f_feat.append(f.astype(np.int64))
            f_rank.append(rank)
    fm = np.concatenate(f_mol)
    fb = np.concatenate(f_block)
    ff = np.concatenate(f_feat)
    fr = np.concatenate(f_rank)
    nb = nd * nd
    fsize = bitmask + 2
    # counts per (mol, block, feature)
    key = (fm * nb + fb) * fsize + ff
    ukey, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    u_mb = ukey // fsize
    u_feat = ukey % fsize
    # block creation rank = min rank over its entries
    mb_all = fm * nb + fb
    umb, mb_inv = np.unique(mb_all, return_inverse=True)
    mb_rank = np.full(len(umb), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(mb_rank, mb_inv, fr)
    # inner normalisation per (mol, block)
    u_mb_idx = np.searchsorted(umb, u_mb)
    sq = np.bincount(u_mb_idx, weights=counts.astype(np.float64) ** 2, minlength=len(umb))
    val = counts / np.sqrt(sq[u_mb_idx])
    # collisions across blocks: keep the value of the latest-created block
    u_mol = u_mb // nb
    u_rank = mb_rank[u_mb_idx]
    o = np.lexsort((u_rank, u_feat, u_mol))
    u_mol, u_feat, val = u_mol[o], u_feat[o], val[o]
    last = np.r_[(u_mol[1:] != u_mol[:-1]) | (u_feat[1:] != u_feat[:-1]), True]
    u_mol, u_feat, val = u_mol[last], u_feat[last], val[last]
    # global normalisation
    tot = np.bincount(u_mol, weights=val**2, minlength=len(graphs))
    val = val / np.sqrt(tot[u_mol])
    return sp.csr_matrix((val, (u_mol, u_feat)), shape=(len(graphs), fsize))


def mmd_linear(Fx, Fy) -> float:
    """Biased MMD^2 with a linear kernel = mean(K_xx) + mean(K_yy) - 2 mean(K_xy)."""
    mx = np.asarray(Fx.mean(axis=0)).ravel()
    my = np.asarray(Fy.mean(axis=0)).ravel()
    diff = mx - my
    return float(diff @ diff)


def _to_graph_list(items):
    out = []
    for it in items:
        if it is None:
            continue
        if isinstance(it, str):
            m = Chem.MolFromSmiles(it)
            if m is None or m.GetNumAtoms() == 0:
                continue
            out.append(m)
        elif isinstance(it, Chem.Mol):
            if it.GetNumAtoms():
                out.append(it)
        else:
            if it.number_of_nodes():
                out.append(it)
    return out


def _ref_key(items, *extra) -> str | None:
    if all(isinstance(s, str) for s in items):
        h = hashlib.sha256("\n".join(items).encode())
        h.update(repr(extra).encode())
        return h.hexdigest()
    return None


def _nspdk_vectors(graphs, backend: str, label_hash: str, complexity: int):
    if backend == "eden":
        from eden.graph import vectorize

        return vectorize([mol_to_nx(g) if isinstance(g, Chem.Mol) else g for g in graphs], complexity=complexity,
                         discrete=True)
    if backend == "fast":
        return nspdk_features(graphs, complexity=complexity, label_hash=label_hash)
    raise ValueError("backend must be 'fast' or 'eden'")


# ----------------------------------------------------------------------------- FCD
# ChemNet's LSTM and scipy's sqrtm run faster on one thread than on two contended ones
# (measured on the shared 2-core machine: 2,000 SMILES in 11 s with 1 thread, 26 s with 2;
# sqrtm of a 512 x 512 product 0.8 s with 1 BLAS thread, 3.3 s with 2).
FCD_TORCH_THREADS = 1


class _torch_threads:
    """Limit torch and BLAS threads (ChemNet forward pass, scipy ``sqrtm``) to ``n``."""

    def __init__(self, n):
        self.n = n
        self._blas = None

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)
            try:
                from threadpoolctl import threadpool_limits

                self._blas = threadpool_limits(self.n)
            except Exception:  # threadpoolctl missing: BLAS keeps its threads
                self._blas = None

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)
        if self._blas is not None:
            self._blas.restore_original_limits()


def _disk_cache_path(cache_dir, kind: str, key: str):
    if cache_dir is None or key is None:
        return None
    from .sources import resolve_dir

    return resolve_dir(cache_dir) / f"molgen_{kind}_{key[:24]}.npz"


# ----------------------------------------------------------------------------- reference sets
class Reference:
    """The reference molecules of the metrics: training SMILES (novelty) and test molecules (FCD, NSPDK).

    The test set's ChemNet statistics (``fcd_stats``) and NSPDK features (``nspdk_features``) are computed
    once per object, on first use, and kept on disk under ``cache_dir`` when given (relative: to the
    repository root), keyed by the SMILES; so is the ChemNet model that computes them. ``test_smiles`` may hold
    RDKit mols or networkx graphs for NSPDK (then nothing is cached on disk). ``train_is_canonical``: the
    training SMILES are RDKit canonical already (``MolDataset``'s are).
    """

    def __init__(self, train_smiles: Sequence[str] = (), test_smiles: Sequence = (), *,
                 train_is_canonical: bool = False, cache_dir: str | None = None):
        self.train_smiles, self.test_smiles = list(train_smiles), list(test_smiles)
        self.train_is_canonical, self.cache_dir = train_is_canonical, cache_dir
        self._nspdk: dict[tuple, sp.csr_matrix] = {}

    @classmethod
    def of_dataset(cls, dataset: str, cache_dir: str | None = "data/cache") -> "Reference":
        """The training and test SMILES of ``molgen.data.load_dataset(dataset)`` (default split, cached)."""
        from .data import load_dataset

        ds = load_dataset(dataset)
        return cls(ds.train_smiles, ds.test_smiles, train_is_canonical=True, cache_dir=cache_dir)

    @cached_property
    def train_set(self) -> set[str]:
        """Canonical training SMILES."""
        if self.train_is_canonical:
            return set(self.train_smiles)
        return {c for c in canonicalize_list(self.train_smiles) if c}

    @cached_property
    def chemnet(self):
        """fcd_torch's ChemNet on the CPU."""
        import warnings

        from fcd_torch import FCD

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return FCD(device="cpu", n_jobs=1, batch_size=512)

    @cached_property
    def fcd_stats(self) -> dict:
        """ChemNet mean and covariance of the test SMILES."""
        import warnings

        key = _ref_key(self.test_smiles, "fcd", "fcd_torch-ChemNet_v0.13")
        path = _disk_cache_path(self.cache_dir, "fcdref", key)
        if path is not None and path.exists():
            try:
                with np.load(path) as z:
                    return {"mu": z["mu"], "sigma": z["sigma"]}
            except Exception:
                pass
        with warnings.catch_warnings(), _torch_threads(FCD_TORCH_THREADS):
            warnings.simplefilter("ignore")
            stats = self.chemnet.precalc(list(self.test_smiles))
        if path is not None and "mu" in stats:
            try:
                write_npz(path, mu=stats["mu"], sigma=stats["sigma"])
            except OSError:
                pass
        return stats

    def nspdk_features(self, backend: str = "fast", label_hash: str = "stable", complexity: int = 4):
        """NSPDK features of the test molecules (empty or unparsable ones dropped); on disk only for the
        deterministic ``backend="fast"``, ``label_hash="stable"``."""
        spec = (backend, label_hash, complexity)
        if spec in self._nspdk:
            return self._nspdk[spec]
        key = _ref_key(self.test_smiles, *spec)
        path = _disk_cache_path(self.cache_dir, "nspdkref", key) if spec[:2] == ("fast", "stable") else None
        feats = None
        if path is not None and path.exists():
            try:
                feats = sp.load_npz(path)
            except Exception:
                feats = None
        if feats is None:
            feats = _nspdk_vectors(_to_graph_list(self.test_smiles), *spec)
            if path is not None:
                try:
                    with atomic_path(path, suffix=".tmp.npz") as tmp:
                        sp.save_npz(tmp, feats.tocsr())
                except OSError:
                    pass
        self._nspdk[spec] = feats
        return feats

    def fcd(self, gen_smiles: Sequence[str]) -> float:
        """Fréchet ChemNet Distance of the generated SMILES to the test set (NaN for fewer than two)."""
        import warnings

        gen_smiles = [s for s in gen_smiles if s]
        if len(gen_smiles) < 2:
            return float("nan")
        ref = self.fcd_stats
        with warnings.catch_warnings(), _torch_threads(FCD_TORCH_THREADS):
            warnings.simplefilter("ignore")
            gen = self.chemnet.precalc(gen_smiles)
            return float(self.chemnet.metric(ref, gen))

    def nspdk(self, gen, backend: str = "fast", label_hash: str = "stable", complexity: int = 4) -> float:
        """NSPDK MMD of the generated molecules (SMILES, RDKit mols or networkx graphs; empty or unparsable
        ones dropped) to the test set (NaN when none is left)."""
        gen_g = _to_graph_list(gen)
        if not gen_g:
            return float("nan")
        ref = self.nspdk_features(backend, label_hash, complexity)
        return mmd_linear(_nspdk_vectors(gen_g, backend, label_hash, complexity), ref)


def nspdk_mmd(
    gen, ref, backend: str = "fast", label_hash: str = "stable", complexity: int = 4, cache_dir: str | None = None
) -> float:
    """NSPDK MMD between two sets of molecules (SMILES, RDKit mols or networkx graphs).

    ``backend="fast"``: :func:`nspdk_features`; ``backend="eden"``: ``eden.graph.vectorize``.
    Empty / unparsable items are dropped (GDSS drops empty generated graphs).  Features of
    a SMILES reference set are cached on disk under ``cache_dir`` if given (only for the
    deterministic ``label_hash="stable"``); a :class:`Reference` keeps them in memory too.
    """
    return Reference(test_smiles=ref, cache_dir=cache_dir).nspdk(gen, backend, label_hash, complexity)


def fcd_reference_stats(ref_smiles: Sequence[str], cache_dir: str | None = None) -> dict:
    """ChemNet mean / covariance of a reference set, cached on disk under ``cache_dir`` if given."""
    return Reference(test_smiles=ref_smiles, cache_dir=cache_dir).fcd_stats


def fcd(gen_smiles: Sequence[str], ref_smiles: Sequence[str], cache_dir: str | None = None) -> float:
    """Fréchet ChemNet Distance (fcd_torch on CPU, canonicalizes SMILES itself).

    Reference statistics are cached on disk under ``cache_dir`` if given (in memory: :class:`Reference`).
    """
    return Reference(test_smiles=ref_smiles, cache_dir=cache_dir).fcd(gen_smiles)


# ----------------------------------------------------------------------------- all
def evaluate_samples(
    gen_smiles_or_mols,
    train_smiles: Sequence[str] | None = None,
    test_smiles: Sequence[str] | None = None,
    n_valid_wo_correction: int | None = None,
    *,
    dataset: str | None = None,
    reference: Reference | None = None,
    n_generated: int | None = None,
    compute_fcd: bool = True,
    compute_nspdk: bool = True,
    nspdk_backend: str = "fast",
    nspdk_label_hash: str = "stable",
    train_is_canonical: bool = False,
    cache_dir: str | None = "data/cache",
    timings: dict | None = None,
) -> dict:
    """GDSS's molecule metrics for one set of generated graphs.

    ``gen_smiles_or_mols``: one item per generated graph: SMILES, RDKit mol, or ``None``
    (a graph that did not decode); its length is ``n_samples``.
    ``n_valid_wo_correction``: how many of these graphs were valid before correction
    (``DecodeResult.n_valid_wo_correction``); ``None`` gives NaN for that metric.
    ``dataset``: instead of ``train_smiles``/``test_smiles``, take them from
    ``molgen.data.load_dataset(dataset)`` (default split, cached).
    ``reference``: instead of either, a :class:`Reference` (its statistics computed once for
    all the sample sets evaluated against it; ``train_is_canonical`` and ``cache_dir`` are its own).
    ``n_generated``: number of generated graphs when ``gen_smiles_or_mols`` lists only the
    decoded ones (e.g. a SMILES file); the missing ``n_generated - len(list)`` count as
    invalid.  Default: ``len(gen_smiles_or_mols)``.
    ``train_is_canonical``: skip canonicalizing the training SMILES (``MolDataset`` SMILES
    already are RDKit canonical).
    ``cache_dir``: where the FCD / NSPDK statistics of the test set are cached on disk
    (relative: to the repository root; ``None``: not on disk).
    ``timings``: optional dict filled with the seconds spent per metric.
    """
    import time

    t0 = time.perf_counter()
    given = (dataset is not None) + (reference is not None) + (train_smiles is not None or test_smiles is not None)
    if given > 1:
        raise ValueError("give one of dataset=, reference= or train_smiles/test_smiles")
    if dataset is not None:
        reference = Reference.of_dataset(dataset, cache_dir)
    elif reference is None:
        if train_smiles is None or test_smiles is None:
            raise ValueError("train_smiles and test_smiles (or dataset=) are required")
        reference = Reference(train_smiles, test_smiles, train_is_canonical=train_is_canonical, cache_dir=cache_dir)
    items = list(gen_smiles_or_mols)
    n = len(items)
    if n_generated is not None:
        if n_generated < n:
            raise ValueError(f"n_generated={n_generated} < number of items given ({n})")
        n = int(n_generated)
    mols, smiles = [], []
    for it in items:
        m, s = _item_to_mol_and_smiles(it)
        if m is not None:
            mols.append(m)
            smiles.append(s)
    n_valid = len(smiles)
    unique = set(smiles)
    t1 = time.perf_counter()
    novel = unique - reference.train_set
    t2 = time.perf_counter()
    out = {
        "n_samples": n,
        "n_valid": n_valid,
        "n_unique": len(unique),
        "n_novel": len(novel),
        "validity_wo_correction": (
            n_valid_wo_correction / n if n and n_valid_wo_correction is not None else float("nan")
        ),
        "validity": n_valid / n if n else float("nan"),
        "uniqueness": len(unique) / n_valid if n_valid else float("nan"),
        "novelty": len(novel) / len(unique) if unique else float("nan"),
        "fcd": float("nan"),
        "nspdk": float("nan"),
    }
    t3 = time.perf_counter()
    if compute_fcd and n_valid >= 2:
        out["fcd"] = reference.fcd(smiles)
    t4 = time.perf_counter()
    if compute_nspdk and n_valid >= 1:
        out["nspdk"] = reference.nspdk(mols, backend=nspdk_backend, label_hash=nspdk_label_hash)
    t5 = time.perf_counter()
    if timings is not None:
        timings.update(
            {"parse_validity_uniqueness": t1 - t0, "novelty": t2 - t1, "fcd": t4 - t3, "nspdk": t5 - t4, "total": t5 - t0}
        )
    return out


__all__ = [
    "Reference",
    "canonical_smiles",
    "canonicalize_list",
    "evaluate_samples",
    "fcd",
    "fcd_reference_stats",
    "mmd_linear",
    "mol_to_nx",
    "mols_to_nx",
    "nspdk_features",
    "nspdk_mmd",
]
