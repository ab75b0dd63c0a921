"""Samplers: node counts, shapes, symmetry, masks, determinism, predictors and correctors by name."""
from __future__ import annotations

import math

import pytest
import torch

from molgen.nets.gdss import ScoreNetworkA, ScoreNetworkX
from molgen.nets.score import GraphScore
from molgen.sampling import (CORRECTORS, PREDICTORS, LangevinCorrector, PCSampler, S4Solver, make_sampler,
                             node_count_histogram, sample_flags, sample_graphs)
from molgen.sde import VESDE, make_sde


def small_score(kind_x="VE", kind_a="VE", n_scales=20, seed=0):
    torch.manual_seed(seed)
    net_x, net_a = ScoreNetworkX(4, 2, 8), ScoreNetworkA(4, 9, 8, 2, 2, 2, 4, 2, 8, 2)
    sde_x, sde_a = make_sde(kind_x, 0.1, 1.0, n_scales), make_sde(kind_a, 0.1, 1.0, n_scales)
    return GraphScore(net_x, net_a, sde_x, sde_a), sde_x, sde_a


def test_sample_flags_follow_the_histogram():
    counts = torch.tensor([0, 0, 1, 0, 3, 0, 0, 0, 0, 6])
    flags = sample_flags(counts, 20000, 9, generator=torch.Generator().manual_seed(0))
    k = flags.sum(1)
    assert set(k.unique().tolist()) == {2, 4, 9}
    assert abs((k == 9).float().mean().item() - 0.6) < 0.02
    # atoms first, then padding
    assert torch.all(flags[:, :-1] >= flags[:, 1:])
    torch.testing.assert_close(node_count_histogram(flags, 9).float() / 20000, counts.float() / 10, atol=0.02,
                               rtol=0)


@pytest.mark.parametrize("predictor,corrector", [("Reverse", "Langevin"), ("Euler", "None"), ("Reverse", "None"),
                                                 ("None", "Langevin"), ("S4", "None")])
@pytest.mark.parametrize("kinds", [("VE", "VE"), ("VP", "VE"), ("subVP", "VP")])
def test_samplers_shapes_symmetry_and_masks(predictor, corrector, kinds):
    score, sde_x, sde_a = small_score(*kinds)
    sampler = make_sampler(sde_x, sde_a, predictor=predictor, corrector=corrector, snr=0.2, scale_eps=0.7)
    flags = sample_flags(torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1.0]), 24, 9,
                         generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        x, adj = sampler(score, flags, 4, generator=torch.Generator().manual_seed(2))
    assert x.shape == (24, 9, 4) and adj.shape == (24, 9, 9)
    assert torch.isfinite(x).all() and torch.isfinite(adj).all()
    assert torch.allclose(adj, adj.transpose(1, 2), atol=1e-6)
    assert torch.all(adj.diagonal(dim1=1, dim2=2).abs() < 1e-6)
    pair = flags[:, :, None] * flags[:, None, :]
    assert torch.all(adj[pair == 0] == 0) and torch.all(x[flags == 0] == 0)
    assert adj[pair == 1].abs().sum() > 0


def test_sampling_is_deterministic_given_a_generator():
    score, sde_x, sde_a = small_score()
    sampler = make_sampler(sde_x, sde_a)
    counts = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1.0])
    runs = [sample_graphs(score, sampler, 10, counts, 9, 4, batch_size=4,
                          generator=torch.Generator().manual_seed(9)) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    x, adj, flags = runs[0]
    assert x.shape == (10, 9, 4) and adj.shape == (10, 9, 9) and flags.shape == (10, 9)


def test_components_by_name_and_evaluations_per_step():
    assert set(PREDICTORS) == {"Reverse", "Euler", "None"} and set(CORRECTORS) == {"Langevin", "None"}
    _, sde_x, sde_a = small_score()
    assert isinstance(make_sampler(sde_x, sde_a, predictor="S4"), S4Solver)
    pc = make_sampler(sde_x, sde_a, predictor="Reverse", corrector="Langevin", n_steps=2)
    assert isinstance(pc, PCSampler) and pc.evaluations_per_step == 3
    with pytest.raises(ValueError, match="unknown predictor"):
        make_sampler(sde_x, sde_a, predictor="Heun")


def test_langevin_step_size_follows_snr():
    sde = VESDE(0.1, 1.0, 10)
    corr = LangevinCorrector(sde, snr=0.2, scale_eps=0.0, n_steps=1)
    x = torch.zeros(4, 3, 3)
    score = torch.ones(4, 3, 3)
    noise = torch.full((4, 3, 3), 2.0)
    x_new, x_mean = corr.update(x, torch.full((4,), 0.5), score, noise)
    # step = 2 (snr |z| / |s|)^2 with |z| = 2 |s|: 2 * (0.2 * 2)^2 = 0.32; scale_eps = 0 -> no noise
    torch.testing.assert_close(x_mean, torch.full_like(x, 0.32))
    torch.testing.assert_close(x_new, x_mean)


def test_reverse_diffusion_with_exact_score_recovers_data_scale():
    """PC sampling (Reverse + Langevin) of Gaussian 'graphs' N(0, s0^2 I) with the exact score."""
    s0 = 0.5
    sde = make_sde("VE", 0.01, 2.0, 200)

    class Exact:
        def __call__(self, x, adj, flags, t):
            var = s0 ** 2 + sde.marginal_prob(torch.zeros_like(t), t)[1] ** 2
            return -x / var[:, None, None], -adj / var[:, None, None]

    sampler = PCSampler(sde, sde, predictor="Reverse", corrector="Langevin", snr=0.16, scale_eps=1.0)
    flags = torch.ones(400, 9)
    x, adj = sampler(Exact(), flags, 4, generator=torch.Generator().manual_seed(0))
    off = adj[:, ~torch.eye(9, dtype=torch.bool)]
    assert abs(x.std().item() - s0) < 0.05
    assert abs(off.std().item() - s0) < 0.05
    assert math.isfinite(x.mean().item())
