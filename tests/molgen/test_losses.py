"""Denoising score matching on X and A (GDSS eq. 4)."""
from __future__ import annotations

import pytest
import torch

from molgen.losses import dsm_loss, perturb
from molgen.nets.gdss import ScoreNetworkA, ScoreNetworkX
from molgen.nets.score import GraphScore, score_fn
from molgen.sde import VESDE, VPSDE, subVPSDE


def molecules(b: int = 8, n: int = 9, f: int = 4, seed: int = 0):
    """Clean one-hot X and symmetric bond-order A (0..3) on the first k nodes of each graph."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(3, n + 1, (b,), generator=g)
    flags = (torch.arange(n)[None] < k[:, None]).float()
    x = torch.nn.functional.one_hot(torch.randint(0, f, (b, n), generator=g), f).float() * flags[..., None]
    bonds = torch.randint(0, 4, (b, n, n), generator=g).float() * (torch.rand(b, n, n, generator=g) < 0.3)
    a = bonds.triu(1)
    a = (a + a.transpose(1, 2)) * flags[:, :, None] * flags[:, None, :]
    return x, a, flags


def small_nets(f=4, n=9, seed=0):
    torch.manual_seed(seed)
    return ScoreNetworkX(f, 2, 8), ScoreNetworkA(f, n, 8, 2, 2, 2, 4, 2, 8, 2)


def test_perturbation_is_masked_and_symmetric():
    x, a, flags = molecules()
    sde = VESDE(0.1, 1.0, 100)
    t = torch.full((8,), 0.7)
    x_t, a_t, z_x, z_a, std_x, std_a = perturb(sde, sde, x, a, flags, t, torch.Generator().manual_seed(1))
    assert torch.equal(a_t, a_t.transpose(1, 2)) and torch.equal(z_a, z_a.transpose(1, 2))
    assert torch.all(a_t.diagonal(dim1=1, dim2=2) == 0)
    pair = flags[:, :, None] * flags[:, None, :]
    assert torch.all(a_t[pair == 0] == 0) and torch.all(x_t[flags == 0] == 0)
    torch.testing.assert_close(a_t, a + std_a[:, None, None] * z_a)


def test_vp_score_is_scaled_network_output():
    net = lambda x, adj, flags: torch.ones_like(x)  # noqa: E731
    for sde in (VPSDE(0.1, 1.0, 10), subVPSDE(0.1, 1.0, 10)):
        t = torch.tensor([0.3, 0.9])
        s = score_fn(sde, net)(torch.zeros(2, 3, 4), None, None, t)
        std = sde.marginal_prob(torch.zeros(2), t)[1]
        torch.testing.assert_close(s, -1.0 / std[:, None, None].expand(2, 3, 4))
    s = score_fn(VESDE(0.1, 1.0, 10), net)(torch.zeros(2, 3, 4), None, None, torch.tensor([0.3, 0.9]))
    assert torch.all(s == 1)


def test_loss_reductions_and_exact_score():
    x, a, flags = molecules()
    net_x, net_a = small_nets()
    sde_x, sde_a = VPSDE(0.1, 1.0, 100), VESDE(0.1, 1.0, 100)
    ls = dsm_loss(net_x, net_a, sde_x, sde_a, x, a, flags, generator=torch.Generator().manual_seed(3))
    lm = dsm_loss(net_x, net_a, sde_x, sde_a, x, a, flags, reduce_mean=True,
                  generator=torch.Generator().manual_seed(3))
    # 0.5 * sum over a graph's entries = 0.5 * (entries) * mean over them
    torch.testing.assert_close(ls[0], 0.5 * 9 * 4 * lm[0])
    torch.testing.assert_close(ls[1], 0.5 * 9 * 9 * lm[1])
    assert ls[0].ndim == 0 and ls[0] > 0 and ls[1] > 0

    # a network that outputs the true conditional score -(A_t - A_0)/std^2 (VE: score = output) has zero loss
    class Oracle(torch.nn.Module):
        def __init__(self, which):
            super().__init__()
            self.which = which

        def forward(self, x_t, a_t, fl):
            return -(a_t - a) / std_a[:, None, None] ** 2 if self.which == "a" else torch.zeros_like(x_t)

    g = torch.Generator().manual_seed(4)
    t = torch.rand(8, generator=g) * (1 - 1e-5) + 1e-5
    std_a = sde_a.marginal_prob(a, t)[1]
    _, la = dsm_loss(Oracle("x"), Oracle("a"), sde_x, sde_a, x, a, flags, generator=torch.Generator().manual_seed(4))
    assert la.item() < 1e-9


def test_graph_score_evaluates_both_networks():
    x, a, flags = molecules(b=3)
    net_x, net_a = small_nets()
    sde = VESDE(0.1, 1.0, 10)
    sx, sa = GraphScore(net_x, net_a, sde, sde)(x, a, flags, torch.full((3,), 0.5))
    assert sx.shape == x.shape and sa.shape == a.shape


@pytest.mark.parametrize("kinds", [("VE", "VE"), ("VP", "VE")])
def test_loss_decreases_on_a_tiny_dataset(kinds):
    from molgen.sde import make_sde

    x, a, flags = molecules(b=8, seed=1)
    x, a, flags = x.repeat(16, 1, 1), a.repeat(16, 1, 1), flags.repeat(16, 1)
    net_x, net_a = small_nets(seed=2)
    sde_x, sde_a = make_sde(kinds[0], 0.1, 1.0, 1000), make_sde(kinds[1], 0.1, 1.0, 1000)
    opt = torch.optim.Adam(list(net_x.parameters()) + list(net_a.parameters()), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    hist = []
    for _ in range(80):
        lx, la = dsm_loss(net_x, net_a, sde_x, sde_a, x, a, flags, generator=g)
        opt.zero_grad()
        (lx + la).backward()
        opt.step()
        hist.append((lx.item(), la.item()))
    first = torch.tensor(hist[:10]).mean(0)
    last = torch.tensor(hist[-10:]).mean(0)
    assert torch.all(last < 0.8 * first), (first, last)
