"""The GDSS score networks written the way the GDSS reference code computes them (one GCN and one attention
block per adjacency channel in Python loops, full N x N edge MLPs, ``mlp + mlp^T`` symmetrisation), reading the
parameters of the vectorised modules in ``nets.gdss``.

It is the oracle of the tests (the fast networks must compute the same function) and the slow baseline of
``benchmarks/molgen_speed.py``. Not used for training.
"""
from __future__ import annotations

import math

import torch

from .gdss import MLP, ScoreNetworkA, ScoreNetworkX

Tensor = torch.Tensor


def dense_gcn(x: Tensor, adj: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """GDSS's DenseGCNConv: self-loops set to 1, symmetric degree normalisation (degrees clamped at 1)."""
    n = adj.shape[-1]
    adj = adj.clone()
    idx = torch.arange(n, device=adj.device)
    adj[:, idx, idx] = 1
    out = torch.matmul(x, weight)
    d = adj.sum(dim=-1).clamp(min=1).pow(-0.5)
    adj = d.unsqueeze(-1) * adj * d.unsqueeze(-2)
    return torch.matmul(adj, out) + bias


def mask_x(x: Tensor, flags: Tensor) -> Tensor:
    return x * flags[:, :, None]


def mask_adjs(adjs: Tensor, flags: Tensor) -> Tensor:
    if adjs.dim() == 4:
        flags = flags.unsqueeze(1)
    return adjs * flags.unsqueeze(-1) * flags.unsqueeze(-2)


def pow_tensor(x: Tensor, cnum: int) -> Tensor:
    xc, x_ = [x.unsqueeze(1)], x.clone()
    for _ in range(cnum - 1):
        x_ = torch.bmm(x_, x)
        xc.append(x_.unsqueeze(1))
    return torch.cat(xc, dim=1)


def _mlp(mlp: MLP, x: Tensor) -> Tensor:
    return mlp(x)


def reference_score_x(model: ScoreNetworkX, x: Tensor, adj: Tensor, flags: Tensor) -> Tensor:
    xs = [x]
    for layer in model.layers:
        x = torch.tanh(dense_gcn(x, adj, layer.weight[:, 0], layer.bias[0]))
        xs.append(x)
    return mask_x(_mlp(model.final, torch.cat(xs, dim=-1)), flags)


def _attention(layer, c: int, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
    a, o, h = layer.attn_dim, layer.out_dim, layer.num_heads
    w, b = layer.qkv.weight[:, c], layer.qkv.bias[c]
    q = dense_gcn(x, adj, w[:, :a], b[:a])
    k = dense_gcn(x, adj, w[:, a:2 * a], b[a:2 * a])
    v = dense_gcn(x, adj, w[:, 2 * a:], b[2 * a:])
    dim_split = a // h
    q_ = torch.cat(q.split(dim_split, 2), 0)
    k_ = torch.cat(k.split(dim_split, 2), 0)
    att = torch.tanh(q_.bmm(k_.transpose(1, 2)) / math.sqrt(o))
    att = att.view(-1, *adj.shape).mean(dim=0)
    return v, (att + att.transpose(-1, -2)) / 2


def _attention_layer(layer, x: Tensor, adj: Tensor, flags: Tensor) -> tuple[Tensor, Tensor]:
    masks, xs = [], []
    for c in range(layer.c_in):
        v, m = _attention(layer, c, x, adj[:, c])
        masks.append(m.unsqueeze(-1))
        xs.append(v)
    x_out = torch.tanh(mask_x(_mlp(layer.multi_channel, torch.cat(xs, dim=-1)), flags))
    mlp_in = torch.cat([torch.cat(masks, dim=-1), adj.permute(0, 2, 3, 1)], dim=-1)
    s = mlp_in.shape
    out = _mlp(layer.mlp, mlp_in.view(-1, s[-1])).view(s[0], s[1], s[2], -1).permute(0, 3, 1, 2)
    return x_out, mask_adjs(out + out.transpose(-1, -2), flags)


def reference_score_a(model: ScoreNetworkA, x: Tensor, adj: Tensor, flags: Tensor) -> Tensor:
    adjc = pow_tensor(adj, model.c_init)
    adjs = [adjc]
    for layer in model.layers:
        x, adjc = _attention_layer(layer, x, adjc, flags)
        adjs.append(adjc)
    feats = torch.cat(adjs, dim=1).permute(0, 2, 3, 1)
    score = _mlp(model.final, feats).view(*feats.shape[:-1])
    n = adj.shape[-1]
    score = score * (1 - torch.eye(n, device=adj.device)).unsqueeze(0)
    return mask_adjs(score, flags)
