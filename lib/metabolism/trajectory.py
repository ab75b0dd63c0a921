"""Refinement by trajectory matching: integrate the fitted ODE over short segments of the measured series
and fit the parameters to the concentrations themselves (no derivatives, no smoothing in the objective).

Why after the integral objective, not instead of it: trajectory matching is non-convex in k and needs a
start near the answer, which the weak-form solve gives in one step. Its gain is where the weak form is
biased: noise inside the nonlinear rate terms of the smoothed trajectories (errors in variables), which a
fit to the samples does not have.

Design.
- Multiple shooting with free initial states: every experiment is cut into segments of ``segment`` sample
  intervals; each segment starts from its own state (a parameter, initialised at the smoothed trajectory),
  so that a long horizon never compounds an error and a stiff or oscillating system stays well posed.
  Segments overlap by one sample and are not tied by a continuity constraint: the shared sample ties them.
- The residual is log c_model - log c_measured at every finite, positive sample (relative noise, as the
  smoothing assumes); its least squares is the likelihood of log-normal measurement error.
- Integration is classical RK4 with a fixed step, chosen from the data: the stability bound of RK4 on the
  real axis is |h lambda| < 2.78, and h = ``safety`` / max |lambda| of the model's Jacobian at the smoothed
  states, at most the sampling interval. All segments of all experiments integrate as one batch; irregular
  times and a last, shorter segment get their own step per interval (padding steps have h = 0).
- Levenberg-Marquardt over the global parameters and the segments' states together; forward-mode
  Jacobians (one direction per global parameter plus n state directions: a segment's state moves only its
  own residuals), the states eliminated by the Schur complement of the arrow-structured normal matrix.
  (L-BFGS, tried first, had not converged after 200 iterations on E. coli core; LM takes 5-7.)
- The GNN keeps its learned functions, read from their tables; optionally (``functions``) it also fits a
  correction to them with as few parameters as the mass-action model has: alpha + beta c added to each
  metabolite's node term, and a smooth factor on each substrate function (a few Catmull-Rom knots in
  log c, pinned to 1 at the middle of the range: a constant factor would only trade against k).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .measurements import Measurements
from .network import Stoichiometry


class MassActionODE(nn.Module):
    """dc/dt = alpha + beta * c + S diag(k) prod_i c_i^R_ij with trainable log k, alpha and beta: the model
    of ``massaction``'s least squares, differentiable, for a batch of states (B, n)."""

    def __init__(self, stoich: Stoichiometry, k: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
                 floor: float = 1e-12):
        super().__init__()
        met, rxn, order = stoich.substrate_edges()
        if stoich.aggregation != "multiplicative":
            raise ValueError("trajectory refinement of the mass-action estimator needs multiplicative rate terms")
        kw = dict(dtype=torch.float64)
        self.register_buffer("S", torch.as_tensor(stoich.S, **kw))
        self.register_buffer("met", torch.as_tensor(met, dtype=torch.long))
        self.register_buffer("rxn", torch.as_tensor(rxn, dtype=torch.long))
        self.register_buffer("order", torch.as_tensor(order, **kw))
        self.m = stoich.n_reactions
        self.log_k = nn.Parameter(torch.as_tensor(np.log(np.maximum(k, floor)), **kw))
        self.alpha = nn.Parameter(torch.as_tensor(alpha, **kw))
        self.beta = nn.Parameter(torch.as_tensor(beta, **kw))

    @property
    def k(self) -> torch.Tensor:
        return self.log_k.exp()

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        logc = torch.log(c.clamp_min(1e-12))
        terms = torch.zeros(c.shape[0], self.m, dtype=c.dtype, device=c.device)
        terms = terms.index_add(1, self.rxn, logc[:, self.met] * self.order)
        v = self.k * terms.exp()
        return self.alpha + self.beta * c + v @ self.S.T


