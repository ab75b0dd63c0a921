"""Forward SDEs: marginals against closed forms and simulation, priors, discretisations, reverse-time sanity."""
from __future__ import annotations

import math

import pytest
import torch

from molgen.sde import VESDE, VPSDE, make_sde, subVPSDE, sym_noise


def _sdes():
    return [VPSDE(0.1, 1.0, 1000), VESDE(0.1, 1.0, 1000), subVPSDE(0.1, 1.0, 1000), VPSDE(0.1, 20.0, 1000),
            VESDE(0.01, 50.0, 1000)]


@pytest.mark.parametrize("sde", _sdes(), ids=lambda s: f"{s.name}")
def test_marginal_matches_closed_form(sde):
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    x0 = torch.full((5, 2, 3), 2.0)
    mean, std = sde.marginal_prob(x0, t)
    assert mean.shape == x0.shape and std.shape == (5,)
    if isinstance(sde, VESDE):
        sigma = sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
        torch.testing.assert_close(std, sigma)
        torch.testing.assert_close(mean, x0)
    else:
        b0, b1 = sde.beta_0, sde.beta_1
        integral = b0 * t + 0.5 * (b1 - b0) * t ** 2  # int_0^t beta
        alpha = torch.exp(-0.5 * integral)
        torch.testing.assert_close(mean, alpha[:, None, None] * x0)
        expected = 1 - alpha ** 2 if isinstance(sde, subVPSDE) else torch.sqrt(1 - alpha ** 2)
        torch.testing.assert_close(std, expected)


@pytest.mark.parametrize("sde", [VPSDE(0.1, 5.0, 200), subVPSDE(0.1, 5.0, 200), VESDE(0.1, 2.0, 200)],
                         ids=lambda s: s.name)
def test_marginal_matches_simulated_forward_sde(sde):
    """Euler-Maruyama paths of dx = f dt + g dw from x0 = 1 have the marginal mean and std at t = 0.6."""
    gen = torch.Generator().manual_seed(0)
    n, steps, t_end = 10000, 100, 0.6
    x = torch.ones(n, 1, 1)
    dt = t_end / steps
    for i in range(steps):
        t = torch.full((n,), i * dt)
        f, g = sde.sde(x, t)
        x = x + f * dt + g[:, None, None] * math.sqrt(dt) * torch.randn(x.shape, generator=gen)
    mean, std = sde.marginal_prob(torch.ones(1, 1, 1), torch.tensor([t_end]))
    assert abs(x.mean().item() - mean.item()) < 0.03
    assert abs(x.std().item() - std.item()) < 0.03 * max(1.0, std.item())


def test_prior_sampling_shapes_and_symmetry():
    sde = VESDE(0.1, 1.0, 100)
    gen = torch.Generator().manual_seed(0)
    a = sde.prior_sampling_sym((64, 9, 9), generator=gen)
    assert torch.equal(a, a.transpose(-1, -2))
    assert torch.all(a.diagonal(dim1=-2, dim2=-1) == 0)
    off = a[:, ~torch.eye(9, dtype=torch.bool)]
    assert abs(off.std().item() - 1.0) < 0.05
    x = sde.prior_sampling((64, 9, 4), generator=gen)
    assert x.shape == (64, 9, 4)
    z = sym_noise((3, 5, 5))
    assert torch.equal(z, z.transpose(-1, -2))
    big = VESDE(0.01, 50.0, 10).prior_sampling((20000,), generator=gen)
    assert abs(big.std().item() - 50.0) < 1.5  # score_sde's N(0, sigma_max^2) prior


def test_make_sde_uses_gdss_convention():
    ve = make_sde("VE", 0.2, 1.0, 1000)
    assert isinstance(ve, VESDE) and ve.sigma_min == 0.2 and ve.sigma_max == 1.0
    vp = make_sde("VP", 0.1, 1.0, 1000)
    assert isinstance(vp, VPSDE) and vp.beta_1 == 1.0
    with pytest.raises(ValueError, match="unknown SDE"):
        make_sde("XX", 0.1, 1.0, 10)


def test_discretisations():
    vp = VPSDE(0.1, 20.0, 1000)
    t = torch.tensor([0.5, 1.0])
    x = torch.ones(2, 3, 3)
    f, G = vp.discretize(x, t)
    i = (t * 999).long()
    torch.testing.assert_close(G, torch.sqrt(vp.discrete_betas[i]))
    torch.testing.assert_close(f, (torch.sqrt(vp.alphas[i]) - 1)[:, None, None] * x)
    ve = VESDE(0.1, 1.0, 1000)
    f, G = ve.discretize(x, torch.tensor([0.0, 1.0]))
    assert torch.all(f == 0)
    torch.testing.assert_close(G[0], ve.discrete_sigmas[0])
    torch.testing.assert_close(G[1], torch.sqrt(ve.discrete_sigmas[-1] ** 2 - ve.discrete_sigmas[-2] ** 2))


@pytest.mark.parametrize("sde", [VPSDE(0.1, 1.0, 1000), subVPSDE(0.1, 1.0, 1000), VESDE(0.1, 1.0, 1000)],
                         ids=lambda s: s.name)
def test_transition_is_a_forward_kernel(sde):
    """Var_t = m^2 Var_s + var(s -> t) for the S4 kernel (s = t + dt, dt < 0), m = 1 / mean factor."""
    t = torch.tensor([0.7, 0.3])
    dt = torch.tensor([-0.05, -0.2])
    mean_factor, std = sde.transition(torch.ones(2, 1, 1), t, dt)
    std_t = sde.marginal_prob(torch.zeros(2, 1, 1), t)[1]
    std_s = sde.marginal_prob(torch.zeros(2, 1, 1), t + dt)[1]
    m = 1.0 / mean_factor.reshape(2)
    torch.testing.assert_close(std_t ** 2, m ** 2 * std_s ** 2 + std ** 2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["VP", "VE", "subVP"])
@pytest.mark.parametrize("method", ["sde", "discretize", "ode"])
def test_reverse_sde_recovers_gaussian_data(kind, method):
    """Data N(0, s0^2): with the exact score of every marginal, the reverse SDE (or the probability-flow ODE)
    run from the prior ends with standard deviation s0."""
    s0 = 0.5
    sde = make_sde(kind, 0.1, 5.0 if kind != "VE" else 3.0, 200)
    n_steps = 200

    def score(x, t):
        mean_coef = sde.marginal_prob(torch.ones_like(t), t)[0]
        std = sde.marginal_prob(torch.zeros_like(t), t)[1]
        var = mean_coef ** 2 * s0 ** 2 + std ** 2
        return -x / var[:, None, None]

    rsde = sde.reverse(score, probability_flow=method == "ode")
    gen = torch.Generator().manual_seed(1)
    n = 4000
    mean_T, std_T = sde.marginal_prob(torch.ones(1), torch.ones(1))
    x = torch.randn(n, 1, 1, generator=gen) * math.sqrt(mean_T.item() ** 2 * s0 ** 2 + std_T.item() ** 2)
    ts = torch.linspace(1.0, 1e-3, n_steps)
    for i in range(n_steps):
        t = torch.full((n,), ts[i].item())
        z = torch.randn(x.shape, generator=gen)
        if method == "discretize":
            f, G = rsde.discretize(x, t)
            x = x - f + G[:, None, None] * z
        else:
            dt = -1.0 / n_steps
            drift, g = rsde.sde(x, t)
            x = x + drift * dt + g[:, None, None] * math.sqrt(-dt) * z
    assert abs(x.std().item() - s0) < 0.035, x.std().item()
    assert abs(x.mean().item()) < 0.04
