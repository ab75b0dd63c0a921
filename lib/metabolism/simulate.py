"""The forward model and its integration, batched over initial conditions in torch.

dc_i/dt = -lambda_i (c_i - baseline_i) + sum_j S_ij v_j,
v_j = k_j prod_i c_i^R_ij (multiplicative, mass action) or k_j sum_{i: R_ij > 0} c_i^R_ij (additive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .network import Network

RHS = Callable[[torch.Tensor], torch.Tensor]


class SimulationError(RuntimeError):
    """The integration left the physical domain (NaN, inf, or negative concentrations)."""


class TrueRHS(torch.nn.Module):
    """Right-hand side of the true ODE, for a batch of states c of shape (B, n)."""

    def __init__(self, net: Network, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        super().__init__()
        n, m = net.R.shape
        width = max(int((net.R > 0).sum(0).max()), 1)  # the most substrates of any reaction
        sub_pad = np.full((m, width), n)  # index n is a padding metabolite
        ord_pad = np.zeros((m, width))
        for j in range(m):
            idx = np.flatnonzero(net.R[:, j])
            sub_pad[j, : idx.size] = idx
            ord_pad[j, : idx.size] = net.R[idx, j]
        kw = dict(dtype=dtype, device=device)
        self.register_buffer("sub_pad", torch.as_tensor(sub_pad, device=device))
        self.register_buffer("ord_pad", torch.as_tensor(ord_pad, **kw))
        self.register_buffer("S", torch.as_tensor(net.S, **kw))
        self.register_buffer("k", torch.as_tensor(net.k, **kw))
        self.register_buffer("lam", torch.as_tensor(net.lam, **kw))
        self.register_buffer("baseline", torch.as_tensor(net.baseline, **kw))
        self.multiplicative = net.aggregation == "multiplicative"

    def rates(self, c: torch.Tensor) -> torch.Tensor:
        """Reaction rates v, shape (B, m)."""
        pad_value = 1.0 if self.multiplicative else 0.0
        c_ext = torch.cat([c, torch.full_like(c[:, :1], pad_value)], dim=1)
        terms = c_ext[:, self.sub_pad] ** self.ord_pad  # (B, m, width); padding: 1**0 = 1 or 0**0 = 1
        if self.multiplicative:
            return self.k * terms.prod(-1)
        return self.k * (terms * (self.ord_pad > 0)).sum(-1)

    def homeostasis(self, c: torch.Tensor) -> torch.Tensor:
        return -self.lam * (c - self.baseline)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.homeostasis(c) + self.rates(c) @ self.S.T


def euler_step(rhs: RHS, c: torch.Tensor, h: float | torch.Tensor) -> torch.Tensor:
    return c + h * rhs(c)


def rk4_step(rhs: RHS, c: torch.Tensor, h: float | torch.Tensor) -> torch.Tensor:
    """The classical fourth-order Runge-Kutta step (torchdiffeq's ``rk4`` is the 3/8 rule instead); ``h`` a
    number or a tensor broadcast against c (one step per batch row)."""
    k1 = rhs(c)
    k2 = rhs(c + 0.5 * h * k1)
    k3 = rhs(c + 0.5 * h * k2)
    k4 = rhs(c + h * k3)
    return c + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


STEPS: dict[str, Callable[[RHS, torch.Tensor, float | torch.Tensor], torch.Tensor]] = {"euler": euler_step, "rk4": rk4_step}
"""The fixed-step integrators by name: a new one is a step function and one line here."""


def odeint(
    rhs: RHS,
    c0: torch.Tensor,
    n_frames: int,
    dt: float,
    integrator: str = "rk4",
    substeps: int = 1,
    negative_tolerance: float | None = 1e-6,
    label: str = "",
) -> torch.Tensor:
    """Integrate from c0 (B, n) and return the frames (B, n_frames, n), frame 0 being c0.

    Differentiable (as torchdiffeq's ``odeint``): gradients reach ``c0`` and the parameters of ``rhs`` unless
    the caller runs it under ``torch.no_grad()``, as simulation and evaluation do. Raises SimulationError naming
    the frame, dt and `label` when the state becomes NaN/inf or more negative than `negative_tolerance` (None
    disables the sign check, e.g. for a learned model's rollout).
    """
    if integrator not in STEPS:
        raise ValueError(f"unknown integrator {integrator!r} (expected one of {sorted(STEPS)})")
    step = STEPS[integrator]
    h = dt / substeps
    frames = [c0]
    c = c0
    for t in range(1, n_frames):
        for _ in range(substeps):
            c = step(rhs, c, h)
        bad = ~torch.isfinite(c).all()
        if bad or (negative_tolerance is not None and c.min() < -negative_tolerance):
            what = "non-finite values" if bad else f"a negative concentration ({c.min().item():.3g})"
            raise SimulationError(
                f"simulation {label or ''} blew up at frame {t}: {what} with dt={dt}, "
                f"integrator={integrator}, substeps={substeps}; lower dt or raise substeps"
            )
        frames.append(c)
    return torch.stack(frames, 1)


@dataclass
class Trajectories:
    """Simulated data: concentrations and the exact right-hand side at each stored frame."""

    c: np.ndarray  # (B, T, n)
    dcdt: np.ndarray  # (B, T, n)


def initial_conditions(rng: np.random.Generator, n_traj: int, n: int, c_min: float, c_max: float) -> np.ndarray:
    return rng.uniform(c_min, c_max, size=(n_traj, n))


def simulate(
    net: Network,
    c0: np.ndarray,
    n_frames: int,
    dt: float,
    integrator: str = "rk4",
    substeps: int = 10,
    negative_tolerance: float = 1e-6,
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
    label: str = "",
    device: str | torch.device = "cpu",
) -> Trajectories:
    """Integrate the true system from each row of c0 (B, n); dcdt is the exact RHS at every clean frame.

    With noise_std > 0, Gaussian measurement noise is added to c (not to dcdt, which stays the exact
    derivative of the clean state).
    """
    rhs = TrueRHS(net, device=device)
    with torch.no_grad():
        c = odeint(rhs, torch.as_tensor(c0, dtype=torch.float64, device=device), n_frames, dt, integrator,
                   substeps, negative_tolerance, label)
        dcdt = rhs(c.reshape(-1, c.shape[-1])).reshape(c.shape)
    c_np, dcdt_np = c.cpu().numpy(), dcdt.cpu().numpy()
    if noise_std > 0:
        rng = rng or np.random.default_rng(0)
        c_np = c_np + rng.normal(0.0, noise_std, size=c_np.shape)
    return Trajectories(c=c_np, dcdt=dcdt_np)


def activity_rank(c: np.ndarray, energy: float = 0.99) -> int:
    """Number of singular values of the mean-centred (T, n) concentration matrix holding `energy` of its energy."""
    x = c - c.mean(0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False) ** 2
    if s.sum() == 0:
        return 0
    return int(np.searchsorted(np.cumsum(s) / s.sum(), energy) + 1)