def _catmull_rom(table: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Catmull-Rom interpolation of ``table[rows]`` at grid coordinates u (clamped to the grid; the weights,
    not the cell, carry the derivative), as ``windows``'s tables are read."""
    size = table.shape[-1]
    u = u.clamp(0.0, size - 1 - 1e-9)
    i = torch.floor(u.detach()).long().clamp(1, size - 3)
    t = u - i
    t2, t3 = t * t, t * t * t
    w = (-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0, -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2)
    return sum(wk * table[rows, (i + d).clamp(0, size - 1)] for wk, d in zip(w, (-1, 0, 1, 2)))


class TabulatedGNN(nn.Module):
    """The trained GNN with its two functions held, read from their tables (``windows.Tables``): the same
    right-hand side at the cost of mass action, so that forward-mode Jacobians over k stay cheap (through
    the network itself they cost about 80 times more on E. coli core). Trainable: log k and, with
    ``functions``, the corrections of the functions (zero at the start, so the model is the GNN until they
    move): ``alpha``, ``beta`` (n,) added to the node term as alpha + beta c, and ``sub_correction`` (orders,
    knots), the log factor on each substrate function at knots evenly spaced in log c (0 at the middle of
    the range)."""

    def __init__(self, tables, stoich: Stoichiometry, log_k: np.ndarray, functions: bool = False,
                 knots: int = 8):
        super().__init__()
        if knots < 4:
            raise ValueError("the substrate-function correction needs at least 4 knots (Catmull-Rom)")
        kw = dict(dtype=torch.float64)
        self.register_buffer("sub", torch.as_tensor(tables.sub, **kw))
        self.register_buffer("node", torch.as_tensor(tables.node, **kw))
        self.register_buffer("met", torch.as_tensor(tables.met, dtype=torch.long))
        self.register_buffer("rxn", torch.as_tensor(tables.rxn, dtype=torch.long))
        self.register_buffer("order", torch.as_tensor(tables.order, dtype=torch.long))
        self.register_buffer("rows", torch.arange(tables.node.shape[0]))
        self.register_buffer("S", torch.as_tensor(stoich.S, **kw))
        self.log_lo, self.log_hi, self.hi = tables.log_lo, tables.log_hi, tables.hi
        self.multiplicative, self.m = tables.multiplicative, tables.m
        n = tables.node.shape[0]
        self.log_k = nn.Parameter(torch.as_tensor(log_k, **kw))
        self.corrected = functions
        if functions:
            self.alpha = nn.Parameter(torch.zeros(n, **kw))
            self.beta = nn.Parameter(torch.zeros(n, **kw))
            self.sub_correction = nn.Parameter(torch.zeros(tables.sub.shape[0], knots, **kw))

    @property
    def k(self) -> torch.Tensor:
        return self.log_k.exp()

    def _grid(self, c: torch.Tensor) -> torch.Tensor:
        """Coordinates of c on the substrate tables' grid (log c, clamped below at the grid's start)."""
        return (torch.log(c.clamp_min(math.exp(self.log_lo))) - self.log_lo) \
            / (self.log_hi - self.log_lo) * (self.sub.shape[-1] - 1)

    def log_factor(self, u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The substrate functions' log correction at grid coordinates u for the orders ``rows``."""
        table = self.sub_correction
        knots = table.shape[-1]
        v = u / (self.sub.shape[-1] - 1) * (knots - 1)
        every = torch.arange(table.shape[0], device=table.device)
        middle = _catmull_rom(table, every, torch.full((table.shape[0],), 0.5 * (knots - 1), dtype=v.dtype,
                                                         device=v.device))
        return _catmull_rom(table, rows, v) - middle[rows]

    def functions(self, grid: np.ndarray, substrate: np.ndarray, node: np.ndarray) -> dict:
        """The corrected functions on ``grid`` from the network's own values there (``substrate`` (orders,
        G), ``node`` (n, G), as ``fit.learned_functions`` tabulates them)."""
        if not self.corrected:
            return {"substrate": substrate, "node": node}
        with torch.no_grad():
            g = torch.as_tensor(grid, dtype=torch.float64, device=self.S.device)
            orders = torch.arange(self.sub.shape[0], device=g.device)[:, None].expand(-1, g.numel())
            factor = self.log_factor(self._grid(g)[None, :].expand_as(orders), orders).exp().cpu().numpy()
            shift = (self.alpha[:, None] + self.beta[:, None] * g[None, :]).cpu().numpy()
        return {"substrate": substrate * factor, "node": node + shift}

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        u = self._grid(c[:, self.met])
        log_f = _catmull_rom(self.sub, self.order, u)  # (B, E)
        if self.corrected:
            log_f = log_f + self.log_factor(u, self.order.expand_as(u))
        phi = torch.zeros(c.shape[0], self.m, dtype=c.dtype, device=c.device)
        phi = phi.index_add(1, self.rxn, log_f if self.multiplicative else log_f.exp())
        if self.multiplicative:
            phi = phi.exp()
        node = _catmull_rom(self.node, self.rows, c / self.hi * (self.node.shape[-1] - 1))
        if self.corrected:
            node = node + self.alpha + self.beta * c
        return node + (self.k * phi) @ self.S.T


@dataclass
class Segments:
    """The shooting segments of a data set: for B segments of up to L intervals, the interval lengths
    dt (B, L), the measured log c at the L + 1 nodes (B, L + 1, n) with its mask, and each segment's
    experiment and first sample."""

    dt: torch.Tensor
    log_c: torch.Tensor
    mask: torch.Tensor
    experiment: np.ndarray
    start: np.ndarray

    @property
    def n_segments(self) -> int:
        return self.dt.shape[0]


def segments(data: Measurements, length: int) -> Segments:
    """Cut every experiment into segments of ``length`` sample intervals, overlapping by one sample."""
    if length < 1:
        raise ValueError("a shooting segment spans at least one sample interval")
    dts, logs, masks, exps, starts = [], [], [], [], []
    n = len(data.metabolite_ids)
    for e_idx, e in enumerate(data.experiments):
        T = e.t.size
        for s in range(0, T - 1, length):
            stop = min(s + length, T - 1)
            L = stop - s
            dt = np.zeros(length)
            dt[:L] = np.diff(e.t[s:stop + 1])
            c = np.full((length + 1, n), np.nan)
            c[:L + 1] = e.c[s:stop + 1]
            ok = np.isfinite(c) & (c > 0)
            dts.append(dt)
            logs.append(np.log(np.where(ok, c, 1.0)))
            masks.append(ok)
            exps.append(e_idx)
            starts.append(s)
    return Segments(dt=torch.as_tensor(np.array(dts)), log_c=torch.as_tensor(np.array(logs)),
                    mask=torch.as_tensor(np.array(masks)), experiment=np.array(exps), start=np.array(starts))


def stable_step(rhs: Callable[[torch.Tensor], torch.Tensor], states: torch.Tensor, safety: float = 2.0,
                probes: int = 8) -> float:
    """The largest RK4 step that is stable at the given states: safety / max |eigenvalue| of the Jacobian,
    over up to ``probes`` of them (spread through the data)."""
    idx = np.unique(np.linspace(0, states.shape[0] - 1, probes).round().astype(int))
    rho = 0.0
    for i in idx:
        c = states[i].detach().clone()
        J = torch.autograd.functional.jacobian(lambda x: rhs(x[None])[0], c)
        rho = max(rho, float(np.abs(np.linalg.eigvals(J.detach().cpu().numpy())).max()))
    return safety / rho if rho > 0 else math.inf


def shoot(rhs: Callable[[torch.Tensor], torch.Tensor], c0: torch.Tensor, dt: torch.Tensor,
          max_step: float) -> torch.Tensor:
    """States at the L + 1 nodes (B, L + 1, n) of B segments from c0 (B, n), differentiable: classical RK4
    with ceil(max dt / max_step) steps per interval, each segment with its own step (dt / steps)."""
    out = [c0]
    c = c0
    for l in range(dt.shape[1]):
        col = dt[:, l]
        n_steps = max(int(math.ceil(float(col.max()) / max_step)), 1) if float(col.max()) > 0 else 0
        h = (col / max(n_steps, 1))[:, None].to(c0.dtype)
        for _ in range(n_steps):
            k1 = rhs(c)
            k2 = rhs(c + 0.5 * h * k1)
            k3 = rhs(c + 0.5 * h * k2)
            k4 = rhs(c + h * k3)
            c = c + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(c)
    return torch.stack(out, 1)


@dataclass
class Refinement:
    """What the refinement did: the objective (mean squared log residual) before and after, iterations,
    integration step, segments, seconds, and whether it lowered the objective."""

    loss_start: float
    loss_end: float
    iterations: int
    step: float
    segments: int
    segment_length: int
    seconds: float
    improved: bool
    cov: np.ndarray | None = None
    """Covariance of the refined global parameters (flat, in the order given): sigma^2 times the inverse of
    the Gauss-Newton curvature with the segments' states eliminated, sigma^2 from the residuals."""

    @property
    def rmse_log_start(self) -> float:
        return math.sqrt(self.loss_start)

    @property
    def rmse_log_end(self) -> float:
        return math.sqrt(self.loss_end)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "cov"}
        return {**out, "rmse_log_start": self.rmse_log_start, "rmse_log_end": self.rmse_log_end}


class _Problem:
    """The shooting residuals as a function of the flat global parameters theta (p,) and the segments'
    initial log states u (B, n), with their Jacobian blocks by forward-mode differentiation."""

    def __init__(self, rhs: nn.Module, names: list[str], seg: Segments, step: float, chunk: int):
        self.rhs, self.names, self.seg, self.step, self.chunk = rhs, names, seg, step, chunk
        params = dict(rhs.named_parameters())
        self.shapes = [params[k].shape for k in names]
        self.sizes = [params[k].numel() for k in names]
        self.fixed = {k: v.detach() for k, v in list(params.items()) + list(rhs.named_buffers()) if k not in names}
        self.mask = seg.mask.to(torch.float64)

    def flat(self) -> torch.Tensor:
        params = dict(self.rhs.named_parameters())
        return torch.cat([params[k].detach().reshape(-1) for k in self.names])

    def load(self, theta: torch.Tensor) -> None:
        params = dict(self.rhs.named_parameters())
        with torch.no_grad():
            for k, part in zip(self.names, torch.split(theta, self.sizes)):
                params[k].copy_(part.reshape(params[k].shape))

    def residuals(self, theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        state = dict(self.fixed)
        state.update({k: part.reshape(shape) for k, part, shape in
                      zip(self.names, torch.split(theta, self.sizes), self.shapes)})

        def f(c: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self.rhs, state, (c,))
        pred = shoot(f, u.exp(), self.seg.dt.to(u.dtype), self.step)
        return (torch.log(pred.clamp_min(1e-12)) - self.seg.log_c) * self.mask

    def jacobian(self, theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """d r / d direction for the p global directions and the n state directions (every segment's own
        initial state moves at once: segments do not interact), shape (p + n, B, L + 1, n)."""
        p, (B, n) = theta.numel(), u.shape
        kw = dict(dtype=theta.dtype, device=theta.device)
        vt = torch.cat([torch.eye(p, **kw), torch.zeros(n, p, **kw)])
        vu = torch.cat([torch.zeros(p, B, n, **kw), torch.eye(n, **kw)[:, None, :].expand(n, B, n)])

        def column(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(self.residuals, (theta, u), (a, b))[1]
        return torch.func.vmap(column, chunk_size=self.chunk)(vt, vu)


def _blocks(Jg: torch.Tensor, Ju: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, ...]:
    A = torch.einsum("pbr,qbr->pq", Jg, Jg)
    C = torch.einsum("pbr,ibr->bpi", Jg, Ju)
    D = torch.einsum("ibr,jbr->bij", Ju, Ju)
    return A, C, D, -torch.einsum("pbr,br->p", Jg, r), -torch.einsum("ibr,br->bi", Ju, r)


def _curvature(Jg: torch.Tensor, Ju: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The Gauss-Newton curvature of the global parameters with the segments' states eliminated."""
    A, C, D, _, _ = _blocks(Jg, Ju, r)
    D = D + 1e-12 * torch.diag_embed(torch.diagonal(D, dim1=1, dim2=2).clamp_min(1e-300))
    return A - torch.einsum("bpi,biq->pq", C, torch.linalg.solve(D, C.transpose(1, 2)))


def _inverse(H: np.ndarray, rcond: float = 1e-14) -> np.ndarray:
    """Inverse of a curvature whose near-null directions keep a huge variance (a pseudo-inverse would give
    them none, and a k the data do not determine would look exact)."""
    w, V = np.linalg.eigh((H + H.T) / 2)
    w = np.maximum(w, rcond * max(float(w.max()), 1e-300))
    return (V / w) @ V.T


def _lm_step(Jg: torch.Tensor, Ju: torch.Tensor, r: torch.Tensor, mu: float, ridge: torch.Tensor | None = None,
             theta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One damped Gauss-Newton (Levenberg-Marquardt) step for the arrow-structured normal matrix: the global
    block, one n x n block per segment, eliminated by the Schur complement (never forming the full matrix).

    Jg (p, B, R), Ju (n, B, R), r (B, R); ``ridge`` (p,) the weights of a penalty ridge * theta^2."""
    A, C, D, gk, gu = _blocks(Jg, Ju, r)
    if ridge is not None:
        A, gk = A + torch.diag(ridge), gk - ridge * theta
    A = A + mu * torch.diag(torch.diagonal(A).clamp_min(1e-12))
    D = D + mu * torch.diag_embed(torch.diagonal(D, dim1=1, dim2=2).clamp_min(1e-12))
    Dinv_C = torch.linalg.solve(D, C.transpose(1, 2))  # (B, n, p)
    Dinv_g = torch.linalg.solve(D, gu[..., None])[..., 0]  # (B, n)
    schur = A - torch.einsum("bpi,biq->pq", C, Dinv_C)
    rhs = gk - torch.einsum("bpi,bi->p", C, Dinv_g)
    dk = torch.linalg.lstsq(schur, rhs[:, None]).solution[:, 0]
    du = Dinv_g - torch.einsum("bip,p->bi", Dinv_C, dk)
    return dk, du


def refine(rhs: nn.Module, data: Measurements, initial_states: np.ndarray | None, segment: int,
           parameters: list[str], iterations: int = 20, safety: float = 0.5, tolerance: float = 1e-6,
           chunk: int = 64, covariance: bool = True, ridge: dict[str, float] | None = None,
           progress: Callable[[int, float], None] | None = None) -> Refinement:
    """Fit the named ``parameters`` of ``rhs`` (and every segment's initial state) to the measured
    concentrations by multiple shooting (module docstring), with Levenberg-Marquardt; ``rhs`` is left at the
    best parameters found (its start when the refinement did not lower the objective).

    ``initial_states`` (all samples, n) in the data's order of experiments and times, e.g. the smoothed
    trajectories: each segment starts there (at the measured sample when None). Stops when an accepted step
    lowers the objective by less than ``tolerance`` (relative). With ``covariance``, one more Jacobian at the
    end gives the parameters' covariance (``Refinement.cov``). ``ridge`` maps a parameter to the weight w of
    a penalty w theta^2 added to the sum of squared residuals (a Gaussian prior at 0 of variance sigma^2 / w):
    it keeps a direction the data barely see (a function's correction where no sample lies) at 0."""
    t0 = time.perf_counter()
    device = next(rhs.parameters()).device
    seg = segments(data, segment)
    seg = Segments(dt=seg.dt.to(device), log_c=seg.log_c.to(device), mask=seg.mask.to(device),
                   experiment=seg.experiment, start=seg.start)
    starts = []
    offsets = np.cumsum([0] + [e.t.size for e in data.experiments])
    for e_idx, s in zip(seg.experiment, seg.start):
        row = initial_states[offsets[e_idx] + s] if initial_states is not None else data.experiments[e_idx].c[s]
        starts.append(np.maximum(np.nan_to_num(row, nan=1.0), 1e-8))
    u = torch.log(torch.as_tensor(np.array(starts), dtype=torch.float64, device=device))
    with torch.no_grad():
        h = min(stable_step(rhs, u.exp(), safety), float(seg.dt.max()))
    prob = _Problem(rhs, list(parameters), seg, h, chunk)
    theta = prob.flat()
    count = float(prob.mask.sum())
    B = seg.n_segments
    w = torch.cat([torch.full((size,), float((ridge or {}).get(name, 0.0)), dtype=theta.dtype, device=device)
                   for name, size in zip(prob.names, prob.sizes)])

    def loss_of(th: torch.Tensor, uu: torch.Tensor) -> float:
        with torch.no_grad():
            value = (float((prob.residuals(th, uu) ** 2).sum()) + float((w * th * th).sum())) / count
        return value if math.isfinite(value) else math.inf

    u0 = u
    start_loss = loss = loss_of(theta, u)
    mu, it = 1e-3, 0
    for it in range(1, iterations + 1):
        with torch.no_grad():
            r = prob.residuals(theta, u).reshape(B, -1)
            J = prob.jacobian(theta, u).reshape(-1, B, r.shape[1])
        p = theta.numel()
        accepted = False
        for _ in range(8):
            dk, du = _lm_step(J[:p], J[p:], r, mu, w, theta)
            trial = loss_of(theta + dk, u + du)
            if trial < loss:
                gain = (loss - trial) / loss
                theta, u, loss, accepted = theta + dk, u + du, trial, True
                mu = max(mu / 3.0, 1e-9)
                break
            mu *= 4.0
        if progress is not None:
            progress(it, loss)
        if not accepted or gain < tolerance:
            break
    improved = loss < start_loss
    if improved:
        prob.load(theta)
    else:
        theta, u, loss = prob.flat(), u0, start_loss
    cov = None
    if covariance:
        with torch.no_grad():
            r = prob.residuals(theta, u).reshape(B, -1)
            J = prob.jacobian(theta, u).reshape(-1, B, r.shape[1])
            p = theta.numel()
            dof = max(count - p - B * u.shape[1], 1.0)
            sigma2 = float((r ** 2).sum()) / dof
            cov = sigma2 * _inverse((_curvature(J[:p], J[p:], r) + torch.diag(w)).cpu().numpy())
    return Refinement(loss_start=start_loss, loss_end=loss, iterations=it, step=h, segments=B,
                      segment_length=segment, seconds=time.perf_counter() - t0, improved=improved, cov=cov)

