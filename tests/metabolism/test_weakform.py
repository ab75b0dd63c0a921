"""The integral objective: exact on polynomial trajectories, exact recovery of k on clean data, smoothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import make_smoothing_spline

from metabolism import massaction as ma
from metabolism import smoothing as sm
from metabolism import weakform as wfm
from metabolism.evaluate import r2_identity
from metabolism.importers import load_network
from metabolism.measurements import Experiment, Measurements
from metabolism.synthetic import draw_kinetics, make_problem

TOY = Path(__file__).parent / "fixtures" / "toy_network.csv"


def test_weak_form_is_exact_on_a_cubic_trajectory():
    """-int psi' c dt = int psi c' dt must hold to rounding error when c is a cubic (the interpolating spline
    reproduces it and 4 Gauss nodes per interval integrate the degree-6 products exactly)."""
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 10, 40))
    coef = rng.normal(size=(4, 3))
    c = np.polynomial.polynomial.polyval(t, coef).T + 50.0
    dc = np.polynomial.polynomial.polyval(t, np.polynomial.polynomial.polyder(coef)).T
    data = Measurements(("a", "b", "c"), (Experiment("e", t, c),))
    wf = wfm.build(data, window=6, nodes=4, smoothing="none", log=False)
    # the right side int psi c' from the exact derivative at the same nodes
    gx, gw = np.polynomial.legendre.leggauss(4)
    a, b = t[:-1], t[1:]
    tn = ((a + b)[:, None] / 2 + (b - a)[:, None] / 2 * gx).ravel()
    dcn = np.polynomial.polynomial.polyval(tn, np.polynomial.polynomial.polyder(coef)).T
    rhs = wf.integrate(dcn)
    np.testing.assert_allclose(wf.y, rhs, rtol=1e-10, atol=1e-10 * np.abs(dc).max())
    np.testing.assert_allclose(wf.weight.sum(1), 1.0, rtol=1e-12)  # psi has unit integral


def test_mass_action_least_squares_recovers_k_exactly_from_clean_concentrations():
    stoich, _ = load_network(TOY)
    net = draw_kinetics(stoich, seed=1)
    pb = make_problem(net, n_experiments=3, t_end=30, dt=0.1, seed=2)
    fit = ma.fit_linear(stoich, ma.weak_design(stoich, wfm.build(pb.data, window=16)))
    np.testing.assert_allclose(fit.k, net.k, rtol=1e-4)
    np.testing.assert_allclose(fit.lam, net.lam, rtol=2e-2, atol=1e-4)
    assert r2_identity(np.log10(net.k), np.log10(fit.k)) > 0.99999


def test_weak_form_beats_finite_differences_under_noise():
    stoich, _ = load_network(TOY)
    net = draw_kinetics(stoich, seed=1)
    pb = make_problem(net, n_experiments=3, t_end=30, dt=0.1, noise=0.02, seed=2)
    weak = ma.fit_linear(stoich, ma.weak_design(stoich, wfm.build(pb.data, window=32)))
    fd = ma.fit_linear(stoich, ma.derivative_design(stoich, *wfm.finite_differences(pb.data)))
    err = lambda k: np.abs(np.log10(np.maximum(k, 1e-12)) - np.log10(net.k)).mean()  # noqa: E731
    assert err(weak.k) < err(fd.k)


def test_smoothing_spline_equals_scipys_at_a_given_penalty():
    rng = np.random.default_rng(1)
    x = np.sort(rng.uniform(0, 20, 120))
    y = np.sin(x)[:, None] + 0.1 * rng.standard_normal((120, 2))
    for lam in (1e-3, 0.1, 10.0):
        ours, _ = sm.smooth_values(x, y, lam)
        for j in range(2):
            np.testing.assert_allclose(ours[:, j], make_smoothing_spline(x, y[:, j], lam=lam)(x), atol=1e-9)


def test_gcv_trace_matches_the_dense_influence_matrix():
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(0, 5, 30))
    T = x.size
    q, r = sm._operators(x)
    lam = 0.05
    Q = np.zeros((T, T - 2))
    for j in range(T - 2):
        Q[j:j + 3, j] = q[:, j]
    h = np.diff(x)
    R = np.diag((h[:-1] + h[1:]) / 3) + np.diag(h[1:-1] / 6, 1) + np.diag(h[1:-1] / 6, -1)
    A = np.eye(T) - lam * Q @ np.linalg.solve(R + lam * Q.T @ Q, Q.T)
    assert sm._trace_influence(sm._qtq(q), r, lam, T) == pytest.approx(np.trace(A), rel=1e-9)


def test_gcv_smooths_noise_and_keeps_clean_data():
    x = np.linspace(0, 10, 200)
    clean = 3 + np.sin(x)
    noisy = clean * (1 + 0.05 * np.random.default_rng(3).standard_normal(x.size))
    spline, _ = sm.smoothing_spline(x, np.stack([clean, noisy], 1))
    fitted = spline(x)
    assert np.abs(fitted[:, 0] - clean).max() < 1e-3
    assert np.sqrt(((fitted[:, 1] - clean) ** 2).mean()) < 0.4 * np.sqrt(((noisy - clean) ** 2).mean())
