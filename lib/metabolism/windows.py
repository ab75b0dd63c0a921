"""The integral objective's windows as training rows of the GNN.

Every window needs the model's terms at all of its quadrature nodes, and the nodes of a data set number in
the tens of thousands for each of the n metabolites, so evaluating the MLPs there at every training step
would cost seconds. But the two learned functions are one-dimensional per order (MLP_sub(c, s)) and per
metabolite (MLP_node(c, a_i)), and the nodes' concentrations are data, fixed for the whole fit. So the
functions are tabulated at every step on a grid (``sub_size`` points of log c per order, ``node_size``
points of c per metabolite: a few thousand MLP evaluations), and read at the nodes by cubic interpolation
whose grid cells and weights are computed once here. At a node l, log phi_j is then a fixed linear
combination of the table (sum over the substrates of reaction j of four interpolation weights each), so a
step costs a few gathers (``benchmarks/metabolism_windows.py`` times it against evaluating the MLPs).
Interpolation error: below 1e-8 of the value on 1,024 points (tested).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy import sparse

from .model import MetabolismGNN
from .weakform import WeakForm


class _FixedSparse(torch.autograd.Function):
    """y = M x for a constant sparse M (CSR), with the backward M^T g from a stored CSR transpose: torch's
    own sparse-dense product also differentiates with respect to M, which costs ten times the forward."""

    @staticmethod
    def forward(ctx, M: torch.Tensor, Mt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.Mt = Mt
        return M @ x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return None, None, ctx.Mt @ g


class FixedSparse:
    """A constant sparse matrix applied with ``_FixedSparse`` (x may be (k,) or (k, d))."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int],
                 dtype: torch.dtype, device: torch.device | str):
        M = sparse.csr_matrix((np.ravel(values), (np.ravel(rows), np.ravel(cols))), shape=shape)
        self.M, self.Mt = self._torch(M, dtype, device), self._torch(M.T.tocsr(), dtype, device)

    @staticmethod
    def _torch(M: sparse.csr_matrix, dtype: torch.dtype, device) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(torch.as_tensor(M.indptr, dtype=torch.int64),
                                           torch.as_tensor(M.indices, dtype=torch.int64),
                                           torch.as_tensor(M.data, dtype=dtype), M.shape).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _FixedSparse.apply(self.M, self.Mt, x)


