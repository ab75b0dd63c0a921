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
- Levenberg-Marquardt over the global parameters and the segments' states together, the states eliminated
  by the Schur complement of the arrow-structured normal matrix (a segment's state moves only its own
  residuals). (L-BFGS, tried first, had not converged after 200 iterations on E. coli core; LM takes 5-7.)
- The Jacobian is the exact derivative of the discrete RK4 map, propagated beside the states (forward
  sensitivities): at every stage the tangents (B, n, p + n) are multiplied by the right-hand side's Jacobian
  in c, one batched matrix product, and its Jacobian in the parameters is added. The models give both
  Jacobians in closed form (``linearised``; autograd for any other ``RateModel``). Forward-mode automatic
  differentiation of the shooting, the first implementation, cost about ten times more (the tangents' many
  small elementwise operations, once per direction).
- The GNN keeps its learned functions, read from their tables; optionally (``functions``) it also fits a
  correction to them with few parameters: a low-degree polynomial added to each metabolite's node term
  (alpha + beta c, as many as the mass-action model has, and with ``node_degree`` > 1 Legendre terms over the
  measured range), and a smooth factor on each substrate function (a few Catmull-Rom knots in log c, pinned to
  1 at the middle of the range: a constant factor would only trade against k).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import uncertainty as unc
from .measurements import Measurements
from .network import Stoichiometry
from .simulate import rk4_step


