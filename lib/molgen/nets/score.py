"""The score of a noisy graph: masks, one network's score under its SDE (``score_fn``) and the pair of partial
scores (s_X, s_A) that the losses train and the samplers follow (``GraphScore``).

- masks: X is zero on padding nodes, A on every pair with a padding node;
- the scores: VE uses the network output as the score, VP and sub-VP use -output / std_t (GDSS's
  ``get_score_fn``).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..sde import SDE, VESDE, bcast

Tensor = torch.Tensor


def mask_x(x: Tensor, flags: Tensor) -> Tensor:
    """Node features (B, N, F) zeroed on padding nodes (flags (B, N))."""
    return x * flags.unsqueeze(-1)


def mask_adj(adj: Tensor, flags: Tensor) -> Tensor:
    """Adjacencies (B, N, N) zeroed on every pair with a padding node."""
    return adj * flags.unsqueeze(-1) * flags.unsqueeze(-2)


def score_fn(sde: SDE, net: torch.nn.Module) -> Callable[..., Tensor]:
    """``fn(x, adj, flags, t, **kw) -> score`` of one network under its SDE, as GDSS's ``get_score_fn``.

    GDSS's networks see no time; a network with ``time_conditioned = True`` is called as
    ``net(x, adj, flags, t, **kw)`` (``kw``: e.g. the complex a ``GraphScore`` lifted for it).
    """
    if getattr(net, "time_conditioned", False):
        def call(x, adj, flags, t, **kw):
            return net(x, adj, flags, t, **kw)
    else:
        def call(x, adj, flags, t):
            return net(x, adj, flags)
    if isinstance(sde, VESDE):
        def fn(x, adj, flags, t, **kw):
            return call(x, adj, flags, t, **kw)
    else:
        def fn(x, adj, flags, t, **kw):
            out = call(x, adj, flags, t, **kw)
            std = sde.marginal_prob(torch.zeros_like(t), t)[1]
            return -out / bcast(std, out)
    return fn


class GraphScore:
    """The pair of partial scores (s_X, s_A) at (X_t, A_t, t): one call evaluates both networks.

    Networks that read a complex lifted from the noisy graph (``lift_complex(adj, flags)`` and ``lift_key``, as
    ``nets.can``'s) and lift alike get one lift per call, passed to both as ``cx``; a network that lifts
    differently from its partner lifts its own.
    """

    def __init__(self, net_x: torch.nn.Module, net_a: torch.nn.Module, sde_x: SDE, sde_a: SDE):
        self.fn_x = score_fn(sde_x, net_x)
        self.fn_a = score_fn(sde_a, net_a)
        key_x, key_a = getattr(net_x, "lift_key", None), getattr(net_a, "lift_key", None)
        self.lift = net_x.lift_complex if key_x is not None and key_x == key_a else None

    def __call__(self, x: Tensor, adj: Tensor, flags: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        if self.lift is None:
            return self.fn_x(x, adj, flags, t), self.fn_a(x, adj, flags, t)
        cx = self.lift(adj, flags)
        return self.fn_x(x, adj, flags, t, cx=cx), self.fn_a(x, adj, flags, t, cx=cx)
