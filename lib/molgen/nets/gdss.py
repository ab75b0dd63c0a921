"""GDSS score networks (Jo, Lee, Hwang 2022): ScoreNetworkX (dense GCNs) and ScoreNetworkA (graph multi-head
attention over adjacency powers), on dense batched graphs, with the layer sizes of GDSS's configs.

Shapes: node features X (B, N, F), adjacency A (B, N, N), node flags (B, N) in {0, 1}. Like GDSS, the networks
see no time input (the VP/sub-VP score divides the output by the marginal std, see ``nets.score.score_fn``).

The functions are the ones of the GDSS reference code (``nets.gdss_reference`` recomputes them with GDSS's
loop-over-channels structure from the same parameters; the tests check that they agree), computed faster:

- edge features live on the strict upper triangle of pairs, (B, P, C) with P = N(N-1)/2. Every edge input of
  GDSS's network is symmetric (A, its powers, the symmetrised attention maps, the symmetrised layer outputs),
  so ``mlp(in) + mlp(in)^T = 2 mlp(in)`` is determined by the pairs i < j; diagonal entries of the hidden
  adjacencies never reach the output (the GCNs overwrite the diagonal with self-loops and the final score is
  masked there). This halves the edge work (36 of 81 pairs on QM9) and the output is symmetric by
  construction;
- the per-channel GCNs of a layer (one per adjacency channel, each with Q, K and V) share one stacked weight;
- on the CPU, fused C++ kernels (``nets.kernels``, built at first use with the system compiler) compute each
  attention layer's GCNs + attention in one call, every MLP in one call (ELU inside), and at inference
  (no gradient) the whole ScoreNetworkA forward in one call, splitting the batch over the network's
  ``set_kernel_threads`` threads. Without a compiler, on a GPU, or with ``set_use_kernels(net, False)``, the
  same functions run as batched PyTorch ops.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels

if TYPE_CHECKING:
    from ..config import RunConfig

Tensor = torch.Tensor


def glorot_(w: Tensor, fan_in: int, fan_out: int) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        w.uniform_(-bound, bound)


class MLP(nn.Module):
    """GDSS's MLP: ``num_layers`` linear maps with ELU in between (none after the last)."""

    def __init__(self, num_layers: int, in_dim: int, hidden_dim: int, out_dim: int, act=F.elu):
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = act

    def forward(self, x: Tensor | list[Tensor]) -> Tensor:
        """``x``: a tensor, or a list of tensors taken as their concatenation along the last axis."""
        parts = list(x) if isinstance(x, (list, tuple)) else [x]
        if self.act is F.elu and use_kernels(self, parts[0]):
            return kernels.mlp(parts, self.linears, kernel_threads(self))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        for lin in self.linears[:-1]:
            x = self.act(lin(x))
        return self.linears[-1](x)


def normalize_adj(adj: Tensor) -> Tensor:
    """GDSS's DenseGCNConv propagation matrix for adjacencies (..., N, N): the diagonal set to 1 (self-loops),
    then D^-1/2 A D^-1/2 with degrees clamped below at 1."""
    n = adj.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=adj.device)
    a = adj.masked_fill(eye, 1.0)
    d = a.sum(-1).clamp(min=1.0).rsqrt()
    return d.unsqueeze(-1) * a * d.unsqueeze(-2)


class MultiGCN(nn.Module):
    """C dense GCN convolutions of the same node features, the c-th one on adjacency channel c.

    ``weight`` (F_in, C, F_out) and ``bias`` (C, F_out); each channel's weight is glorot-initialised and its bias
    zero, as GDSS's DenseGCNConv. ``forward(x (B, N, F_in), adj_hat (B, C, N, N)) -> (B, C, N, F_out)``.
    """

    def __init__(self, in_dim: int, channels: int, out_dim: int, fan_out: int | None = None):
        super().__init__()
        self.in_dim, self.channels, self.out_dim = in_dim, channels, out_dim
        self.weight = nn.Parameter(torch.empty(in_dim, channels, out_dim))
        self.bias = nn.Parameter(torch.zeros(channels, out_dim))
        self._fan_out = fan_out or out_dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot_(self.weight, self.in_dim, self._fan_out)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, adj_hat: Tensor) -> Tensor:
        b, n, _ = x.shape
        h = (x.reshape(b * n, -1) @ self.weight.reshape(self.in_dim, -1)).reshape(b, n, self.channels, -1)
        return torch.matmul(adj_hat, h.transpose(1, 2)) + self.bias.unsqueeze(1)