class RateModel(nn.Module):
    """A right-hand side dc/dt = f(c; theta) for a batch of states (B, n) that trajectory matching can fit.

    ``linearised`` gives f with its Jacobians in c and in the named parameters, which the sensitivities of the
    shooting need at every stage. This default differentiates ``forward`` by autograd; the models below derive
    theirs in closed form (the same numbers, at a fraction of the cost)."""

    def linearised(self, c: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """f (B, n), df/dc (B, n, n) and df/dtheta per parameter of ``names``, in order: each (B, n, size)
        or broadcastable to it (an identity as (1, n, n)).

        Shapes: c (B, n)."""
        params = {k: v.detach() for k, v in self.named_parameters()}
        fixed = {**{k: v for k, v in params.items() if k not in names}, **dict(self.named_buffers())}
        theta = {k: params[k] for k in names}

        def f(ci: torch.Tensor, th: dict) -> torch.Tensor:
            return torch.func.functional_call(self, {**fixed, **th}, (ci[None],))[0]

        jc, jt = torch.func.vmap(torch.func.jacfwd(f, argnums=(0, 1)), in_dims=(0, None))(c, theta)
        B, n = c.shape
        with torch.no_grad():
            return self(c), jc, [jt[k].reshape(B, n, -1) for k in names]


class MassActionODE(RateModel):
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

    def linearised(self, c: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """As ``RateModel.linearised``, in closed form: dv_j/dc_i = v_j R_ij / c_i."""
        with torch.no_grad():
            B, n = c.shape
            logc = torch.log(c.clamp_min(1e-12))
            terms = torch.zeros(B, self.m, dtype=c.dtype, device=c.device)
            v = self.k * terms.index_add(1, self.rxn, logc[:, self.met] * self.order).exp()
            f = self.alpha + self.beta * c + v @ self.S.T
            inv = torch.where(c >= 1e-12, 1.0 / c, torch.zeros_like(c))
            dv = torch.zeros(B, self.m * n, dtype=c.dtype, device=c.device)
            dv = dv.index_add(1, self.rxn * n + self.met, v[:, self.rxn] * self.order * inv[:, self.met])
            jc = torch.diag_embed(self.beta.expand(B, n)) + self.S @ dv.view(B, self.m, n)
            eye = torch.eye(n, dtype=c.dtype, device=c.device)
            parts = {"log_k": self.S * v[:, None, :], "alpha": eye[None], "beta": torch.diag_embed(c)}
            return f, jc, [parts[k] for k in names]


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


def _catmull_rom_parts(u: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What ``_catmull_rom`` reads at coordinates u (any shape): cell indices (..., 4), the weights (..., 4)
    and their derivatives in u (..., 4), zero where u is clamped to the grid."""
    top = size - 1 - 1e-9
    inside = (u >= 0.0) & (u <= top)
    u = u.clamp(0.0, top)
    i = torch.floor(u).long().clamp(1, size - 3)
    t = u - i
    t2, t3 = t * t, t * t * t
    w = torch.stack([-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0, -1.5 * t3 + 2.0 * t2 + 0.5 * t,
                     0.5 * t3 - 0.5 * t2], -1)
    dw = torch.stack([-1.5 * t2 + 2.0 * t - 0.5, 4.5 * t2 - 5.0 * t, -4.5 * t2 + 4.0 * t + 0.5, 1.5 * t2 - t], -1)
    idx = (i[..., None] + torch.arange(-1, 3, device=u.device)).clamp(0, size - 1)
    return idx, w, dw * inside[..., None]


class TabulatedGNN(RateModel):
    """The trained GNN with its two functions held, read from their tables (``windows.Tables``): the same
    right-hand side at the cost of mass action, so that the Jacobians stay cheap (through the network itself
    they cost about 80 times more on E. coli core). Trainable: log k and, with ``functions``, the corrections
    of the functions (zero at the start, so the model is the GNN until they move): ``alpha``, ``beta`` (n,)
    added to the node term as alpha + beta c (with ``node_degree`` d > 1 also ``gamma`` (n, d - 1), the
    coefficients of the Legendre polynomials P_2 .. P_d of z = (c - mid) / half, metabolite i's ``node_range``
    (lo_i, hi_i) mapped onto [-1, 1] and z held at +-1 beyond it, so that the curvature acts where that
    metabolite's samples lie, is constant beyond them, and its columns are neither collinear with the line's
    nor with each other's: powers of c / hi were both, and at d = 3 on E. coli core the refinement crawled
    through 40 iterations to a worse fit than the line's), and ``sub_correction`` (orders, knots), the log
    factor on each substrate function at knots evenly spaced in log c, 0 at ``anchor`` (the GNN's gauge c_ref, where its
    substrate function is c_ref^s by construction, so that the correction keeps k in that gauge; None: the
    middle of the range). The knots span ``knot_range`` (lo, hi) in c, the correction constant beyond it; None:
    the tables' range. ``node_range`` None: every metabolite's range is the tables' [0, hi]."""

    def __init__(self, tables, stoich: Stoichiometry, log_k: np.ndarray, functions: bool = False,
                 knots: int = 8, anchor: float | None = None, knot_range: tuple[float, float] | None = None,
                 node_degree: int = 1, node_range: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        if node_degree < 1:
            raise ValueError(f"node_degree must be at least 1 (alpha + beta c), not {node_degree}")
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
        self.anchor = anchor
        # the knots' coordinate is (u - knot_at) * knot_per_u, u the tables' grid coordinate
        G = tables.sub.shape[-1]
        k_lo, k_hi = (self.log_lo, self.log_hi) if knot_range is None else map(math.log, knot_range)
        if not k_hi > k_lo:
            raise ValueError(f"knot_range {knot_range} must be increasing")
        per_log = (G - 1) / (self.log_hi - self.log_lo)
        self.knot_at, self.knot_per_u = (k_lo - self.log_lo) * per_log, (knots - 1) / ((k_hi - k_lo) * per_log)
        self.multiplicative, self.m = tables.multiplicative, tables.m
        n = tables.node.shape[0]
        self.log_k = nn.Parameter(torch.as_tensor(log_k, **kw))
        self.corrected = functions
        if functions:
            self.alpha = nn.Parameter(torch.zeros(n, **kw))
            self.beta = nn.Parameter(torch.zeros(n, **kw))
            if node_degree > 1:
                self.gamma = nn.Parameter(torch.zeros(n, node_degree - 1, **kw))
                lo, hi = (np.zeros(n), np.full(n, tables.hi)) if node_range is None else map(np.asarray, node_range)
                half = np.maximum(0.5 * (hi - lo), 1e-9 * np.maximum(np.abs(hi), 1.0))  # a constant one: no div 0
                self.register_buffer("node_mid", torch.as_tensor(0.5 * (lo + hi), **kw))
                self.register_buffer("node_half", torch.as_tensor(half, **kw))
            self.sub_correction = nn.Parameter(torch.zeros(tables.sub.shape[0], knots, **kw))

    @property
    def k(self) -> torch.Tensor:
        return self.log_k.exp()

    def _grid(self, c: torch.Tensor) -> torch.Tensor:
        """Coordinates of c on the substrate tables' grid (log c, clamped below at the grid's start)."""
        return (torch.log(c.clamp_min(math.exp(self.log_lo))) - self.log_lo) \
            / (self.log_hi - self.log_lo) * (self.sub.shape[-1] - 1)

    def _middle(self) -> torch.Tensor:
        """Coordinate of the anchor (where the correction is 0) on the correction's knots: ``anchor`` on the
        tables' grid (clamped into it), or the middle of the range."""
        knots = self.sub_correction.shape[-1] - 1
        if self.anchor is None:
            return torch.tensor(0.5 * knots, dtype=torch.float64, device=self.S.device)
        u = (math.log(self.anchor) - self.log_lo) / (self.log_hi - self.log_lo) * (self.sub.shape[-1] - 1)
        v = (u - self.knot_at) * self.knot_per_u
        return torch.tensor(min(max(v, 0.0), float(knots)), dtype=torch.float64, device=self.S.device)

    def log_factor(self, u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The substrate functions' log correction at grid coordinates u for the orders ``rows``."""
        table = self.sub_correction
        v = (u - self.knot_at) * self.knot_per_u
        every = torch.arange(table.shape[0], device=table.device)
        middle = _catmull_rom(table, every, self._middle().expand(table.shape[0]))
        return _catmull_rom(table, rows, v) - middle[rows]

    def _node_basis(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The curvature basis P_2(z) .. P_d(z) at c (..., n) and its derivative in c, each (..., n, d - 1)."""
        z = (c - self.node_mid) / self.node_half
        inside = (z.abs() < 1).to(c.dtype) / self.node_half  # dz / dc: 0 where z is held at +-1
        z = z.clamp(-1.0, 1.0)
        p, dp = [torch.ones_like(z), z], [torch.zeros_like(z), torch.ones_like(z)]
        for k in range(1, self.gamma.shape[1] + 1):  # Bonnet's recursion, and P'_{k+1} = P'_{k-1} + (2k + 1) P_k
            p.append(((2 * k + 1) * z * p[k] - k * p[k - 1]) / (k + 1))
            dp.append(dp[k - 1] + (2 * k + 1) * p[k])
        return torch.stack(p[2:], -1), torch.stack(dp[2:], -1) * inside[..., None]

    def _node_shift(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The node terms' correction alpha + beta c + sum_d gamma_d P_d(z) at c (..., n), and its derivative
        in c."""
        shift, slope = self.alpha + self.beta * c, self.beta.expand_as(c)
        if hasattr(self, "gamma"):
            value, derivative = self._node_basis(c)
            shift = shift + (self.gamma * value).sum(-1)
            slope = slope + (self.gamma * derivative).sum(-1)
        return shift, slope

    def functions(self, grid: np.ndarray, substrate: np.ndarray, node: np.ndarray) -> dict:
        """The corrected functions on ``grid`` from the network's own values there (``substrate`` (orders,
        G), ``node`` (n, G), as ``fit.learned_functions`` tabulates them)."""
        if not self.corrected:
            return {"substrate": substrate, "node": node}
        with torch.no_grad():
            g = torch.as_tensor(grid, dtype=torch.float64, device=self.S.device)
            orders = torch.arange(self.sub.shape[0], device=g.device)[:, None].expand(-1, g.numel())
            factor = self.log_factor(self._grid(g)[None, :].expand_as(orders), orders).exp().cpu().numpy()
            shift = self._node_shift(g[:, None].expand(-1, self.S.shape[0]))[0].T.cpu().numpy()
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
            node = node + self._node_shift(c)[0]
        return node + (self.k * phi) @ self.S.T

    def linearised(self, c: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """As ``RateModel.linearised``, in closed form from the tables' Catmull-Rom weights and their
        derivatives."""
        with torch.no_grad():
            B, n = c.shape
            E, G = self.met.numel(), self.sub.shape[-1]
            cm = c[:, self.met]
            lo = math.exp(self.log_lo)
            scale = (G - 1) / (self.log_hi - self.log_lo)
            u = (torch.log(cm.clamp_min(lo)) - self.log_lo) * scale
            du = torch.where(cm >= lo, scale / cm, torch.zeros_like(cm))
            idx, w, dw = _catmull_rom_parts(u, G)
            tab = self.sub[self.order[:, None], idx]  # (B, E, 4)
            log_f, dlog_f = (tab * w).sum(-1), (tab * dw).sum(-1)
            if self.corrected:
                K = self.sub_correction.shape[-1]
                O = self.sub_correction.shape[0]
                ratio = self.knot_per_u
                kidx, kw_, kdw = _catmull_rom_parts((u - self.knot_at) * ratio, K)
                corr = self.sub_correction[self.order[:, None], kidx]
                midx, mw, _ = _catmull_rom_parts(self._middle().expand(O), K)
                middle = (self.sub_correction[torch.arange(O, device=c.device)[:, None], midx] * mw).sum(-1)
                log_f = log_f + (corr * kw_).sum(-1) - middle[self.order]
                dlog_f = dlog_f + (corr * kdw).sum(-1) * ratio
            if self.multiplicative:
                phi = torch.zeros(B, self.m, dtype=c.dtype, device=c.device).index_add(1, self.rxn, log_f).exp()
                coef = phi[:, self.rxn]  # d phi_j / d log f_e
            else:
                coef = log_f.exp()
                phi = torch.zeros(B, self.m, dtype=c.dtype, device=c.device).index_add(1, self.rxn, coef)
            dphi = torch.zeros(B, self.m * n, dtype=c.dtype, device=c.device)
            dphi = dphi.index_add(1, self.rxn * n + self.met, coef * dlog_f * du).view(B, self.m, n)
            Gn = self.node.shape[-1]
            nidx, nw, ndw = _catmull_rom_parts(c / self.hi * (Gn - 1), Gn)
            ntab = self.node[self.rows[:, None], nidx]
            node, dnode = (ntab * nw).sum(-1), (ntab * ndw).sum(-1) * (Gn - 1) / self.hi
            if self.corrected:
                shift, slope = self._node_shift(c)
                node, dnode = node + shift, dnode + slope
            kphi = self.k * phi
            f = node + kphi @ self.S.T
            jc = torch.diag_embed(dnode) + self.S @ (self.k[:, None] * dphi)
            parts = {"log_k": self.S * kphi[:, None, :]}
            if self.corrected:
                eye = torch.eye(n, dtype=c.dtype, device=c.device)
                parts.update(alpha=eye[None], beta=torch.diag_embed(c))
                if hasattr(self, "gamma"):
                    d = self.gamma.shape[1]
                    each = torch.diag_embed(self._node_basis(c)[0].transpose(1, 2))  # (B, d, n, n)
                    parts["gamma"] = each.permute(0, 2, 3, 1).reshape(B, n, n * d)
                if "sub_correction" in names:
                    base = self.rxn * O * K + self.order * K  # (E,) each edge's row and order block
                    dcorr = torch.zeros(B, self.m * O * K, dtype=c.dtype, device=c.device)
                    dcorr = dcorr.scatter_add(1, (base[:, None] + kidx).reshape(B, -1),
                                              (coef[..., None] * kw_).reshape(B, -1))
                    dcorr = dcorr.index_add(1, (base[:, None] + midx[self.order]).reshape(-1),
                                            (-coef[..., None] * mw[self.order]).reshape(B, -1))
                    parts["sub_correction"] = self.S @ (self.k[:, None] * dcorr.view(B, self.m, O * K))
            return f, jc, [parts[k] for k in names]


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


def memory_bytes(data: Measurements, segment: int, n_parameters: int) -> int:
    """What one Levenberg-Marquardt iteration holds at most (float64): the residuals' Jacobian (B, R, p + n)
    and the segments' normal blocks (B, p + n, p + n). Quadratic in the network's size: a genome-scale
    network is out of reach (iJO1366: about 10^12 bytes), E. coli core needs about 10^8."""
    n = len(data.metabolite_ids)
    B = sum(math.ceil((e.t.size - 1) / segment) for e in data.experiments)
    P = n_parameters + n
    return 8 * B * P * ((segment + 1) * n + P)


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


def _steps(dt: torch.Tensor, max_step: float) -> list[tuple[int, torch.Tensor]]:
    """Per interval: the RK4 steps (ceil(max dt / max_step), the same for every segment) and each segment's
    step length (B, 1); an interval of padding only (dt 0 everywhere) takes none."""
    out = []
    for l in range(dt.shape[1]):
        col = dt[:, l]
        n_steps = max(int(math.ceil(float(col.max()) / max_step)), 1) if float(col.max()) > 0 else 0
        out.append((n_steps, (col / max(n_steps, 1))[:, None]))
    return out


def shoot(rhs: Callable[[torch.Tensor], torch.Tensor], c0: torch.Tensor, dt: torch.Tensor,
          max_step: float) -> torch.Tensor:
    """States at the L + 1 nodes (B, L + 1, n) of B segments from c0 (B, n), differentiable: classical RK4
    with ceil(max dt / max_step) steps per interval, each segment with its own step (dt / steps)."""
    out = [c0]
    c = c0
    for n_steps, h in _steps(dt, max_step):
        h = h.to(c0.dtype)
        for _ in range(n_steps):
            c = rk4_step(rhs, c, h)
        out.append(c)
    return torch.stack(out, 1)


def shoot_sensitivities(rhs: RateModel, c0: torch.Tensor, dt: torch.Tensor, max_step: float,
                        names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``shoot`` with the derivatives of every state in the parameters ``names`` (p, flattened) and in the
    segment's initial log state: states (B, L + 1, n) and sensitivities (B, L + 1, n, p + n).

    The RK4 map differentiated exactly: each stage's tangent is df/dc times the stage's tangent plus
    df/dtheta (``RateModel.linearised``), combined with the stage weights."""
    B, n = c0.shape
    with torch.no_grad():
        sizes = [part.shape[-1] for part in rhs.linearised(c0[:1], names)[2]]
        offsets = np.cumsum([0] + sizes)
        p = int(offsets[-1])
        L = dt.shape[1]
        out = c0.new_empty(B, L + 1, n, p + n)
        out[:, 0, :, :p] = 0.0
        out[:, 0, :, p:] = torch.diag_embed(c0)

        def stage(c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f, jc, parts = rhs.linearised(c, names)
            ds = torch.bmm(jc, s)
            for a, b, part in zip(offsets[:-1], offsets[1:], parts):
                ds[..., a:b] += part
            return f, ds

        states = [c0]
        c, sens = c0, out[:, 0]
        for l, (n_steps, h) in enumerate(_steps(dt, max_step)):
            h = h.to(c0.dtype)
            hs = h[..., None]
            for _ in range(n_steps):
                k1, d1 = stage(c, sens)
                k2, d2 = stage(c + 0.5 * h * k1, torch.addcmul(sens, 0.5 * hs, d1))
                k3, d3 = stage(c + 0.5 * h * k2, torch.addcmul(sens, 0.5 * hs, d2))
                k4, d4 = stage(c + h * k3, torch.addcmul(sens, hs, d3))
                c = c + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
                d1.add_(d2, alpha=2.0).add_(d3, alpha=2.0).add_(d4)
                sens = torch.addcmul(sens, hs / 6.0, d1)
            states.append(c)
            out[:, l + 1] = sens
        return torch.stack(states, 1), out


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
    cov_robust: np.ndarray | None = None
    """The same from the block-robust sandwich (``robust_covariance``): residuals correlated in time (a model
    that misses part of the dynamics) widen it, independent ones leave it about ``cov``."""
    blocks: int = 0
    """How many blocks of consecutive samples the sandwich summed its scores over."""
    states: np.ndarray | None = None
    """With ``refine(states=True)``, the fitted trajectories at every sample (all samples, n) in the data's
    order of experiments and times: each segment integrated from its fitted start with the final parameters
    (where segments share a sample, the later one's start)."""

    @property
    def rmse_log_start(self) -> float:
        return math.sqrt(self.loss_start)

    @property
    def rmse_log_end(self) -> float:
        return math.sqrt(self.loss_end)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("cov", "cov_robust", "states")}
        return {**out, "rmse_log_start": self.rmse_log_start, "rmse_log_end": self.rmse_log_end}


class _Problem:
    """The shooting residuals as a function of the flat global parameters theta (p,) and the segments'
    initial log states u (B, n), and their Jacobian by forward sensitivities."""

    def __init__(self, rhs: RateModel, names: list[str], seg: Segments, step: float):
        self.rhs, self.names, self.seg, self.step = rhs, names, seg, step
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
        """log c_model - log c_measured (B, L + 1, n), zero where nothing was measured."""
        state = dict(self.fixed)
        state.update({k: part.reshape(shape) for k, part, shape in
                      zip(self.names, torch.split(theta, self.sizes), self.shapes)})

        def f(c: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self.rhs, state, (c,))
        pred = shoot(f, u.exp(), self.seg.dt.to(u.dtype), self.step)
        return (torch.log(pred.clamp_min(1e-12)) - self.seg.log_c) * self.mask

    def states(self, theta: torch.Tensor, u: torch.Tensor, offsets: np.ndarray) -> np.ndarray:
        """The model's concentrations at every sample (all samples, n; ``offsets``: each experiment's first
        row), each segment integrated from its start u; a sample two segments share takes the later
        segment's start."""
        self.load(theta)
        with torch.no_grad():
            pred = shoot(self.rhs, u.exp(), self.seg.dt.to(u.dtype), self.step).cpu().numpy()
        out = np.full((int(offsets[-1]), pred.shape[-1]), np.nan)
        steps = (self.seg.dt > 0).sum(1).cpu().numpy()
        for b, (e_idx, s) in enumerate(zip(self.seg.experiment, self.seg.start)):
            row = offsets[e_idx] + s
            out[row:row + steps[b] + 1] = pred[b, :steps[b] + 1]
        return out

    def linearised(self, theta: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The residuals (B, R) and their Jacobian (B, R, p + n) in theta and in each segment's own initial
        log state (R = (L + 1) n rows per segment). Leaves ``theta`` loaded in the model."""
        self.load(theta)
        pred, sens = shoot_sensitivities(self.rhs, u.exp(), self.seg.dt.to(u.dtype), self.step, self.names)
        B = pred.shape[0]
        live = pred >= 1e-12
        r = (torch.log(pred.clamp_min(1e-12)) - self.seg.log_c) * self.mask
        scale = torch.where(live, self.mask / pred, torch.zeros_like(pred))
        return r.reshape(B, -1), (sens * scale[..., None]).reshape(B, r[0].numel(), -1)


@dataclass
class _Normal:
    """The Gauss-Newton normal equations of the arrow structure: the global block A (p, p), the coupling
    C (B, p, n), the segments' blocks D (B, n, n) and the gradients' negatives gk (p,), gu (B, n)."""

    A: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor
    gk: torch.Tensor
    gu: torch.Tensor


def _normal(J: torch.Tensor, r: torch.Tensor, p: int) -> _Normal:
    """Normal blocks from the Jacobian J (B, R, p + n) and the residuals r (B, R), one batched product."""
    JT = J.transpose(1, 2)
    G = JT @ J
    g = -(JT @ r[..., None])[..., 0]
    return _Normal(A=G[:, :p, :p].sum(0), C=G[:, :p, p:], D=G[:, p:, p:], gk=g[:, :p].sum(0), gu=g[:, p:])


def _state_solve(N: _Normal) -> torch.Tensor:
    """D^-1 C^T (B, n, p): how each segment's state follows the global parameters when it is eliminated."""
    D = N.D + 1e-12 * torch.diag_embed(torch.diagonal(N.D, dim1=1, dim2=2).clamp_min(1e-300))
    return torch.linalg.solve(D, N.C.transpose(1, 2))


def _curvature(N: _Normal) -> torch.Tensor:
    """The Gauss-Newton curvature of the global parameters with the segments' states eliminated."""
    return N.A - torch.einsum("bpi,biq->pq", N.C, _state_solve(N))


def _inverse(H: np.ndarray, rcond: float = 1e-14) -> np.ndarray:
    """Inverse of a curvature whose near-null directions keep a huge variance (a pseudo-inverse would give
    them none, and a k the data do not determine would look exact)."""
    w, V = np.linalg.eigh((H + H.T) / 2)
    w = np.maximum(w, rcond * max(float(w.max()), 1e-300))
    return (V / w) @ V.T


def robust_covariance(J: torch.Tensor, r: torch.Tensor, N: _Normal, H_inv: np.ndarray, n: int,
                      block: int) -> tuple[np.ndarray, int]:
    """Block-robust sandwich H^-1 (sum_g s_g s_g^T) H^-1 G / (G - 1) of the global parameters, and G.

    s_g is the score of the global parameters summed over a block of ``block`` consecutive sample times of one
    segment, with the segment's state profiled out (the Jacobian projected off its state's columns: the
    parameters' own information, as in the Schur complement H). The curvature estimate sigma^2 H^-1 assumes
    independent residuals; a model whose functions miss part of the dynamics leaves residuals that persist
    for many samples, and its k errors are larger than that estimate says. Summing scores within blocks
    keeps such correlation (batch means); with independent residuals the two estimates agree in expectation.

    Shapes: J (B, (L + 1) n, p + n), r (B, (L + 1) n), H_inv (p, p)."""
    p = H_inv.shape[0]
    B, R = r.shape
    times = R // n
    profiled = J[..., :p] - J[..., p:] @ _state_solve(N)
    scores = torch.einsum("btip,bti->btp", profiled.reshape(B, times, n, p), r.reshape(B, times, n))
    scores = scores.reshape(-1, p).cpu().numpy()
    clusters = (np.arange(B)[:, None] * times + np.arange(times)[None, :] // block * block).reshape(-1)
    live = np.abs(scores).sum(1) > 0  # samples with no measurement (padding, gaps) form no cluster
    return unc.sandwich(H_inv, scores[live], clusters[live]), int(np.unique(clusters[live]).size)


def _lm_step(N: _Normal, mu: float, ridge: torch.Tensor | None = None,
             theta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One damped Gauss-Newton (Levenberg-Marquardt) step for the arrow-structured normal matrix: the global
    block, one n x n block per segment, eliminated by the Schur complement (never forming the full matrix).
    ``ridge`` (p,) the weights of a penalty ridge * theta^2."""
    A, gk = N.A, N.gk
    if ridge is not None:
        A, gk = A + torch.diag(ridge), gk - ridge * theta
    A = A + mu * torch.diag(torch.diagonal(A).clamp_min(1e-12))
    D = N.D + mu * torch.diag_embed(torch.diagonal(N.D, dim1=1, dim2=2).clamp_min(1e-12))
    Dinv_C = torch.linalg.solve(D, N.C.transpose(1, 2))  # (B, n, p)
    Dinv_g = torch.linalg.solve(D, N.gu[..., None])[..., 0]  # (B, n)
    schur = A - torch.einsum("bpi,biq->pq", N.C, Dinv_C)
    rhs = gk - torch.einsum("bpi,bi->p", N.C, Dinv_g)
    dk = torch.linalg.lstsq(schur, rhs[:, None]).solution[:, 0]
    du = Dinv_g - torch.einsum("bip,p->bi", Dinv_C, dk)
    return dk, du


def refine(rhs: RateModel, data: Measurements, initial_states: np.ndarray | None, segment: int,
           parameters: list[str], iterations: int = 20, safety: float = 0.5, tolerance: float = 1e-6,
           covariance: bool = True, ridge: dict[str, float] | None = None, max_step: float = math.inf,
           robust_block: int | None = None, progress: Callable[[int, float], None] | None = None,
           states: bool = False) -> Refinement:
    """Fit the named ``parameters`` of ``rhs`` (and every segment's initial state) to the measured
    concentrations by multiple shooting (module docstring), with Levenberg-Marquardt; ``rhs`` is left at the
    best parameters found (its start when the refinement did not lower the objective).

    ``initial_states`` (all samples, n) in the data's order of experiments and times, e.g. the smoothed
    trajectories: each segment starts there (at the measured sample when None). Stops when an accepted step
    lowers the objective by less than ``tolerance`` (relative). With ``covariance``, one more Jacobian at the
    end gives the parameters' covariance (``Refinement.cov``) and its block-robust counterpart
    (``robust_covariance``; blocks of ``robust_block`` samples, the square root of a segment's when None).
    ``ridge`` maps a parameter to the weight w of a penalty w theta^2 added to the sum of squared residuals
    (a Gaussian prior at 0 of variance sigma^2 / w): it keeps a direction the data barely see (a function's
    correction where no sample lies) at 0.
    ``max_step`` bounds the change of any global parameter in one step (the step is shortened along its own
    direction): Marquardt's damping scales with each parameter's curvature, so a log k the data barely see, with
    a gradient, is otherwise sent e^200 away by every trial, each integration fails and the stage gives up.
    With ``states``, one more integration gives the fitted concentrations at every sample
    (``Refinement.states``)."""
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
    prob = _Problem(rhs, list(parameters), seg, h)
    theta = prob.flat()
    count = float(prob.mask.sum())
    w = torch.cat([torch.full((size,), float((ridge or {}).get(name, 0.0)), dtype=theta.dtype, device=device)
                   for name, size in zip(prob.names, prob.sizes)])
    p = theta.numel()

    def loss_of(th: torch.Tensor, uu: torch.Tensor) -> float:
        with torch.no_grad():
            value = (float((prob.residuals(th, uu) ** 2).sum()) + float((w * th * th).sum())) / count
        return value if math.isfinite(value) else math.inf

    theta0, u0 = theta, u
    start_loss = loss = loss_of(theta, u)
    mu, it = 1e-3, 0
    for it in range(1, iterations + 1):
        r, J = prob.linearised(theta, u)
        N = _normal(J, r, p)
        del J
        if not all(bool(torch.isfinite(x).all()) for x in (N.A, N.C, N.D, N.gk, N.gu)):
            break  # sensitivities overflowed at this point: no step can be computed from here
        accepted = False
        for _ in range(8):
            dk, du = _lm_step(N, mu, w, theta)
            longest = float(dk.abs().max()) if dk.numel() else 0.0
            if longest > max_step:
                dk, du = dk * (max_step / longest), du * (max_step / longest)
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
    if not improved:
        theta, u, loss = theta0, u0, start_loss
    prob.load(theta)
    fitted = prob.states(theta, u, offsets) if states else None
    cov = cov_robust = None
    blocks = 0
    if covariance:
        r, J = prob.linearised(theta, u)
        N = _normal(J, r, p)
        dof = max(count - p - seg.n_segments * u.shape[1], 1.0)
        sigma2 = float((r ** 2).sum()) / dof
        H_inv = _inverse((_curvature(N) + torch.diag(w)).cpu().numpy())
        cov = sigma2 * H_inv
        block = robust_block or max(1, round(math.sqrt(seg.dt.shape[1] + 1)))
        cov_robust, blocks = robust_covariance(J, r, N, H_inv, u.shape[1], block)
    return Refinement(loss_start=start_loss, loss_end=loss, iterations=it, step=h, segments=seg.n_segments,
                      segment_length=segment, seconds=time.perf_counter() - t0, improved=improved, cov=cov,
                      cov_robust=cov_robust, blocks=blocks, states=fitted)
