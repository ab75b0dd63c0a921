"""Denoising score matching on X and A (GDSS eq. 4), with GDSS's choices.

- one continuous time t ~ U[eps, T] per graph, shared by X and A;
- X_t = mean_t(X_0) + std_t z_X with z_X ~ N(0, I) on the real nodes; A_t = mean_t(A_0) + std_t z_A with z_A
  symmetric, zero on the diagonal and on padding (``sym_noise``); both perturbed tensors masked by the flags;
- the scores of the perturbed graphs: ``nets.score.GraphScore`` (VE: the network output, VP and sub-VP:
  -output / std_t);
- lambda(t) = std_t^2 (no likelihood weighting): the loss per graph is ``reduce(|s std_t + z|^2)`` with
  ``reduce`` = 0.5 * sum (``reduce_mean: false``, GDSS's setting) or the mean over all entries; averaged over
  the batch, and returned separately for X and A (each network has its own optimiser).
"""
from __future__ import annotations

import torch

from .nets.score import GraphScore, mask_adj, mask_x
from .sde import SDE, bcast, sym_noise

Tensor = torch.Tensor


def perturb(sde_x: SDE, sde_a: SDE, x0: Tensor, adj0: Tensor, flags: Tensor, t: Tensor,
            generator: torch.Generator | None = None):
    """(X_t, A_t, z_X, z_A, std_X, std_A) for clean graphs at times t."""
    z_x = mask_x(torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype), flags)
    mean_x, std_x = sde_x.marginal_prob(x0, t)
    x_t = mask_x(mean_x + bcast(std_x, x0) * z_x, flags)
    z_a = mask_adj(sym_noise(adj0.shape, generator=generator, device=adj0.device, dtype=adj0.dtype), flags)
    mean_a, std_a = sde_a.marginal_prob(adj0, t)
    a_t = mask_adj(mean_a + bcast(std_a, adj0) * z_a, flags)
    return x_t, a_t, z_x, z_a, std_x, std_a


def dsm_loss(net_x, net_a, sde_x: SDE, sde_a: SDE, x0: Tensor, adj0: Tensor, flags: Tensor,
             eps: float = 1e-5, reduce_mean: bool = False,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Mean over the batch of the denoising score-matching losses of X and of A."""
    b = adj0.shape[0]
    t = torch.rand(b, generator=generator, device=adj0.device, dtype=adj0.dtype) * (sde_a.T - eps) + eps
    x_t, a_t, z_x, z_a, std_x, std_a = perturb(sde_x, sde_a, x0, adj0, flags, t, generator)
    score = GraphScore(net_x, net_a, sde_x, sde_a)
    s_x, s_a = score(x_t, a_t, flags, t)
    err_x = (s_x * bcast(std_x, s_x) + z_x).square().reshape(b, -1)
    err_a = (s_a * bcast(std_a, s_a) + z_a).square().reshape(b, -1)
    if reduce_mean:
        lx, la = err_x.mean(-1), err_a.mean(-1)
    else:
        lx, la = 0.5 * err_x.sum(-1), 0.5 * err_a.sum(-1)
    return lx.mean(), la.mean()