class PairIndex:
    """Index bookkeeping for the strict upper triangle of N x N matrices, kept by the network that uses it for
    each (N, device) it meets; made outside inference mode, so that indices first built while sampling still
    serve training."""

    def __init__(self) -> None:
        self._built: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}

    def get(self, n: int, device) -> tuple[Tensor, Tensor]:
        """(flat (P,), back (N * N,)): the flat index i * N + j of each pair i < j, and for each entry of an
        N x N matrix its pair's position (P on the diagonal)."""
        key = (n, str(device))
        if key not in self._built:
            with torch.inference_mode(False):
                self._built[key] = self._build(n, device)
        return self._built[key]

    @staticmethod
    def _build(n: int, device) -> tuple[Tensor, Tensor]:
        iu = torch.triu_indices(n, n, 1, device=device)
        flat = iu[0] * n + iu[1]
        # for scattering pair values back to a dense symmetric matrix: index of (i, j) in the pair list for
        # i != j, and P (a zero row appended to the pair list) on the diagonal
        p = iu.shape[1]
        back = torch.full((n, n), p, dtype=torch.long, device=device)
        back[iu[0], iu[1]] = torch.arange(p, device=device)
        back[iu[1], iu[0]] = torch.arange(p, device=device)
        return flat, back.reshape(-1)


def pairs_of(dense: Tensor, flat: Tensor) -> Tensor:
    """(B, C, N, N) -> (B, P, C): the strict upper triangle, channels last."""
    b, c, n, _ = dense.shape
    return dense.reshape(b, c, n * n).index_select(2, flat).transpose(1, 2)


def dense_of(pairs: Tensor, back: Tensor, n: int) -> Tensor:
    """(B, P, C) -> (B, C, N, N) symmetric with a zero diagonal."""
    b, p, c = pairs.shape
    padded = torch.cat([pairs, pairs.new_zeros(b, 1, c)], dim=1)
    return padded.index_select(1, back).reshape(b, n, n, c).permute(0, 3, 1, 2)


class ScoreNetworkX(nn.Module):
    """s_theta(X_t, A_t) = MLP([H_0, H_1, ..., H_L]) with H_{i+1} = tanh(GCN(H_i, A_t)), H_0 = X_t; masked.
    ``out_feat``: the score's width when H_0 has more columns than X (derived features; default the input's)."""

    kernel_bound = True
    """On a CPU its work runs in the fused kernels; torch's own ops are tiny (``build.configure_threads``)."""

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "ScoreNetworkX":
        """Input: X and the derived features (``data.input_feat_num``); output: the score of X."""
        return cls(cfg.data.input_feat_num("x"), cfg.model.depth, cfg.model.nhid, out_feat=cfg.data.max_feat_num)

    def __init__(self, max_feat_num: int, depth: int, nhid: int, out_feat: int | None = None):
        super().__init__()
        self.nfeat, self.depth, self.nhid = max_feat_num, depth, nhid
        self.layers = nn.ModuleList(
            MultiGCN(max_feat_num if i == 0 else nhid, 1, nhid) for i in range(depth))
        self.fdim = max_feat_num + depth * nhid
        self.final = MLP(3, self.fdim, 2 * self.fdim, out_feat or max_feat_num)
        self.pairs = PairIndex()

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor) -> Tensor:
        hs = [x]
        if use_kernels(self, adj):
            b, n, _ = adj.shape
            e = pairs_of(adj.unsqueeze(1), self.pairs.get(n, adj.device)[0])  # B, P, 1
            threads = kernel_threads(self)
            for layer in self.layers:
                v = kernels.gmh(x, layer.weight, layer.bias, e, 0, self.nhid, 1, 1.0, threads)[0]
                x = torch.tanh(v.squeeze(2))
                hs.append(x)
        else:
            adj_hat = normalize_adj(adj).unsqueeze(1)  # B, 1, N, N
            for layer in self.layers:
                x = torch.tanh(layer(x, adj_hat).squeeze(1))
                hs.append(x)
        out = self.final(hs)
        return out * flags.unsqueeze(-1)


