"""The GNN of the inverse problem, on the bipartite metabolite-reaction graph.

dc_i/dt = MLP_node(c_i, a_i) + sum_j S_ij k_j AGG_{k in sub(j)} MLP_sub(c_k, R_kj)

AGG is a product (mass action) or a sum (additive). Two message-passing steps: substrates -> reactions
(MLP_sub messages, aggregated into rate terms) and reactions -> metabolites (S_ij k_j phi_j, summed).

Gauge. k -> alpha k with MLP_sub -> MLP_sub / alpha (per substrate order) leaves dc/dt unchanged. We fix it by
construction: MLP_sub(c, s) = c_ref^s * exp(g(c, s) - g(c_ref, s)), so MLP_sub(c_ref, s) = c_ref^s exactly,
which the true mass-action term c^s also satisfies; the learned k is then directly in the true gauge.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from .config import ModelConfig
from .network import Stoichiometry


def mlp(n_in: int, hidden: int, n_layers: int, n_out: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers - 1):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class SubstrateFunction(nn.Module):
    """MLP_sub(c, s): the learned substrate term, positive, gauge-fixed at c_ref."""

    def __init__(self, hidden: int, n_layers: int, c_ref: float, use_log: bool, c_scale: float = 5.0):
        super().__init__()
        self.net = mlp(2, hidden, n_layers)
        nn.init.zeros_(self.net[-1].weight)  # start from the constant function c_ref**s: no built-in shape
        nn.init.zeros_(self.net[-1].bias)
        self.c_ref, self.use_log, self.c_scale = c_ref, use_log, c_scale

    def _g(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = torch.log(c.clamp_min(1e-8)) if self.use_log else c / self.c_scale
        x, s = torch.broadcast_tensors(x, s)  # c (..., 1) against several orders s (n_orders,)
        return self.net(torch.stack([x, s], dim=-1)).squeeze(-1)

    def forward(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Evaluate at concentrations c for orders s (broadcastable against c; s varies along the last axis)."""
        return torch.exp(self.log_value(c, s))

    def log_value(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """log MLP_sub(c, s), the form in which it is tabulated (``metabolism.windows``)."""
        s = torch.as_tensor(s, dtype=c.dtype, device=c.device)
        g_ref = self._g(torch.full_like(s, self.c_ref), s)
        return self._g(c, s) - g_ref + s * math.log(self.c_ref)


class SubstrateToReaction(MessagePassing):
    """Messages MLP_sub(c_k, R_kj) from substrates, aggregated per reaction (product or sum).

    MLP_sub is evaluated once per metabolite and distinct order (not per edge); each edge picks its order.
    """

    def __init__(self, f_sub: SubstrateFunction, multiplicative: bool):
        super().__init__(aggr="mul" if multiplicative else "sum", node_dim=0, flow="source_to_target")
        self.f_sub = f_sub

    def forward(self, c: torch.Tensor, edge_index: torch.Tensor, orders: torch.Tensor, order_idx: torch.Tensor,
                n_reactions: int) -> torch.Tensor:
        x = self.f_sub(c.unsqueeze(-1), orders)  # (n, B, n_orders)
        return self.propagate(edge_index, x=x, order_idx=order_idx, size=(c.shape[0], n_reactions))

    def message(self, x_j: torch.Tensor, order_idx: torch.Tensor) -> torch.Tensor:
        pick = order_idx.view(-1, 1, 1).expand(-1, x_j.shape[1], 1)
        return x_j.gather(-1, pick).squeeze(-1)


class ReactionToMetabolite(MessagePassing):
    """Messages S_ij v_j from reactions to metabolites, summed."""

    def __init__(self):
        super().__init__(aggr="sum", node_dim=0, flow="source_to_target")

    def forward(self, v: torch.Tensor, edge_index: torch.Tensor, coeff: torch.Tensor, n_metabolites: int):
        return self.propagate(edge_index, v=v, coeff=coeff, size=(v.shape[0], n_metabolites))

    def message(self, v_j: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        return coeff.unsqueeze(-1) * v_j


class MetabolismGNN(nn.Module):
    """The learnable model; forward(c) with c of shape (B, n) returns dc/dt of shape (B, n).

    Internally nodes are the leading dimension (n, B) so that one graph serves a whole batch of frames.
    """

    def __init__(self, net: Stoichiometry, cfg: ModelConfig, c_scale: float = 5.0):
        super().__init__()
        n, m = net.n_metabolites, net.n_reactions
        self.n, self.m = n, m
        met, rxn, order = net.substrate_edges()
        self.register_buffer("sub_index", torch.as_tensor(np.stack([met, rxn]), dtype=torch.long))
        orders, order_idx = np.unique(order, return_inverse=True)
        self.register_buffer("orders", torch.as_tensor(orders, dtype=torch.float32))
        self.register_buffer("sub_order_idx", torch.as_tensor(order_idx, dtype=torch.long))
        rxn_s, met_s, coeff = net.stoichiometry_edges()
        self.register_buffer("stoich_index", torch.as_tensor(np.stack([rxn_s, met_s]), dtype=torch.long))
        self.register_buffer("stoich_coeff", torch.as_tensor(coeff, dtype=torch.float32))
        self.f_sub = SubstrateFunction(cfg.hidden, cfg.n_layers, cfg.c_ref, cfg.sub_input == "log", c_scale)
        self.to_reaction = SubstrateToReaction(self.f_sub, net.aggregation == "multiplicative")
        self.to_metabolite = ReactionToMetabolite()
        self.embedding = nn.Parameter(0.1 * torch.randn(n, cfg.embedding_dim))
        self.node_mlp = mlp(1 + cfg.embedding_dim, cfg.hidden, cfg.n_layers)
        self.log_k = nn.Parameter(torch.full((m,), -1.5 * math.log(10)))
        self.c_scale, self.node_scale = c_scale, cfg.node_scale

    @property
    def k(self) -> torch.Tensor:
        return self.log_k.exp()

    def node_term(self, c: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """MLP_node(c_i, a_i) for c of shape (B, n)."""
        a = self.embedding if embedding is None else embedding
        x = torch.cat([(c / self.c_scale).unsqueeze(-1), a.expand(c.shape[0], -1, -1)], dim=-1)
        return self.node_scale * self.node_mlp(x).squeeze(-1)

    def phi(self, c: torch.Tensor) -> torch.Tensor:
        """Rate terms without k, AGG_{k in sub(j)} MLP_sub(c_k, R_kj), shape (B, m)."""
        return self.to_reaction(c.T, self.sub_index, self.orders, self.sub_order_idx, self.m).T

    def reaction_term(self, c: torch.Tensor) -> torch.Tensor:
        v = self.k * self.phi(c)
        return self.to_metabolite(v.T, self.stoich_index, self.stoich_coeff, self.n).T

    def forward(self, c: torch.Tensor, node: bool = True) -> torch.Tensor:
        """dc/dt; without ``node`` the node term is 0 (training's warm-up fits the reactions alone)."""
        return (self.node_term(c) if node else torch.zeros_like(c)) + self.reaction_term(c)
