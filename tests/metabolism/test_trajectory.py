"""Trajectory matching: the shooting integrator, the segments, the Levenberg-Marquardt refinement, its
curvature intervals, and the refined fit end to end."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from metabolism import trajectory as tj
from metabolism.config import load_fit_config
from metabolism.fit import fit_data, metabolite_ranges
from metabolism.importers import load_network
from metabolism.measurements import Experiment, Measurements
from metabolism.simulate import TrueRHS, odeint
from metabolism.synthetic import draw_kinetics, make_problem

TOY = Path(__file__).parent / "fixtures" / "toy_network.csv"
CURVATURE = 0.002


@pytest.fixture(scope="module")
def toy():
    stoich, _ = load_network(TOY)
    net = draw_kinetics(stoich, seed=1)
    return net, make_problem(net, n_experiments=3, t_end=20, dt=0.2, noise=0.01, seed=2)


def test_shooting_matches_the_study_integrator_and_the_exact_solution(toy):
    net, _ = toy
    rhs = TrueRHS(net)
    c0 = torch.full((2, net.n_metabolites), 3.0, dtype=torch.float64)
    ref = odeint(rhs, c0, 6, 0.2, "rk4", substeps=4)
    got = tj.shoot(rhs, c0, torch.full((2, 5), 0.2, dtype=torch.float64), max_step=0.05)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    decay = tj.shoot(lambda c: -2.0 * c, torch.ones(1, 1, dtype=torch.float64),
                     torch.tensor([[0.1, 0.3, 0.0]], dtype=torch.float64), max_step=0.01)
    np.testing.assert_allclose(decay[0, :, 0].numpy(), np.exp(-2.0 * np.array([0, 0.1, 0.4, 0.4])), rtol=1e-8)


def test_segments_overlap_by_one_sample_and_mask_padding_and_gaps():
    t = np.arange(11) * 0.5
    c = np.linspace(1.0, 2.0, 11)[:, None] * np.ones((1, 2))
    c[3, 1] = np.nan
    data = Measurements(("A", "B"), (Experiment("e", t, c),))
    seg = tj.segments(data, 4)
    assert list(seg.start) == [0, 4, 8]
    assert seg.dt.shape == (3, 4) and seg.log_c.shape == (3, 5, 2)
    np.testing.assert_allclose(seg.dt[2].numpy(), [0.5, 0.5, 0.0, 0.0])
    assert not seg.mask[0, 3, 1] and seg.mask[0, 3, 0]
    assert seg.mask[2, :3].all() and not seg.mask[2, 3:].any()
    np.testing.assert_allclose(seg.log_c[1, 0].numpy(), np.log(c[4]))
    with pytest.raises(ValueError, match="at least one sample interval"):
        tj.segments(data, 0)


def test_the_tabulated_gnn_is_the_gnn(toy):
    from metabolism.config import ModelConfig
    from metabolism.model import MetabolismGNN
    from metabolism.windows import Tables

    net, pb = toy
    torch.manual_seed(0)
    model = MetabolismGNN(net, ModelConfig(hidden=16), c_scale=5.0).double()
    for p in model.parameters():
        p.data.normal_(0.0, 0.3)
    c = torch.as_tensor(np.concatenate([e.c for e in pb.data.experiments]))
    tab = tj.TabulatedGNN(Tables(model, float(c.min()) * 0.5, float(c.max()) * 1.5), net,
                          model.log_k.detach().numpy())
    with torch.no_grad():
        torch.testing.assert_close(tab(c), model(c), rtol=1e-5, atol=1e-7)


def _wrong_tables(net, lo: float, hi: float, size: int = 256):
    """Tables of the true functions made wrong the way a GNN's can be: the node term shifted by a line, each
    substrate function off by a smooth factor that is 1 at the middle of the range (not a gauge of k)."""
    met, rxn, order = net.substrate_edges()
    orders, idx = np.unique(order, return_inverse=True)
    log_grid = np.linspace(math.log(lo), math.log(hi), size)
    wave = 0.3 * np.sin(2 * np.pi * (log_grid - log_grid.mean()) / (log_grid[-1] - log_grid[0]))
    c = np.linspace(0.0, hi, size)
    node = -net.lam[:, None] * (c[None, :] - net.baseline[:, None]) + 0.01 + 0.002 * c[None, :]
    return SimpleNamespace(sub=orders[:, None] * log_grid[None, :] + wave[None, :], node=node, met=met, rxn=rxn,
                           order=idx, m=net.n_reactions, multiplicative=True, log_lo=math.log(lo),
                           log_hi=math.log(hi), hi=hi)


def _clean_with_wrong_tables(toy):
    """The toy network, noise-free data of it, all their concentrations, and ``_wrong_tables`` over them."""
    net, _ = toy
    clean = make_problem(net, n_experiments=3, t_end=20, dt=0.2, noise=0.0, seed=2).data
    c = np.concatenate([e.c for e in clean.experiments])
    return net, clean, c, _wrong_tables(net, float(c.min()) * 0.5, float(c.max()) * 1.5)


@pytest.mark.integration
def test_the_function_corrections_remove_a_gnn_style_misfit(toy):
    net, clean, c, tables = _clean_with_wrong_tables(toy)
    held = tj.TabulatedGNN(tables, net, np.log(net.k))
    tj.refine(held, clean, None, 10, ["log_k"], iterations=30, covariance=False)
    free = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True)
    ref = tj.refine(free, clean, None, 10, ["log_k", "alpha", "beta", "sub_correction"], iterations=30,
                    ridge={"sub_correction": 1e-4})
    err_held = np.abs(np.log10(held.k.detach().numpy() / net.k)).max()
    err_free = np.abs(np.log10(free.k.detach().numpy() / net.k)).max()
    assert err_held > 0.5 and err_free < 0.1 * err_held  # measured: 1.42 and 0.064
    m = net.n_reactions
    assert ref.cov.shape[0] == m + 2 * net.n_metabolites + free.sub_correction.numel()
    grid = np.geomspace(float(c.min()), float(c.max()), 5)
    out = free.functions(grid, np.ones((2, 5)), np.zeros((net.n_metabolites, 5)))
    with torch.no_grad():
        u = free._grid(torch.as_tensor(grid))[None, :].expand(2, -1)
        factor = free.log_factor(u, torch.arange(2)[:, None].expand(-1, 5)).exp().numpy()
    np.testing.assert_allclose(out["substrate"], factor, rtol=1e-12)
    assert np.abs(np.log(factor)).max() < 2.0  # the ridge: no correction runs away where no sample lies
    np.testing.assert_allclose(out["node"], (free.alpha[:, None] + free.beta[:, None] * torch.as_tensor(grid))
                               .detach().numpy(), rtol=1e-12)


@pytest.mark.integration
def test_a_curved_node_misfit_needs_a_curved_node_correction(toy):
    net, clean, c, tables = _clean_with_wrong_tables(toy)
    log_grid = np.linspace(tables.log_lo, tables.log_hi, tables.sub.shape[1])
    tables.sub = np.unique(net.substrate_edges()[2])[:, None] * log_grid[None, :]  # the true substrate function
    grid = np.linspace(0.0, tables.hi, tables.node.shape[1])
    tables.node = tables.node + CURVATURE * (grid[None, :] - float(np.median(c))) ** 2  # a curved node misfit
    errors = {}
    for degree in (1, 2):
        tab = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, node_degree=degree,
                              node_range=metabolite_ranges(clean))
        names = ["log_k", "alpha", "beta", *(["gamma"] if degree > 1 else []), "sub_correction"]
        tj.refine(tab, clean, None, 10, names, iterations=30, covariance=False, ridge={"sub_correction": 1e-4})
        errors[degree] = np.abs(np.log10(tab.k.detach().numpy() / net.k)).max()
    assert errors[1] > 0.02 and errors[2] < 0.01 * errors[1], errors  # measured: 0.031 and 1.8e-5


def test_the_node_curvature_is_legendre_on_each_metabolites_range_and_held_beyond(toy):
    net, pb = toy
    c = np.concatenate([e.c for e in pb.data.experiments])
    lo, hi = metabolite_ranges(pb.data)
    np.testing.assert_array_equal(lo, c.min(0))
    np.testing.assert_array_equal(hi, c.max(0))
    tables = _wrong_tables(net, float(c.min()) * 0.5, float(c.max()) * 1.5)
    tab = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, node_degree=3, node_range=(lo, hi))
    z = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64)[:, None]
    at = tab.node_mid + z * tab.node_half  # (6, n): the same z for every metabolite
    value, derivative = (v[:, 0].numpy() for v in tab._node_basis(at))
    zc = np.clip(z[:, 0].numpy(), -1, 1)
    np.testing.assert_allclose(value, np.stack([(3 * zc ** 2 - 1) / 2, (5 * zc ** 3 - 3 * zc) / 2], 1), atol=1e-12)
    half = float(tab.node_half[0])
    np.testing.assert_allclose(derivative[[2, 3]], np.array([[0.0, -1.5], [1.5, 0.375]]) / half, atol=1e-12)
    np.testing.assert_array_equal(derivative[[0, 5]], 0.0)  # beyond the range: held


def _models(net, data):
    """The two refinable models away from any special point: mass action, and tables of the kind a GNN
    learns with non-zero function corrections (multiplicative and additive rate terms)."""
    c = np.concatenate([e.c for e in data.experiments])
    ma = tj.MassActionODE(net, net.k * 1.3, net.lam * net.baseline + 0.01, -net.lam)
    out = [(ma, ["log_k", "alpha", "beta"])]
    for multiplicative in (True, False):
        tables = _wrong_tables(net, float(c.min()) * 0.5, float(c.max()) * 1.5)
        tables.multiplicative = multiplicative
        anchor = float(c.min()) * 2 if multiplicative else None  # the correction's 0 off the middle
        # knots over part of the samples' range (the correction constant beyond it) or over the tables'
        knots = (float(c.min()) * 2, float(np.median(c))) if multiplicative else None
        degree = 3 if multiplicative else 1  # a cubic node correction on one of them,
        # over a range that part of the samples lie beyond (where its curvature is held)
        ranges = tuple(np.quantile(c, q, axis=0) for q in (0.2, 0.8))
        tab = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, anchor=anchor, knot_range=knots,
                              node_degree=degree, node_range=ranges)
        with torch.no_grad():
            for p in (tab.alpha, tab.beta, tab.sub_correction):
                p.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(p.numel()))
            if degree > 1:
                tab.gamma.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(0))
        names = ["log_k", "alpha", "beta", *(["gamma"] if degree > 1 else []), "sub_correction"]
        out += [(tab, names), (tab, ["log_k"])]
    return out


def test_the_substrate_correction_keeps_the_gnns_gauge(toy):
    net, pb = toy
    c = np.concatenate([e.c for e in pb.data.experiments])
    tables = _wrong_tables(net, float(c.min()) * 0.5, float(c.max()) * 1.5)
    ranges = (None, (float(c.min()) * 2, float(c.max()) * 0.8))  # knots over the tables' range or the data's
    for anchor, knots in itertools.product((1.0, float(c.min()) * 2, 1e-9), ranges):
        # the gauge c_ref, another point, one below the tables
        tab = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, anchor=anchor, knot_range=knots)
        with torch.no_grad():
            tab.sub_correction.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(0))
            at = tab._grid(torch.tensor([anchor], dtype=torch.float64))
            factor = tab.log_factor(at.expand(2, 1), torch.arange(2)[:, None])
            inside = tab._grid(torch.tensor([1.37 * math.sqrt(float(c.min()) * float(c.max()))], dtype=torch.float64))
            beside = tab.log_factor(inside.expand(2, 1), torch.arange(2)[:, None])
        np.testing.assert_allclose(factor.numpy(), 0.0, atol=1e-12)
        assert np.abs(beside.numpy()).max() > 1e-3


def test_closed_form_jacobians_equal_autograd(toy):
    net, pb = toy
    c = torch.as_tensor(np.concatenate([e.c for e in pb.data.experiments]))[::7]
    for model, names in _models(net, pb.data):
        f, jc, parts = model.linearised(c, names)
        f_ad, jc_ad, parts_ad = tj.RateModel.linearised(model, c, names)
        torch.testing.assert_close(f, f_ad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(jc, jc_ad, rtol=1e-10, atol=1e-12)
        assert [p.shape[-1] for p in parts] == [p.shape[-1] for p in parts_ad]
        for part, part_ad in zip(parts, parts_ad):
            torch.testing.assert_close(part.expand_as(part_ad), part_ad, rtol=1e-10, atol=1e-12)
        assert float(jc.abs().max()) > 0 and all(float(p.abs().max()) > 0 for p in parts)


def test_the_sensitivities_are_the_derivative_of_the_shooting_residuals(toy):
    net, pb = toy
    seg = tj.segments(pb.data, 6)
    u = torch.log(torch.as_tensor(np.array([pb.data.experiments[e].c[s] for e, s in zip(seg.experiment, seg.start)])))
    B = u.shape[0]
    for model, names in _models(net, pb.data)[:2]:
        prob = tj._Problem(model, names, seg, step=0.07)  # irregular: 0.2 / 0.07 is three steps per interval
        theta = prob.flat()
        r, J = prob.linearised(theta, u)
        torch.testing.assert_close(r, prob.residuals(theta, u).reshape(B, -1), rtol=1e-12, atol=1e-12)
        by_theta = torch.autograd.functional.jacobian(lambda th: prob.residuals(th, u).reshape(B, -1), theta)
        by_u = torch.autograd.functional.jacobian(lambda uu: prob.residuals(theta, uu).reshape(B, -1), u)
        own = torch.stack([by_u[b, :, b, :] for b in range(B)])  # a segment's residuals move with its own state
        p = theta.numel()
        torch.testing.assert_close(J[..., :p], by_theta, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(J[..., p:], own, rtol=1e-9, atol=1e-12)


def test_the_stable_step_follows_the_fastest_mode():
    rhs = lambda c: -torch.tensor([1.0, 40.0], dtype=c.dtype) * c  # noqa: E731
    h = tj.stable_step(rhs, torch.ones(3, 2, dtype=torch.float64), safety=2.0)
    assert math.isclose(h, 2.0 / 40.0, rel_tol=1e-9)


def test_refinement_recovers_k_from_a_wrong_start_on_clean_data(toy):
    net, _ = toy
    clean = make_problem(net, n_experiments=3, t_end=20, dt=0.2, noise=0.0, seed=2).data
    start = net.k * np.exp(np.random.default_rng(0).normal(0, 0.3, net.n_reactions))
    ode = tj.MassActionODE(net, start, net.lam * net.baseline, -net.lam)
    ref = tj.refine(ode, clean, None, 10, ["log_k"], iterations=30)
    assert ref.improved and ref.loss_end < 1e-3 * ref.loss_start
    np.testing.assert_allclose(ode.k.detach().numpy(), net.k, rtol=1e-3)
    assert ref.cov.shape == (net.n_reactions, net.n_reactions)
    assert (np.diag(ref.cov) >= 0).all()


def test_the_refinements_states_are_its_fitted_trajectories_at_every_sample(toy):
    """From the true k on clean data, the fitted trajectories are the data at every sample, in the data's
    order, each segment (also the short last one of an experiment) written in full; only when asked."""
    net, _ = toy
    clean = make_problem(net, n_experiments=3, t_end=20, dt=0.2, noise=0.0, seed=2).data
    ode = tj.MassActionODE(net, net.k, net.lam * net.baseline, -net.lam)
    assert tj.refine(ode, clean, None, 7, ["log_k"], iterations=1, covariance=False).states is None
    ref = tj.refine(ode, clean, None, 7, ["log_k"], iterations=1, covariance=False, states=True)
    measured = np.concatenate([e.c for e in clean.experiments])
    assert ref.states.shape == measured.shape and np.isfinite(ref.states).all()
    np.testing.assert_allclose(ref.states, measured, rtol=1e-4)
    assert "states" not in ref.to_dict()


def test_the_second_stage_starts_on_the_first_stages_trajectories_when_asked(toy, monkeypatch):
    net, pb = toy
    calls = []
    refine = tj.refine

    def spy(rhs, data, init, segment, *args, **kwargs):
        out = refine(rhs, data, init, segment, *args, **kwargs)
        calls.append((init, out.states))
        return out

    monkeypatch.setattr(tj, "refine", spy)
    base = ["estimator=mass-action", "uncertainty.bootstrap=0", "refine.first_segment=5", "refine.segment=20",
            "refine.iterations=2"]
    for start in ("smoothed", "first-stage"):
        calls.clear()
        fit_data(net, pb.data, load_fit_config(overrides=[*base, f"refine.second_start={start}"]), progress=False)
        (first_init, first_states), (second_init, _) = calls
        assert (first_states is not None) == (start == "first-stage")
        assert (second_init is first_states) == (start == "first-stage")
        assert (second_init is first_init) == (start == "smoothed")


def test_a_step_bound_keeps_a_k_far_below_the_data_from_stalling_the_refinement(toy):
    """A k a million times too small: its rate term, gradient and curvature all vanish, so the damped step in
    its log is ~1/k, every trial integration fails and the stage gives up at once; bounded, it climbs."""
    net, pb = toy
    start = net.k.copy()
    start[0] *= 1e-6
    moved = {}
    for bound in (math.inf, 2.0):
        ode = tj.MassActionODE(net, start, np.zeros(net.n_metabolites), np.zeros(net.n_metabolites))
        ref = tj.refine(ode, pb.data, None, 10, ["log_k"], iterations=3, covariance=False, max_step=bound)
        moved[bound] = (ref.improved, float(np.log(ode.k.detach().numpy()[0] / start[0])))
    assert moved[math.inf] == (False, pytest.approx(0.0, abs=1e-9))
    assert moved[2.0][0] and moved[2.0][1] == pytest.approx(6.0)  # three steps, each at the bound


def _robust_inputs(r: torch.Tensor, J: torch.Tensor, p: int):
    N = tj._normal(J, r, p)
    return N, tj._inverse(tj._curvature(N).numpy())


def test_the_robust_covariance_profiles_each_segments_state_out():
    """Blocks of a whole segment: the cluster sandwich of the scores with each segment's state columns
    projected out explicitly (the information the Schur complement leaves to the global parameters)."""
    g = torch.Generator().manual_seed(0)
    B, times, n, p = 6, 5, 2, 3
    J = torch.randn(B, times * n, p + n, generator=g, dtype=torch.float64)
    r = torch.randn(B, times * n, generator=g, dtype=torch.float64)
    N, H_inv = _robust_inputs(r, J, p)
    got, G = tj.robust_covariance(J, r, N, H_inv, n, block=times)
    scores = []
    for b in range(B):
        Ju, Jk = J[b, :, p:].numpy(), J[b, :, :p].numpy()
        projected = Jk - Ju @ np.linalg.solve(Ju.T @ Ju, Ju.T @ Jk)
        scores.append(projected.T @ r[b].numpy())
    S = np.array(scores)
    assert G == B
    np.testing.assert_allclose(got, H_inv @ S.T @ S @ H_inv * B / (B - 1), rtol=1e-9, atol=1e-12)


def test_the_robust_covariance_widens_for_residuals_correlated_in_time_only():
    """Independent residuals: the sandwich agrees with sigma^2 H^-1; residuals that persist through a block
    (a model missing part of the dynamics) make it several times wider, where the curvature cannot tell."""
    g = torch.Generator().manual_seed(1)
    B, times, n, p, block = 100, 100, 3, 1, 10
    J = torch.randn(B, times * n, p + n, generator=g, dtype=torch.float64)
    J[..., :p] += 1.0  # a parameter's sensitivity that keeps its sign through time
    ratios = {}
    for kind in ("independent", "persistent"):
        e = torch.randn(B, times // block, 1, n, generator=g, dtype=torch.float64).expand(-1, -1, block, -1)
        r = (torch.randn(B, times * n, generator=g, dtype=torch.float64) if kind == "independent"
             else e.reshape(B, times * n).clone())
        N, H_inv = _robust_inputs(r, J, p)
        robust, _ = tj.robust_covariance(J, r, N, H_inv, n, block)
        sigma2 = float((r ** 2).sum()) / (r.numel() - p - B * n)
        ratios[kind] = np.diag(robust) / np.diag(sigma2 * H_inv)
    assert np.all(np.abs(ratios["independent"] - 1) < 0.15)
    assert np.all(ratios["persistent"] > 3)  # measured: 1.01 and 5.3 (about 1 + block / 2)


def test_a_parameter_the_data_ignore_gets_a_huge_variance_not_none():
    H = np.diag([4.0, 1.0, 0.0])
    cov = tj._inverse(H)
    np.testing.assert_allclose(np.diag(cov)[:2], [0.25, 1.0])
    assert cov[2, 2] > 1e12


def test_a_refinement_that_cannot_improve_leaves_the_parameters_alone(toy, monkeypatch):
    net, pb = toy
    ode = tj.MassActionODE(net, net.k, net.lam * net.baseline, -net.lam)
    before = ode.log_k.detach().clone()
    monkeypatch.setattr(tj, "_lm_step", lambda N, mu, *ridge: (torch.full_like(N.gk, 5.0), torch.zeros_like(N.gu)))
    ref = tj.refine(ode, pb.data, None, 10, ["log_k"], iterations=5, covariance=False)
    assert not ref.improved and ref.loss_end == ref.loss_start and ref.cov is None
    torch.testing.assert_close(ode.log_k.detach(), before, rtol=0, atol=0)


@pytest.mark.integration
def test_refined_mass_action_fit_lowers_the_trajectory_misfit_and_its_intervals_cover_the_truth(toy, tmp_path):
    net, pb = toy
    base = ["estimator=mass-action", "uncertainty.bootstrap=0"]
    weak = fit_data(net, pb.data, load_fit_config(overrides=base + ["refine.enabled=false"]), progress=False)
    refined = fit_data(net, pb.data, load_fit_config(overrides=base + ["refine.enabled=true"]), out=tmp_path,
                       progress=False)
    r = refined.report["refine"]
    assert r["enabled"] and r["improved"] and r["rmse_log_end"] < r["rmse_log_start"]
    assert 0.008 < r["rmse_log_end"] < 0.012  # the data's 1% noise: the misfit left is the noise
    assert r["parameters"] == ["log_k", "alpha", "beta"]
    assert refined.report["intervals"]["method"].startswith("curvature of the trajectory fit")
    err = np.abs(np.log10(refined.k) - np.log10(net.k))
    assert err.max() < 0.05
    I = refined.intervals
    assert np.isfinite(I.lo).all() and (I.lo < refined.k).all() and (refined.k < I.hi).all()
    assert ((net.k >= I.lo) & (net.k <= I.hi)).mean() >= 6 / 7
    robust = np.asarray(r["sd_log_k_robust"])  # beside the curvature's: same order where the model is right
    curvature = np.log(I.hi / refined.k) / 1.959964
    assert robust.shape == refined.k.shape and r["blocks"] > net.n_reactions
    assert 0.3 < float(np.median(robust / curvature)) < 3
    assert weak.report["refine"] == {"enabled": False}
    assert "alpha" in refined.functions and (tmp_path / "rate_constants.csv").exists()
    first = r["first_stage"]  # short segments first, then auto's long ones
    assert r["segment_length"] > 20 and first["segment_length"] == 20
    assert first["segments"] > r["segments"] and r["seconds"] > first["seconds"]
    one = fit_data(net, pb.data, load_fit_config(overrides=base + ["refine.first_segment=null"]), progress=False)
    assert one.report["refine"]["first_stage"] is None and one.report["refine"]["segment_length"] == r["segment_length"]


@pytest.mark.integration
def test_refined_gnn_fit_holds_its_functions_and_refines_k(toy):
    net, pb = toy
    fast = ["training.steps=300", "training.lbfgs_steps=10", "model.hidden=16", "uncertainty.bootstrap=0"]
    plain = fit_data(net, pb.data, load_fit_config(overrides=fast + ["refine.enabled=false"]), progress=False)
    refined = fit_data(net, pb.data, load_fit_config(overrides=fast + ["refine.functions=false"]), progress=False)
    np.testing.assert_allclose(refined.functions["substrate"], plain.functions["substrate"], rtol=1e-10)
    r = refined.report["refine"]
    assert r["parameters"] == ["log_k"] and r["rmse_log_end"] <= r["rmse_log_start"]
    np.testing.assert_allclose(refined.model.k.detach().numpy(), refined.k, rtol=1e-12)
    assert not np.allclose(refined.k, plain.k)
    joint = fit_data(net, pb.data, load_fit_config(overrides=fast), progress=False)  # the default: functions too
    r = joint.report["refine"]
    assert r["parameters"] == ["log_k", "alpha", "beta", "gamma", "sub_correction"]  # the node curvature too
    assert r["rmse_log_end"] <= refined.report["refine"]["rmse_log_end"] * 1.001
    assert not np.allclose(joint.functions["node"], plain.functions["node"])
    assert np.isfinite(joint.intervals.lo).all()


def test_a_refinement_beyond_its_memory_budget_is_skipped_and_said(toy):
    net, pb = toy
    need = tj.memory_bytes(pb.data, 10, net.n_reactions + 2 * net.n_metabolites)
    seg = tj.segments(pb.data, 10)
    P = net.n_reactions + 3 * net.n_metabolites
    assert need == 8 * seg.n_segments * P * (11 * net.n_metabolites + P)
    over = ["estimator=mass-action", "uncertainty.bootstrap=0", "refine.enabled=true", "refine.segment=10"]
    small = fit_data(net, pb.data, load_fit_config(overrides=over + [f"refine.max_memory_gb={0.5 * need / 1e9}"]),
                     progress=False)
    assert not small.report["refine"]["enabled"] and "refine.max_memory_gb" in small.report["refine"]["skipped"]
    assert small.report["intervals"]["method"] == "cluster-robust sandwich"
    enough = fit_data(net, pb.data, load_fit_config(overrides=over + [f"refine.max_memory_gb={2 * need / 1e9}"]),
                      progress=False)
    assert enough.report["refine"]["enabled"]


def test_knots_over_the_tables_range_are_the_default_and_a_data_range_places_them_inside(toy):
    """``knot_range`` equal to the tables' range is the default placement (the same model); a narrower one
    puts every knot inside it and holds the correction constant beyond it."""
    net, pb = toy
    c = np.concatenate([e.c for e in pb.data.experiments])
    lo, hi = float(c.min()) * 0.5, float(c.max()) * 1.5
    tables = _wrong_tables(net, lo, hi)
    default = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, anchor=1.0)
    same = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, anchor=1.0, knot_range=(lo, hi))
    inside = tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, anchor=1.0,
                             knot_range=(float(c.min()), float(np.median(c))))
    grid = torch.as_tensor(np.geomspace(lo, hi, 50))
    with torch.no_grad():
        for tab in (default, same, inside):
            tab.sub_correction.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(0))
        rows = torch.zeros(50, dtype=torch.long)
        f = {name: tab.log_factor(tab._grid(grid), rows).numpy()
             for name, tab in (("default", default), ("same", same), ("inside", inside))}
    np.testing.assert_allclose(f["same"], f["default"], rtol=1e-12, atol=1e-12)
    beyond = grid.numpy() >= np.median(c)
    assert np.ptp(f["inside"][beyond]) < 1e-12 < np.ptp(f["inside"][~beyond])
    with pytest.raises(ValueError, match="increasing"):
        tj.TabulatedGNN(tables, net, np.log(net.k), functions=True, knot_range=(2.0, 1.0))