class AttentionLayer(nn.Module):
    """One layer of ScoreNetworkA: for each of C_in adjacency channels a graph multi-head attention block
    (GCN queries/keys/values, tanh attention averaged over heads and symmetrised), then a node MLP over the
    channels' values and an edge MLP over [attention maps, input adjacencies] giving C_out new adjacencies."""

    def __init__(self, num_linears: int, conv_input_dim: int, attn_dim: int, conv_output_dim: int,
                 input_dim: int, output_dim: int, num_heads: int = 4):
        super().__init__()
        if attn_dim % num_heads:
            raise ValueError(f"attention dim {attn_dim} is not divisible by num_heads {num_heads}")
        self.attn_dim, self.out_dim, self.num_heads = attn_dim, conv_output_dim, num_heads
        self.c_in, self.c_out = input_dim, output_dim
        # Q, K, V of every channel in one stacked GCN; glorot fans as three separate GCNs would have
        self.qkv = MultiGCN(conv_input_dim, input_dim, 2 * attn_dim + conv_output_dim)
        with torch.no_grad():
            w = self.qkv.weight
            glorot_(w[..., :attn_dim], conv_input_dim, attn_dim)
            glorot_(w[..., attn_dim:2 * attn_dim], conv_input_dim, attn_dim)
            glorot_(w[..., 2 * attn_dim:], conv_input_dim, conv_output_dim)
        hidden = 2 * max(input_dim, output_dim)
        self.mlp = MLP(num_linears, 2 * input_dim, hidden, output_dim)
        self.multi_channel = MLP(2, input_dim * conv_output_dim, hidden, conv_output_dim)
        self.scale = 1.0 / math.sqrt(conv_output_dim)

    def forward(self, x: Tensor, e: Tensor, dense: Tensor | None, flat: Tensor, node_mask: Tensor,
                pair_mask: Tensor, need_x: bool = True) -> tuple[Tensor | None, Tensor]:
        """x (B, N, F_in); e (B, P, C_in) pair values of the adjacency channels; dense (B, C_in, N, N) the same
        channels as matrices (None on the kernel path); node_mask (B, N, 1); pair_mask (B, P, 1).
        Returns x (B, N, F_out) (None if not ``need_x``) and e (B, P, C_out)."""
        b, n, _ = x.shape
        c, a, h = self.c_in, self.attn_dim, self.num_heads
        if dense is None:  # fused CPU kernel
            v, att_p = kernels.gmh(x, self.qkv.weight, self.qkv.bias, e, a, self.out_dim, h, self.scale,
                                   kernel_threads(self))
        else:
            qkv = self.qkv(x, normalize_adj(dense))  # B, C, N, 2a + o
            q = qkv[..., :a].unflatten(-1, (h, a // h)).transpose(2, 3)  # B, C, h, N, dh
            k = qkv[..., a:2 * a].unflatten(-1, (h, a // h)).transpose(2, 3)
            v = qkv[..., 2 * a:].transpose(1, 2)  # B, N, C, o
            att = torch.tanh(torch.matmul(q, k.transpose(-1, -2)) * self.scale).mean(2)  # B, C, N, N
            # the symmetrised map (S + S^T)/2 on pairs i < j
            att_p = 0.5 * (pairs_of(att, flat) + pairs_of(att.transpose(-1, -2), flat))
        x_out = None
        if need_x:
            x_out = torch.tanh(self.multi_channel(v.reshape(b, n, c * self.out_dim)) * node_mask)
        e_out = self.mlp([att_p, e])
        return x_out, 2.0 * e_out * pair_mask


class ScoreNetworkA(nn.Module):
    """s_phi(X_t, A_t) = MLP([A^1..A^c, E_1, ..., E_K]) over GMH layers; symmetric, zero diagonal, masked."""

    kernel_bound = True
    """On a CPU its work runs in the fused kernels; torch's own ops are tiny (``build.configure_threads``)."""

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "ScoreNetworkA":
        m, d = cfg.model, cfg.data
        return cls(d.input_feat_num("adj"), d.max_node_num, m.nhid, m.num_layers, m.num_linears, m.c_init, m.c_hid,
                   m.c_final, m.adim, m.num_heads, m.conv)

    def __init__(self, max_feat_num: int, max_node_num: int, nhid: int, num_layers: int, num_linears: int,
                 c_init: int, c_hid: int, c_final: int, adim: int, num_heads: int = 4, conv: str = "GCN"):
        super().__init__()
        if conv != "GCN":
            raise NotImplementedError("only GDSS's GCN attention (conv: GCN) is implemented")
        self.nfeat, self.max_node_num, self.nhid = max_feat_num, max_node_num, nhid
        self.num_layers, self.c_init = num_layers, c_init
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            if i == 0:
                self.layers.append(AttentionLayer(num_linears, max_feat_num, nhid, nhid, c_init, c_hid, num_heads))
            elif i == num_layers - 1:
                self.layers.append(AttentionLayer(num_linears, nhid, adim, nhid, c_hid, c_final, num_heads))
            else:
                self.layers.append(AttentionLayer(num_linears, nhid, adim, nhid, c_hid, c_hid, num_heads))
        self.fdim = c_hid * (num_layers - 1) + c_final + c_init
        self.final = MLP(3, self.fdim, 2 * self.fdim, 1)
        self.pairs = PairIndex()

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor) -> Tensor:
        b, n, _ = adj.shape
        fused = use_kernels(self, adj)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or adj.requires_grad
                                                  or any(p.requires_grad for p in self.parameters()))
        if fused and not needs_grad:
            return kernels.score_a_forward(self, x, adj, flags, kernel_threads(self))  # inference: one call
        flat, back = self.pairs.get(n, adj.device)
        node_mask = flags.unsqueeze(-1)
        pair_mask = pairs_of((flags.unsqueeze(-1) * flags.unsqueeze(-2)).unsqueeze(1), flat)  # B, P, 1
        powers = [adj]
        for _ in range(self.c_init - 1):
            powers.append(torch.matmul(powers[-1], adj))
        dense = torch.stack(powers, dim=1)  # B, c_init, N, N
        e = pairs_of(dense, flat)
        es = [e]
        for i, layer in enumerate(self.layers):
            # the last layer's node features are not used by GDSS's network: not computed
            x, e = layer(x, e, None if fused else dense, flat, node_mask, pair_mask, need_x=i + 1 < len(self.layers))
            es.append(e)
            if not fused and i + 1 < len(self.layers):
                dense = dense_of(e, back, n)
        score = self.final(es) * pair_mask  # B, P, 1
        return dense_of(score, back, n).squeeze(1)


def set_use_kernels(module: nn.Module, flag: bool) -> nn.Module:
    """Switch the fused CPU kernels on or off for ``module`` and all its submodules."""
    for m in module.modules():
        m.use_kernels = flag
    return module


def set_kernel_threads(module: nn.Module, threads: int | None) -> nn.Module:
    """The threads the fused CPU kernels of ``module`` and all its submodules split a batch over (None:
    torch's thread count at each call). They are Python threads running GIL-free C++, independent of torch's
    intra-op (OpenMP) threads, so torch can be kept at one thread for the many tiny ops."""
    for m in module.modules():
        m.kernel_threads = None if threads is None else max(1, int(threads))
    return module


def kernel_threads(module: nn.Module) -> int | None:
    """The kernel threads set for ``module`` (``set_kernel_threads``), None if none were."""
    return getattr(module, "kernel_threads", None)


def use_kernels(module: nn.Module, like: Tensor) -> bool:
    """The fused CPU kernels are used for CPU tensors when they could be built, unless
    ``module.use_kernels`` is False (or the module is being traced by torch.compile)."""
    return (getattr(module, "use_kernels", True) and like.device.type == "cpu" and like.dtype == torch.float32
            and not torch.compiler.is_compiling() and kernels.available())
