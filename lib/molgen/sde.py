"""Forward SDEs of score-based generative modelling: VP, VE and sub-VP (Song et al. 2021), as GDSS uses them.

Each SDE is one class with the same interface (after score_sde):

- ``sde(x, t)``: drift f(x, t) (same shape as x) and diffusion g(t) (shape (B,)),
- ``marginal_prob(x0, t)``: mean and std (shape (B,)) of the Gaussian perturbation kernel p_0t(x_t | x_0),
- ``prior_sampling(shape)`` / ``prior_sampling_sym(shape)``: samples of p_T, the second one symmetric with a
  zero diagonal over the last two axes (for adjacency matrices),
- ``prior_logp(z)``, ``discretize(x, t)`` (the DDPM / SMLD discretisations used by the reverse-diffusion
  predictor), ``transition(x, t, dt)`` (the S4 solver's half-step kernel), and
- ``reverse(score_fn, probability_flow=False)``: the reverse-time SDE (or probability-flow ODE).

Time runs over [0, T] with T = 1; ``t`` is a tensor of shape (B,), one time per graph. Coefficients of shape
(B,) broadcast against inputs of any rank (B, ...).
"""
from __future__ import annotations

import abc
import math
from typing import Callable

import torch

Tensor = torch.Tensor


def bcast(coef: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient (B,) so that it broadcasts against x of shape (B, ...)."""
    return coef.reshape(coef.shape + (1,) * (x.dim() - coef.dim()))


def sym_noise(shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> Tensor:
    """Standard normal noise, symmetric over the last two axes with a zero diagonal (as GDSS's adjacency noise)."""
    z = torch.randn(*shape, generator=generator, device=device, dtype=dtype).triu(1)
    return z + z.transpose(-1, -2)


class SDE(abc.ABC):
    """A forward SDE dx = f(x, t) dt + g(t) dw on [0, T], discretised with N steps."""

    name = "sde"

    def __init__(self, N: int):
        self.N = int(N)

    @property
    def T(self) -> float:
        return 1.0

    @abc.abstractmethod
    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift f(x, t) and diffusion g(t) of shape (B,)."""

    @abc.abstractmethod
    def marginal_prob(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (shape of x) and std (B,) of p_0t(x_t | x_0 = x)."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the prior p_T."""

    def prior_sampling(self, shape, generator=None, device=None) -> Tensor:
        return self.prior_std * torch.randn(*shape, generator=generator, device=device)

    def prior_sampling_sym(self, shape, generator=None, device=None) -> Tensor:
        return self.prior_std * sym_noise(shape, generator=generator, device=device)

    def prior_logp(self, z: Tensor) -> Tensor:
        """Log-density of the (isotropic Gaussian) prior, summed over all but the batch axis."""
        n = z[0].numel()
        s2 = self.prior_std ** 2
        return -0.5 * n * math.log(2 * math.pi * s2) - z.flatten(1).pow(2).sum(-1) / (2 * s2)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """x_{i+1} = x_i + f_i(x_i) + G_i z_i; Euler-Maruyama unless a subclass knows better."""
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def timestep(self, t: Tensor) -> Tensor:
        """Index i in [0, N-1] of the discrete noise level nearest below t (GDSS/score_sde convention)."""
        return (t * (self.N - 1) / self.T).long()

    def langevin_alpha(self, t: Tensor) -> Tensor:
        """The alpha factor of the Langevin corrector's step size (1 except for VP-type SDEs)."""
        return torch.ones_like(t)

    @abc.abstractmethod
    def transition(self, x: Tensor, t: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std (B,) of the S4 solver's kernel from t to t + dt (dt < 0, backwards in time).

        As in GDSS: the std is that of the forward kernel between t + dt and t, the mean undoes the forward
        mean contraction.
        """

    def reverse(self, score_fn: Callable[..., Tensor] | None, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE dx = [f - g^2 s] dt + g dw (or the ODE with g^2 s / 2 and no noise)."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse-time SDE of a forward SDE given a score function ``score_fn(x, t, *args) -> score``.

    ``sde`` and ``discretize`` accept a precomputed ``score=`` (the graph samplers compute the scores of X and
    A together in one network call and hand them in); otherwise they call ``score_fn``.
    """

    def __init__(self, fwd: SDE, score_fn, probability_flow: bool = False):
        self.fwd = fwd
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.N = fwd.N

    @property
    def T(self) -> float:
        return self.fwd.T

    def _score(self, x, t, args, score):
        if score is None:
            if self.score_fn is None:
                raise ValueError("this reverse SDE has no score_fn: pass score=")
            score = self.score_fn(x, t, *args)
        return score

    def sde(self, x: Tensor, t: Tensor, *args, score: Tensor | None = None) -> tuple[Tensor, Tensor]:
        drift, diffusion = self.fwd.sde(x, t)
        score = self._score(x, t, args, score)
        w = 0.5 if self.probability_flow else 1.0
        drift = drift - bcast(diffusion, x) ** 2 * score * w
        diffusion = torch.zeros_like(diffusion) if self.probability_flow else diffusion
        return drift, diffusion

    def discretize(self, x: Tensor, t: Tensor, *args, score: Tensor | None = None) -> tuple[Tensor, Tensor]:
        f, G = self.fwd.discretize(x, t)
        score = self._score(x, t, args, score)
        w = 0.5 if self.probability_flow else 1.0
        rev_f = f - bcast(G, x) ** 2 * score * w
        rev_G = torch.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G


class VPSDE(SDE):
    """Variance preserving: dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear from beta_min to beta_max."""

    name = "VP"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        self.beta_0 = float(beta_min)
        self.beta_1 = float(beta_max)
        self.discrete_betas = torch.linspace(beta_min / N, beta_max / N, N)
        self.alphas = 1.0 - self.discrete_betas

    @property
    def prior_std(self) -> float:
        return 1.0

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        """log of the mean factor: -1/2 int_0^t beta."""
        return -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def sde(self, x, t):
        beta_t = self.beta(t)
        return -0.5 * bcast(beta_t, x) * x, torch.sqrt(beta_t)

    def marginal_prob(self, x, t):
        lmc = self.log_mean_coeff(t)
        return bcast(torch.exp(lmc), x) * x, torch.sqrt(1.0 - torch.exp(2.0 * lmc))

    def discretize(self, x, t):
        """DDPM discretisation."""
        i = self.timestep(t)
        beta = self.discrete_betas.to(x.device)[i]
        alpha = self.alphas.to(x.device)[i]
        return bcast(torch.sqrt(alpha), x) * x - x, torch.sqrt(beta)

    def langevin_alpha(self, t):
        return self.alphas.to(t.device)[self.timestep(t)]

    def _half_integral(self, t, dt):
        # 1/2 int_t^{t+dt} beta(u) du  (negative for dt < 0)
        return 0.25 * dt * (2 * self.beta_0 + (2 * t + dt) * (self.beta_1 - self.beta_0))

    def transition(self, x, t, dt):
        h = self._half_integral(t, dt)
        return bcast(torch.exp(-h), x) * x, torch.sqrt(1.0 - torch.exp(2.0 * h))


class subVPSDE(VPSDE):
    """Sub-VP: the VP drift with diffusion sqrt(beta(t) (1 - exp(-2 int_0^t beta)))."""

    name = "subVP"

    def sde(self, x, t):
        beta_t = self.beta(t)
        discount = 1.0 - torch.exp(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t ** 2)
        return -0.5 * bcast(beta_t, x) * x, torch.sqrt(beta_t * discount)

    def marginal_prob(self, x, t):
        lmc = self.log_mean_coeff(t)
        return bcast(torch.exp(lmc), x) * x, 1.0 - torch.exp(2.0 * lmc)

    def discretize(self, x, t):
        return SDE.discretize(self, x, t)

    def transition(self, x, t, dt):
        # forward kernel s = t + dt -> t: mean factor a_t / a_s, variance (1 - a_t^2)^2 - (a_t/a_s)^2 (1 - a_s^2)^2
        h = self._half_integral(t, dt)
        a_t2 = torch.exp(2.0 * self.log_mean_coeff(t))
        a_s2 = torch.exp(2.0 * self.log_mean_coeff(t + dt))
        var = (1.0 - a_t2) ** 2 - (a_t2 / a_s2) * (1.0 - a_s2) ** 2
        return bcast(torch.exp(-h), x) * x, torch.sqrt(var.clamp_min(0.0))


class VESDE(SDE):
    """Variance exploding: dx = sigma(t) sqrt(2 log(sigma_max/sigma_min)) dw, sigma geometric in t."""

    name = "VE"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.discrete_sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), N))

    @property
    def prior_std(self) -> float:
        # score_sde's prior N(0, sigma_max^2); GDSS samples N(0, 1), the same for its configs (sigma_max = 1)
        return self.sigma_max

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        g = self.sigma(t) * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        return torch.zeros_like(x), g

    def marginal_prob(self, x, t):
        return x, self.sigma(t)

    def discretize(self, x, t):
        """SMLD (NCSN) discretisation."""
        i = self.timestep(t)
        sig = self.discrete_sigmas.to(t.device)
        sigma = sig[i]
        adjacent = torch.where(i == 0, torch.zeros_like(t), sig[(i - 1).clamp_min(0)])
        return torch.zeros_like(x), torch.sqrt(sigma ** 2 - adjacent ** 2)

    def transition(self, x, t, dt):
        var = self.sigma(t) ** 2 - self.sigma(t + dt) ** 2
        return x, torch.sqrt(var.clamp_min(0.0))


SDES = {"VP": VPSDE, "VE": VESDE, "subVP": subVPSDE}


def make_sde(kind: str, beta_min: float, beta_max: float, num_scales: int) -> SDE:
    """An SDE from GDSS's config triple: for VE, beta_min/beta_max are sigma_min/sigma_max (as in GDSS)."""
    if kind == "VE":
        return VESDE(sigma_min=beta_min, sigma_max=beta_max, N=num_scales)
    if kind not in SDES:
        raise ValueError(f"unknown SDE type {kind!r}; known: {', '.join(SDES)}")
    return SDES[kind](beta_min=beta_min, beta_max=beta_max, N=num_scales)
