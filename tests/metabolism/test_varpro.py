"""The variable-projection solve for k on its own: the normal equations against the explicit design, the
Tikhonov solve against a direct least squares, and the gradient through the solve against the envelope
theorem (the functions' gradient is that of the loss at the optimal k held fixed)."""
from __future__ import annotations

import numpy as np
import torch

from metabolism.train import _solve, normal_equations, varpro_prediction


def _problem(T: int = 40, n: int = 5, m: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    S = torch.randint(-1, 2, (n, m), generator=g).double()
    phi = torch.rand(T, m, generator=g, dtype=torch.float64) + 0.1
    k = torch.rand(m, generator=g, dtype=torch.float64) + 0.5
    return S, phi, k


def test_normal_equations_are_those_of_the_explicit_design():
    S, phi, k = _problem()
    r = torch.randn(phi.shape[0], S.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    X = (S[None, :, :] * phi[:, None, :]).reshape(-1, S.shape[1])  # row (t, i), column j: S_ij phi_tj
    G, b = normal_equations(phi, r, S)
    torch.testing.assert_close(G, X.T @ X, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b, X.T @ r.reshape(-1), rtol=1e-12, atol=1e-12)


def test_the_solve_recovers_k_and_its_ridge_is_a_tikhonov_pull():
    S, phi, k = _problem()
    r = (k * phi) @ S.T
    G, b = normal_equations(phi, r, S)
    torch.testing.assert_close(_solve(G, b, 1e-14), k, rtol=1e-8, atol=1e-10)
    ridge, k0 = 0.3, torch.full_like(k, 2.0)
    X = (S[None, :, :] * phi[:, None, :]).reshape(-1, S.shape[1]).numpy()
    mu = ridge * float(torch.diagonal(G).mean())
    aug = np.vstack([X, np.sqrt(mu) * np.eye(k.numel())])
    rhs = np.concatenate([r.reshape(-1).numpy(), np.sqrt(mu) * k0.numpy()])
    direct = np.linalg.lstsq(aug, rhs, rcond=None)[0]
    np.testing.assert_allclose(_solve(G, b, ridge, k0).numpy(), direct, rtol=1e-9)


def test_the_gradient_through_the_solve_is_the_envelope_gradient():
    S, phi, k = _problem()
    noise = 0.05 * torch.randn(phi.shape[0], S.shape[0], generator=torch.Generator().manual_seed(2),
                               dtype=torch.float64)
    target = (k * phi) @ S.T + noise
    node = torch.zeros_like(target)
    phi = phi.clone().requires_grad_(True)
    pred, k_star = varpro_prediction((phi, node, target), S, 1e-14, torch.zeros_like(k))
    (grad_varpro,) = torch.autograd.grad(((pred - target) ** 2).sum(), phi)
    held = node + (k_star.detach() * phi) @ S.T
    (grad_held,) = torch.autograd.grad(((held - target) ** 2).sum(), phi)
    torch.testing.assert_close(grad_varpro, grad_held, rtol=1e-6, atol=1e-9)
    assert float(grad_held.abs().max()) > 1e-3  # the functions do move: the test is not vacuous


def test_the_warm_up_fits_the_reactions_alone_on_both_kinds_of_rows():
    """Without the node term a batch's loss gives the node MLP no gradient, on frames with dc/dt and on the
    integral objective's windows (node MLP evaluated at the quadrature nodes, or read from its table); with
    it, it does."""
    from metabolism.config import ModelConfig, NetworkConfig, TrainingConfig
    from metabolism.model import MetabolismGNN
    from metabolism.network import generate_network
    from metabolism.synthetic import make_problem
    from metabolism.train import TrainingData, _batch_loss, stoichiometry_matrix
    from metabolism.weakform import build
    from metabolism.windows import WindowData

    net = generate_network(NetworkConfig(n_metabolites=8, n_reactions=10), 1)
    model = MetabolismGNN(net, ModelConfig()).double()
    pb = make_problem(net, 1, 10.0, 0.1, 0.0, seed=1)
    c = torch.as_tensor(pb.data.experiments[0].c, dtype=torch.float64)
    frames = TrainingData(c=c, dcdt=torch.zeros_like(c), traj=c[None], dt=0.1)
    wf = build(pb.data, window=10)
    S = stoichiometry_matrix(model)
    for data in (frames, WindowData(wf, model), WindowData(wf, model, node_size=1)):  # node MLP at nodes / tabulated
        rows = torch.arange(min(data.n_rows, 16))
        for node in (False, True):
            model.zero_grad(set_to_none=True)
            _batch_loss(model, data, rows, S, data.target.var(), TrainingConfig(), 1e-6, 0.0, node).backward()
            grads = [p.grad for p in model.node_mlp.parameters()]
            assert all(g is None for g in grads) != node
            assert model.f_sub.net[0].weight.grad is not None