def _catmull_rom(u: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell indices (..., 4) and Catmull-Rom weights (..., 4) of grid coordinates u (clamped to the grid)."""
    u = np.clip(u, 0.0, size - 1 - 1e-9)
    i = np.clip(np.floor(u).astype(np.int64), 1, size - 3)
    t = u - i
    t2, t3 = t * t, t * t * t
    w = np.stack([-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0, -1.5 * t3 + 2.0 * t2 + 0.5 * t,
                  0.5 * t3 - 0.5 * t2], -1)
    idx = np.clip(i[..., None] + np.arange(-1, 3), 0, size - 1)
    return idx, w


class WindowData:
    """Rows = windows of a ``WeakForm``; ``terms(model, rows)`` gives their integrated rate terms, node terms
    and left sides, through tables of the model's functions (see the module docstring)."""

    def __init__(self, wf: WeakForm, model: MetabolismGNN, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float64, sub_size: int = 1024, node_size: int = 512):
        c = np.asarray(wf.c, float)
        positive = c[c > 0]
        self.lo, self.hi = float(positive.min()) * 0.5, float(c.max()) * 1.5
        self.sub_size, self.node_size = sub_size, node_size
        self.log_lo, self.log_hi = math.log(self.lo), math.log(self.hi)
        u_sub = (np.log(np.maximum(c, self.lo)) - self.log_lo) / (self.log_hi - self.log_lo) * (sub_size - 1)
        u_node = c / self.hi * (node_size - 1)
        met = model.sub_index[0].cpu().numpy()
        order = model.sub_order_idx.cpu().numpy()
        rxn = model.sub_index[1].cpu().numpy()
        N, n, m = c.shape[0], c.shape[1], model.m
        self.m, self.n, self.n_nodes = m, n, N
        self.multiplicative = model.to_reaction.aggr == "mul"
        kw = dict(dtype=dtype, device=device)
        idx_sub, w_sub = _catmull_rom(u_sub[:, met], sub_size)  # (N, E, 4)
        # rows: (node, reaction) for a product (log phi sums over substrates) or (node, edge) for a sum
        out_col = rxn if self.multiplicative else np.arange(met.size)
        width = m if self.multiplicative else met.size
        rows_sub = (np.arange(N)[:, None, None] * width + out_col[None, :, None]).repeat(4, -1)
        self.sub_map = FixedSparse(rows_sub, idx_sub + (order * sub_size)[None, :, None], w_sub,
                                   (N * width, int(model.orders.numel()) * sub_size), dtype, device)
        self.edge_reaction = torch.as_tensor(rxn, device=device)
        idx_node, w_node = _catmull_rom(u_node, node_size)  # (N, n, 4)
        rows_node = np.broadcast_to(np.arange(N * n).reshape(N, n, 1), idx_node.shape)
        self.node_map = FixedSparse(rows_node, idx_node + (np.arange(n) * node_size)[None, :, None], w_node,
                                    (N * n, n * node_size), dtype, device)
        W, L = wf.index.shape
        rows = np.repeat(np.arange(W), L)
        self.quadrature = FixedSparse(rows, wf.index, wf.weight, (W, N), dtype, device)
        self.y = torch.as_tensor(wf.y, **kw)
        self.sub_grid = torch.linspace(self.log_lo, self.log_hi, sub_size, **kw).exp()
        self.node_grid = torch.linspace(0.0, self.hi, node_size, **kw)
        self.c = torch.as_tensor(c, **kw) if N <= node_size else None  # few nodes: the node MLP at the nodes

    @property
    def n_rows(self) -> int:
        return self.y.shape[0]

    @property
    def target(self) -> torch.Tensor:
        return self.y

    @property
    def device(self) -> torch.device:
        return self.y.device

    def node_values(self, model: MetabolismGNN, node: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """phi (N, m) and the node term (N, n; 0 without ``node``) at every quadrature node, from this step's
        tables."""
        sub_table = model.f_sub.log_value(self.sub_grid.unsqueeze(-1), model.orders.to(self.sub_grid.dtype))
        read = self.sub_map(sub_table.T.reshape(-1, 1)).view(self.n_nodes, -1)
        if self.multiplicative:
            phi = read.exp()  # the rows already summed log MLP_sub over each reaction's substrates
        else:
            phi = torch.zeros(self.n_nodes, self.m, dtype=read.dtype, device=read.device)
            phi = phi.index_add(1, self.edge_reaction, read.exp())
        if not node:
            return phi, torch.zeros(self.n_nodes, self.n, dtype=phi.dtype, device=phi.device)
        if self.c is not None:
            return phi, model.node_term(self.c)
        node_table = model.node_term(self.node_grid.unsqueeze(-1).expand(-1, self.n)).T.reshape(-1, 1)
        node = self.node_map(node_table).view(self.n_nodes, self.n)
        return phi, node

    def terms(self, model: MetabolismGNN, rows: torch.Tensor, node: bool = True):
        """(phi, node, target) of the windows ``rows``: every term integrated against the window's psi (the node
        term 0 without ``node``)."""
        phi, node = self.node_values(model, node)
        both = torch.cat([phi, node], 1)
        integrated = self.quadrature(both)[rows]
        return integrated[:, :self.m], integrated[:, self.m:], self.y[rows]


class Tables:
    """The model's two functions tabulated once (no gradient), to evaluate them on many weak forms cheaply,
    e.g. on the bootstrap replicates of a fit whose functions are held fixed."""

    def __init__(self, model: MetabolismGNN, lo: float, hi: float, sub_size: int = 1024, node_size: int = 512):
        p = model.log_k
        self.log_lo, self.log_hi, self.hi = math.log(lo), math.log(hi), hi
        self.sub_size, self.node_size = sub_size, node_size
        with torch.no_grad():
            grid = torch.linspace(self.log_lo, self.log_hi, sub_size, dtype=p.dtype, device=p.device).exp()
            self.sub = model.f_sub.log_value(grid.unsqueeze(-1), model.orders.to(p.dtype)).T.cpu().numpy()
            node_grid = torch.linspace(0.0, hi, node_size, dtype=p.dtype, device=p.device)
            self.node = model.node_term(node_grid.unsqueeze(-1).expand(-1, model.n)).T.cpu().numpy()
        self.met = model.sub_index[0].cpu().numpy()
        self.rxn = model.sub_index[1].cpu().numpy()
        self.order = model.sub_order_idx.cpu().numpy()
        self.m = model.m
        self.multiplicative = model.to_reaction.aggr == "mul"

    def terms(self, wf: WeakForm) -> tuple[np.ndarray, np.ndarray]:
        """Integrated rate terms (W, m) and node terms (W, n) of the tabulated model on ``wf``."""
        c = np.asarray(wf.c, float)
        u = (np.log(np.maximum(c[:, self.met], math.exp(self.log_lo))) - self.log_lo) \
            / (self.log_hi - self.log_lo) * (self.sub_size - 1)
        idx, w = _catmull_rom(u, self.sub_size)
        read = (self.sub[self.order[None, :, None], idx] * w).sum(-1)  # (N, E) log MLP_sub
        phi = np.zeros((c.shape[0], self.m))
        np.add.at(phi.T, self.rxn, (read if self.multiplicative else np.exp(read)).T)
        if self.multiplicative:
            phi = np.exp(phi)
        idx, w = _catmull_rom(c / self.hi * (self.node_size - 1), self.node_size)
        node = (self.node[np.arange(c.shape[1])[None, :, None], idx] * w).sum(-1)
        return wf.integrate(phi), wf.integrate(node)
