import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from metabolism.config import NetworkConfig
from metabolism.network import Network, generate_network
from metabolism.simulate import SimulationError, TrueRHS, activity_rank, odeint, simulate


def _three_reactions(aggregation="multiplicative"):
    # r0: 2 A -> 2 B ; r1: A + C -> 2 C ; r2: B + C -> A + B, as R (orders) and P (products)
    R = np.array([[2, 1, 0], [0, 0, 1], [0, 1, 1]], float)
    P = np.array([[0, 0, 1], [2, 0, 1], [0, 2, 0]], float)
    k = np.array([0.5, 0.2, 0.1])
    return Network(R=R, P=P, k=k, types=np.array([0, 1, 0]), lam=np.array([0.1, 0.2, 0.1]),
                   baseline=np.array([1.0, 2.0, 1.0]), aggregation=aggregation)


def test_rates_match_a_hand_computation():
    net = _three_reactions()
    net.validate()
    A, B, C = 1.5, 2.0, 0.5
    rhs = TrueRHS(net)
    c = torch.tensor([[A, B, C]], dtype=torch.float64)
    v = np.array([0.5 * A**2, 0.2 * A * C, 0.1 * B * C])
    np.testing.assert_allclose(rhs.rates(c)[0].numpy(), v)
    dcdt = -net.lam * (np.array([A, B, C]) - net.baseline) + net.S @ v
    np.testing.assert_allclose(rhs(c)[0].numpy(), dcdt)
    v_add = np.array([0.5 * A**2, 0.2 * (A + C), 0.1 * (B + C)])
    np.testing.assert_allclose(TrueRHS(_three_reactions("additive")).rates(c)[0].numpy(), v_add)


def test_simulator_agrees_with_solve_ivp():
    net = generate_network(NetworkConfig(n_metabolites=8, n_reactions=10), seed=2)
    c0 = np.random.default_rng(0).uniform(1, 3, size=(1, 8))
    tr = simulate(net, c0, n_frames=51, dt=0.1, substeps=10)
    rhs = TrueRHS(net)
    f = lambda t, y: rhs(torch.as_tensor(y)[None])[0].numpy()  # noqa: E731
    ref = solve_ivp(f, (0, 5), c0[0], t_eval=np.arange(51) * 0.1, rtol=1e-11, atol=1e-12, method="DOP853")
    np.testing.assert_allclose(tr.c[0], ref.y.T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tr.dcdt[0, 10], f(0, tr.c[0, 10]), rtol=1e-12)


def test_batched_integration_equals_one_at_a_time():
    net = generate_network(NetworkConfig(n_metabolites=8, n_reactions=10), seed=2)
    c0 = np.random.default_rng(1).uniform(1, 3, size=(3, 8))
    both = simulate(net, c0, 20, 0.1, substeps=4).c
    one = simulate(net, c0[1:2], 20, 0.1, substeps=4).c
    np.testing.assert_allclose(both[1], one[0], rtol=1e-12)


def test_blow_up_names_dt_and_regime():
    rhs = lambda c: -50.0 * torch.ones_like(c)  # noqa: E731 - drives every concentration negative
    with pytest.raises(SimulationError, match=r"dt=0\.5.*integrator=euler"):
        odeint(rhs, torch.ones(1, 3, dtype=torch.float64), 5, 0.5, "euler", 1, label="of regime 'x'")
    with pytest.raises(SimulationError, match="regime 'x'"):
        odeint(lambda c: c * float("nan"), torch.ones(1, 3), 3, 0.1, label="of regime 'x'")


def test_activity_rank_counts_independent_signals():
    t = np.linspace(0, 10, 500)[:, None]
    x = np.hstack([np.sin(t), np.cos(3 * t), np.sin(t) + np.cos(3 * t), np.ones_like(t)])
    assert activity_rank(x) == 2


def test_odeint_is_differentiable_and_matches_the_step_by_hand():
    from metabolism.simulate import rk4_step

    k = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)

    def rhs(c: torch.Tensor) -> torch.Tensor:
        return -k * c

    c0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    out = odeint(rhs, c0, 4, 0.1, "rk4", substeps=2)
    by_hand = c0
    for _ in range(6):
        by_hand = rk4_step(rhs, by_hand, 0.05)
    assert torch.equal(out[:, -1], by_hand)
    grad, = torch.autograd.grad(out[:, -1].sum(), k)  # d/dk of c0 exp(-k t) at t = 0.3
    np.testing.assert_allclose(grad.numpy(), (-0.3 * c0 * torch.exp(-0.3 * k.detach())).numpy()[0], rtol=1e-6)
    with torch.no_grad():
        assert not odeint(rhs, c0, 3, 0.1).requires_grad
