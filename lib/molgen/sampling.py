"""Sampling the reverse-time system of SDEs (GDSS eq. 3): predictors, correctors, the PC loop and the S4 solver.

Predictors (``PREDICTORS``: "Reverse", "Euler", "None") and correctors (``CORRECTORS``: "Langevin", "None")
are small classes, each updating one tensor (X or A) given its partial score and fresh noise; the samplers
(``PCSampler``, and the solvers of ``SOLVERS``: ``S4Solver``; ``make_sampler`` picks one by name) run the loop
over the time grid ``linspace(T, eps, N)`` and evaluate the two score networks together
(``nets.score.GraphScore``), once per corrector step and once per predictor step.
As in GDSS:

- X noise is i.i.d. N(0, 1) on the real nodes; A noise is symmetric with a zero diagonal, masked;
- the PC order per time step is corrector then predictor, each updating X and A from the same (X, A);
- the Langevin step size is ``2 alpha (snr |z| / |s|)^2`` with the norms per graph averaged over the batch;
- ``denoise`` returns the last mean (no noise added at the last step).

The node count of every sample is drawn from the training distribution (``sample_flags``); the samplers
return continuous (X, A); quantisation and decoding are in ``molgen.decode``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from tqdm.auto import tqdm

from .nets.score import GraphScore, mask_adj, mask_x
from .sde import SDE, bcast, sym_noise

Tensor = torch.Tensor


# ----------------------------------------------------------------------------------------- noise and flags
def noise_like_x(x: Tensor, flags: Tensor, generator=None) -> Tensor:
    return mask_x(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype), flags)


def noise_like_adj(adj: Tensor, flags: Tensor, generator=None) -> Tensor:
    return mask_adj(sym_noise(adj.shape, generator=generator, device=adj.device, dtype=adj.dtype), flags)


def sample_flags(n_atoms_counts: Tensor, n: int, max_nodes: int, generator=None, device=None) -> Tensor:
    """(n, max_nodes) node flags whose node counts are drawn from a histogram (index = number of atoms);
    atoms occupy the first rows, as in the datasets."""
    counts = torch.as_tensor(n_atoms_counts, dtype=torch.float64)
    if counts.numel() > max_nodes + 1 and counts[max_nodes + 1:].sum() > 0:
        raise ValueError("node-count histogram has graphs larger than max_nodes")
    k = torch.multinomial(counts, n, replacement=True, generator=generator)
    flags = (torch.arange(max_nodes).unsqueeze(0) < k.unsqueeze(1)).float()
    return flags.to(device) if device is not None else flags


def node_count_histogram(flags: Tensor, max_nodes: int) -> Tensor:
    """Counts of graphs per number of nodes 0..max_nodes."""
    return torch.bincount(flags.sum(-1).long(), minlength=max_nodes + 1)[: max_nodes + 1]


# ----------------------------------------------------------------------------------------- predictors
class Predictor:
    """One reverse-time step of one tensor: ``update(x, t, score, noise) -> (x, x_mean)``."""

    name = "predictor"
    uses_score = True

    def __init__(self, sde: SDE, probability_flow: bool = False):
        self.sde = sde
        self.rsde = sde.reverse(None, probability_flow)

    def update(self, x: Tensor, t: Tensor, score: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class ReverseDiffusionPredictor(Predictor):
    """x <- x - f_rev + G z with the SDE's own discretisation (DDPM for VP, SMLD for VE)."""

    name = "Reverse"

    def update(self, x, t, score, noise):
        f, G = self.rsde.discretize(x, t, score=score)
        x_mean = x - f
        return x_mean + bcast(G, x) * noise, x_mean


class EulerMaruyamaPredictor(Predictor):
    """x <- x + drift_rev dt + g sqrt(|dt|) z with dt = -1/N."""

    name = "Euler"

    def update(self, x, t, score, noise):
        dt = -1.0 / self.rsde.N
        drift, diffusion = self.rsde.sde(x, t, score=score)
        x_mean = x + drift * dt
        return x_mean + bcast(diffusion, x) * math.sqrt(-dt) * noise, x_mean


class NonePredictor(Predictor):
    name = "None"
    uses_score = False

    def update(self, x, t, score, noise):
        return x, x


