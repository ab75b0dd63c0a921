"""Measured-like data for a network whose truth we choose: kinetics drawn as in the regimes, trajectories
integrated by scipy (LSODA, or BDF with a sparse Jacobian at genome scale), an independent simulator from
the torch integrator the study trains with, sampled at some times and given relative Gaussian noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp

from .measurements import Experiment, Measurements
from .network import Network, Stoichiometry


def draw_kinetics(stoich: Stoichiometry, seed: int, log_k: tuple[float, float] = (-2.0, -1.0),
                  lambdas: tuple[float, ...] = (0.001, 0.002), baselines: tuple[float, ...] = (4.0, 6.0)) -> Network:
    """A Network on ``stoich`` with log10 k uniform in ``log_k`` and homeostasis per metabolite type."""
    rng = np.random.default_rng(seed)
    n, m = stoich.n_metabolites, stoich.n_reactions
    types = rng.permutation(np.arange(n) % len(lambdas))
    return Network(R=stoich.R, P=stoich.P, aggregation=stoich.aggregation, metabolite_ids=stoich.metabolite_ids,
                   reaction_ids=stoich.reaction_ids, k=10.0 ** rng.uniform(*log_k, size=m), types=types,
                   lam=np.asarray(lambdas, float)[types], baseline=np.asarray(baselines, float)[types])


class MassAction:
    """dc/dt = -lambda (c - baseline) + S diag(k) prod_i c_i^R_ij, with its Jacobian, in numpy/scipy."""

    def __init__(self, net: Network):
        if net.aggregation != "multiplicative":
            raise ValueError("the scipy simulator implements mass action (multiplicative) only")
        self.net = net
        self.S = sparse.csr_matrix(net.S)
        met, rxn, order = net.substrate_edges()
        self.met, self.rxn, self.order = met, rxn, order
        self.m = net.n_reactions

    def rates(self, c: np.ndarray) -> np.ndarray:
        c = np.maximum(c, 0.0)
        logs = np.zeros(self.m)
        with np.errstate(divide="ignore"):
            np.add.at(logs, self.rxn, self.order * np.log(c[self.met]))
        return self.net.k * np.exp(logs)

    def __call__(self, t: float, c: np.ndarray) -> np.ndarray:
        return -self.net.lam * (c - self.net.baseline) + self.S @ self.rates(c)

    def jacobian(self, t: float, c: np.ndarray) -> sparse.csr_matrix:
        c = np.maximum(c, 1e-12)
        v = self.rates(c)
        dv = sparse.csr_matrix((v[self.rxn] * self.order / c[self.met], (self.rxn, self.met)),
                               shape=(self.m, c.size))
        return (self.S @ dv - sparse.diags(self.net.lam)).tocsr()


def integrate(net: Network, c0: np.ndarray, t_eval: np.ndarray, method: str = "LSODA",
              rtol: float = 1e-8, atol: float = 1e-10) -> np.ndarray:
    """Concentrations (len(t_eval), n) from c0 at the times ``t_eval`` (t_eval[0] is the start)."""
    f = MassAction(net)
    dense_jac = method == "LSODA"
    jac = (lambda t, c: f.jacobian(t, c).toarray()) if dense_jac else f.jacobian
    sol = solve_ivp(f, (float(t_eval[0]), float(t_eval[-1])), np.asarray(c0, float), method=method,
                    t_eval=t_eval, rtol=rtol, atol=atol, jac=jac)
    if not sol.success:
        raise RuntimeError(f"scipy {method} failed: {sol.message}")
    return sol.y.T


@dataclass
class Problem:
    """A network with known truth, its clean trajectories and what a measurement of them gives."""

    network: Network
    clean: Measurements
    data: Measurements
    settings: dict = field(default_factory=dict)


def make_problem(net: Network, n_experiments: int = 4, t_end: float = 50.0, dt: float = 0.1,
                 noise: float = 0.0, seed: int = 0, c_range: tuple[float, float] = (1.0, 9.0),
                 method: str = "LSODA") -> Problem:
    """Integrate ``n_experiments`` initial conditions (uniform in ``c_range``) from 0 to ``t_end``, sample
    every ``dt`` and multiply by 1 + noise * N(0, 1) (relative Gaussian noise; clipped at 0)."""
    rng = np.random.default_rng(seed)
    times = np.round(np.arange(0.0, t_end + 0.5 * dt, dt), 12)
    clean, noisy = [], []
    for e in range(n_experiments):
        c0 = rng.uniform(*c_range, size=net.n_metabolites)
        c = integrate(net, c0, times, method=method)
        name = f"exp{e}"
        clean.append(Experiment(name=name, t=times, c=c))
        obs = np.maximum(c * (1.0 + noise * rng.standard_normal(c.shape)), 0.0) if noise > 0 else c.copy()
        noisy.append(Experiment(name=name, t=times, c=obs))
    ids = net.metabolites
    settings = {"n_experiments": n_experiments, "t_end": t_end, "dt": dt, "noise": noise, "seed": seed,
                "c_range": list(c_range), "simulator": f"scipy solve_ivp {method}"}
    return Problem(network=net, clean=Measurements(ids, tuple(clean), source="simulated (clean)"),
                   data=Measurements(ids, tuple(noisy), source=f"simulated (noise {noise:g})"), settings=settings)
