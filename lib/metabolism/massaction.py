"""Least squares that knows the mass-action form: the oracle upper bound of the form-free GNN, and the
derivative-based estimators a kinetic modeller tries first.

With phi_j(c) = prod_i c_i^R_ij known and the node term linear per metabolite (h_i = alpha_i + beta_i c_i:
homeostasis -lambda (c - baseline) is alpha = lambda baseline, beta = -lambda), the model is linear in all of
its parameters theta = (k, alpha, beta), and one solve gives them. A row r of the regression is one window of
the integral objective (``weak_design``) or one frame with an estimated derivative (``derivative_design``);
every row holds the n equations of the metabolites:

    y_r = S diag(k) phi_r + alpha a_r + beta * cbar_r      (a_r = int psi, cbar_r = int psi c; 1 and c per frame)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import uncertainty as unc
from .network import Stoichiometry
from .weakform import WeakForm


def rate_terms(stoich: Stoichiometry, c: np.ndarray) -> np.ndarray:
    """phi_j(c) = prod_i c_i^R_ij (multiplicative) or sum_i c_i^R_ij (additive) for c of shape (..., n)."""
    c = np.maximum(c, 1e-300)
    met, rxn, order = stoich.substrate_edges()
    flat = c.reshape(-1, c.shape[-1])
    if stoich.aggregation == "multiplicative":
        logs = np.zeros((flat.shape[0], stoich.n_reactions))
        np.add.at(logs.T, rxn, (order[:, None] * np.log(flat[:, met]).T))
        out = np.exp(logs)
    else:
        out = np.zeros((flat.shape[0], stoich.n_reactions))
        np.add.at(out.T, rxn, (flat[:, met] ** order).T)
    return out.reshape(*c.shape[:-1], stoich.n_reactions)


@dataclass
class Design:
    """Rows of the regression: phi (R, m), a (R,), cbar (R, n), y (R, n) and the cluster of every row."""

    phi: np.ndarray
    a: np.ndarray
    cbar: np.ndarray
    y: np.ndarray
    cluster: np.ndarray


def weak_design(stoich: Stoichiometry, wf: WeakForm, cluster_windows: int = 4, chunk: int = 512) -> Design:
    """Rows = windows of the integral objective; clusters = blocks of ``cluster_windows`` consecutive windows
    of one experiment (neighbouring windows overlap, so their residuals are correlated)."""
    W = wf.n_windows
    phi = np.empty((W, stoich.n_reactions))
    for s in range(0, W, chunk):
        rows = slice(s, min(s + chunk, W))
        phi[rows] = np.einsum("wl,wlm->wm", wf.weight[rows], rate_terms(stoich, wf.node_concentrations(rows)))
    a = wf.weight.sum(1)
    cbar = wf.integrate(wf.c)
    block = np.zeros(W, dtype=int)
    for e in np.unique(wf.experiment):
        sel = np.flatnonzero(wf.experiment == e)
        block[sel] = np.arange(sel.size) // cluster_windows
    cluster = wf.experiment.astype(np.int64) * 10**9 + block
    return Design(phi=phi, a=a, cbar=cbar, y=wf.y, cluster=cluster)


def derivative_design(stoich: Stoichiometry, c: np.ndarray, dcdt: np.ndarray, cluster_frames: int = 16) -> Design:
    """Rows = frames with an estimated derivative; clusters = blocks of consecutive frames."""
    return Design(phi=rate_terms(stoich, c), a=np.ones(c.shape[0]), cbar=c, y=dcdt,
                  cluster=np.arange(c.shape[0]) // cluster_frames)


@dataclass
class LinearFit:
    """theta = (k, alpha, beta) with its cluster-robust covariance and the k intervals."""

    k: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    cov: np.ndarray
    intervals: unc.Intervals
    rmse: float

    @property
    def lam(self) -> np.ndarray:
        return -self.beta

    @property
    def baseline(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.alpha / -self.beta


def normal_matrix(S: np.ndarray, d: Design) -> tuple[np.ndarray, np.ndarray]:
    """H = X^T X and g = X^T y of the stacked regression, from the blocks (never forming X)."""
    n, m = S.shape
    phi, a, cbar, y = d.phi, d.a, d.cbar, d.y
    H = np.zeros((m + 2 * n, m + 2 * n))
    H[:m, :m] = (phi.T @ phi) * (S.T @ S)
    H[:m, m:m + n] = S.T * (phi.T @ a)[:, None]
    H[:m, m + n:] = S.T * (phi.T @ cbar)
    H[m:m + n, m:m + n] = np.diag(np.full(n, a @ a))
    H[m:m + n, m + n:] = np.diag(a @ cbar)
    H[m + n:, m + n:] = np.diag((cbar ** 2).sum(0))
    H = np.triu(H) + np.triu(H, 1).T
    g = np.concatenate([((y @ S) * phi).sum(0), a @ y, (cbar * y).sum(0)])
    return H, g


def scores(S: np.ndarray, d: Design, k: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Per-row scores X_r^T e_r (R, p) at the estimate, for the sandwich."""
    e = d.y - (d.phi * k) @ S.T - alpha * d.a[:, None] - beta * d.cbar
    return np.concatenate([d.phi * (e @ S), d.a[:, None] * e, d.cbar * e], 1)


def fit_linear(stoich: Stoichiometry, design: Design, level: float = 0.95, threshold: float = 0.3,
               rcond: float = 1e-12) -> LinearFit:
    """The least-squares theta, its sandwich covariance and the k intervals."""
    S = stoich.S
    n, m = S.shape
    H, g = normal_matrix(S, design)
    H_inv, vif = unc.scaled_inverse(H, rcond)
    theta = H_inv @ g
    k, alpha, beta = theta[:m], theta[m:m + n], theta[m + n:]
    sc = scores(S, design, k, alpha, beta)
    cov = unc.sandwich(H_inv, sc, design.cluster)
    e = design.y - (design.phi * k) @ S.T - alpha * design.a[:, None] - beta * design.cbar
    return LinearFit(k=k, alpha=alpha, beta=beta, cov=cov,
                     intervals=unc.intervals(k, cov[:m, :m], vif[:m], level, threshold),
                     rmse=float(np.sqrt((e ** 2).mean())))