# ----------------------------------------------------------------------------------------- correctors
class Corrector:
    """Corrector steps at a fixed time: ``update(x, t, score, noise) -> (x, x_mean)`` (one step)."""

    name = "corrector"
    uses_score = True

    def __init__(self, sde: SDE, snr: float, scale_eps: float, n_steps: int):
        self.sde, self.snr, self.scale_eps, self.n_steps = sde, snr, scale_eps, n_steps

    def update(self, x: Tensor, t: Tensor, score: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def langevin_step(x, t, score, noise, sde: SDE, snr: float, scale_eps: float) -> tuple[Tensor, Tensor]:
    b = x.shape[0]
    grad_norm = torch.linalg.vector_norm(score.reshape(b, -1), dim=-1).mean()
    noise_norm = torch.linalg.vector_norm(noise.reshape(b, -1), dim=-1).mean()
    step = (snr * noise_norm / grad_norm) ** 2 * 2 * sde.langevin_alpha(t)
    x_mean = x + bcast(step, x) * score
    return x_mean + bcast(torch.sqrt(step * 2), x) * noise * scale_eps, x_mean


class LangevinCorrector(Corrector):
    name = "Langevin"

    def update(self, x, t, score, noise):
        return langevin_step(x, t, score, noise, self.sde, self.snr, self.scale_eps)


class NoneCorrector(Corrector):
    name = "None"
    uses_score = False

    def update(self, x, t, score, noise):
        return x, x


PREDICTORS: dict[str, type[Predictor]] = {
    "Reverse": ReverseDiffusionPredictor, "Euler": EulerMaruyamaPredictor, "None": NonePredictor}
CORRECTORS: dict[str, type[Corrector]] = {"Langevin": LangevinCorrector, "None": NoneCorrector}


# ----------------------------------------------------------------------------------------- samplers
class _Sampler:
    def __init__(self, sde_x: SDE, sde_a: SDE, *, snr: float = 0.2, scale_eps: float = 0.7, n_steps: int = 1,
                 probability_flow: bool = False, denoise: bool = True, eps: float = 1e-4, num_steps: int | None = None):
        self.sde_x, self.sde_a = sde_x, sde_a
        self.snr, self.scale_eps, self.n_steps = snr, scale_eps, n_steps
        self.probability_flow, self.denoise, self.eps = probability_flow, denoise, eps
        self.num_steps = num_steps or sde_a.N

    def timesteps(self, device) -> Tensor:
        return torch.linspace(self.sde_a.T, self.eps, self.num_steps, device=device)

    def prior(self, flags: Tensor, n_feat: int, generator=None) -> tuple[Tensor, Tensor]:
        b, n = flags.shape
        x = mask_x(self.sde_x.prior_sampling((b, n, n_feat), generator=generator, device=flags.device), flags)
        adj = mask_adj(self.sde_a.prior_sampling_sym((b, n, n), generator=generator, device=flags.device), flags)
        return x, adj

    @property
    def evaluations_per_step(self) -> int:
        raise NotImplementedError


class PCSampler(_Sampler):
    """Predictor-corrector sampling (GDSS's ``get_pc_sampler``)."""

    def __init__(self, sde_x: SDE, sde_a: SDE, predictor: str = "Reverse", corrector: str = "Langevin", **kw):
        super().__init__(sde_x, sde_a, **kw)
        if predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {predictor!r}; known: {', '.join([*PREDICTORS, *SOLVERS])}")
        if corrector not in CORRECTORS:
            raise ValueError(f"unknown corrector {corrector!r}; known: {', '.join(CORRECTORS)}")
        P, C = PREDICTORS[predictor], CORRECTORS[corrector]
        self.pred_x, self.pred_a = P(sde_x, self.probability_flow), P(sde_a, self.probability_flow)
        self.corr_x = C(sde_x, self.snr, self.scale_eps, self.n_steps)
        self.corr_a = C(sde_a, self.snr, self.scale_eps, self.n_steps)

    @property
    def evaluations_per_step(self) -> int:
        return (self.n_steps if self.corr_x.uses_score else 0) + (1 if self.pred_x.uses_score else 0)

    def __call__(self, score: GraphScore, flags: Tensor, n_feat: int, generator=None,
                 progress: bool = False) -> tuple[Tensor, Tensor]:
        x, adj = self.prior(flags, n_feat, generator)
        x_mean, adj_mean = x, adj
        ts = self.timesteps("cpu").tolist()
        b = flags.shape[0]
        for i in tqdm(range(len(ts)), desc="sampling", leave=False, disable=not progress):
            t = torch.full((b,), ts[i], device=flags.device)
            if self.corr_x.uses_score:
                for _ in range(self.n_steps):
                    s_x, s_a = score(x, adj, flags, t)
                    x, x_mean = self.corr_x.update(x, t, s_x, noise_like_x(x, flags, generator))
                    adj, adj_mean = self.corr_a.update(adj, t, s_a, noise_like_adj(adj, flags, generator))
            if self.pred_x.uses_score:
                s_x, s_a = score(x, adj, flags, t)
                x, x_mean = self.pred_x.update(x, t, s_x, noise_like_x(x, flags, generator))
                adj, adj_mean = self.pred_a.update(adj, t, s_a, noise_like_adj(adj, flags, generator))
        return (x_mean, adj_mean) if self.denoise else (x, adj)


class S4Solver(_Sampler):
    """GDSS's S4 solver: one score evaluation per step, used for a Langevin correction and a
    half-transition / score-drift / half-transition prediction."""

    @property
    def evaluations_per_step(self) -> int:
        return 1

    def __call__(self, score: GraphScore, flags: Tensor, n_feat: int, generator=None,
                 progress: bool = False) -> tuple[Tensor, Tensor]:
        x, adj = self.prior(flags, n_feat, generator)
        x_mean, adj_mean = x, adj
        ts = self.timesteps("cpu").tolist()
        dt = -1.0 / self.num_steps
        b = flags.shape[0]
        half = torch.full((b,), dt / 2, device=flags.device)
        for i in tqdm(range(len(ts)), desc="sampling", leave=False, disable=not progress):
            t = torch.full((b,), ts[i], device=flags.device)
            s_x, s_a = score(x, adj, flags, t)
            drift_x = -bcast(self.sde_x.sde(x, t)[1], x) ** 2 * s_x
            drift_a = -bcast(self.sde_a.sde(adj, t)[1], adj) ** 2 * s_a
            # correction (Langevin, the step's score)
            x, _ = langevin_step(x, t, s_x, noise_like_x(x, flags, generator), self.sde_x, self.snr, self.scale_eps)
            adj, _ = langevin_step(adj, t, s_a, noise_like_adj(adj, flags, generator), self.sde_a, self.snr,
                                   self.scale_eps)
            # prediction
            mu_x, sig_x = self.sde_x.transition(x, t, half)
            mu_a, sig_a = self.sde_a.transition(adj, t, half)
            x = mu_x + bcast(sig_x, x) * noise_like_x(x, flags, generator) + drift_x * dt
            adj = mu_a + bcast(sig_a, adj) * noise_like_adj(adj, flags, generator) + drift_a * dt
            mu_x, sig_x = self.sde_x.transition(x, t + half, half)
            mu_a, sig_a = self.sde_a.transition(adj, t + half, half)
            x = mu_x + bcast(sig_x, x) * noise_like_x(x, flags, generator)
            adj = mu_a + bcast(sig_a, adj) * noise_like_adj(adj, flags, generator)
            x_mean, adj_mean = mu_x, mu_a
        return (x_mean, adj_mean) if self.denoise else (x, adj)


SOLVERS: dict[str, type[_Sampler]] = {"S4": S4Solver}
"""Samplers chosen by the predictor's name that replace the PC loop (and its corrector)."""


def make_sampler(sde_x: SDE, sde_a: SDE, predictor: str = "Reverse", corrector: str = "Langevin", **kw) -> _Sampler:
    """A sampler by name: a solver of ``SOLVERS`` (S4), otherwise the PC sampler of ``predictor`` and
    ``corrector``."""
    if predictor in SOLVERS:
        return SOLVERS[predictor](sde_x, sde_a, **kw)
    return PCSampler(sde_x, sde_a, predictor=predictor, corrector=corrector, **kw)


@torch.inference_mode()
def sample_graphs(score: GraphScore, sampler: _Sampler, n: int, n_atoms_counts: Tensor, max_nodes: int,
                  n_feat: int, batch_size: int = 1000, device=None, generator=None, progress: bool = False,
                  callback: Callable[[int], None] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` graphs in batches: (X (n, N, F), A (n, N, N), flags (n, N)), continuous values, on the CPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    xs, adjs, fl = [], [], []
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        flags = sample_flags(n_atoms_counts, m, max_nodes, generator=None if generator is None or
                             generator.device.type != "cpu" else generator, device=device)
        x, adj = sampler(score, flags, n_feat, generator=generator, progress=progress)
        xs.append(x.cpu()), adjs.append(adj.cpu()), fl.append(flags.cpu())
        done += m
        if callback is not None:
            callback(done)
    return torch.cat(xs), torch.cat(adjs), torch.cat(fl)
