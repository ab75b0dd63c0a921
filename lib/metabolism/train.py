"""Fitting the GNN: variable projection for k, Adam for the functions, checkpoints and resume.

The data are rows of equations, each linear in k for given functions: frames with their dc/dt
(``TrainingData``, the simulator's exact derivative) or windows of the integral objective
(``windows.WindowData``, from measured concentrations only; ``metabolism.weakform``). Both give, for a batch of rows,
the rate terms phi, the node term and the target, and training never needs to know which it has.

Given the substrate function, dc/dt is linear in k. So instead of descending on log k (badly conditioned:
the rate constants span decades and interact through shared metabolites), k is set every few steps to
the least-squares optimum for the current MLP_sub and MLP_node, while Adam trains the MLPs and the
embeddings on the dc/dt error. At the least-squares optimum the gradient of the loss with respect to the
functions is the partial gradient at fixed k (variable projection), so the two steps cooperate.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import RunConfig, TrainingConfig
from common.io import CheckpointMismatch, save_torch
from .model import MetabolismGNN
from .simulate import odeint

Terms = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(phi, node, target) of a batch of rows: rate terms (B, m), node term (B, n), target (B, n)."""




@dataclass
class TrainingData:
    """Frames flattened over trajectories: c and dc/dt of shape (F, n); `traj` holds (B, T, n) for rollouts."""

    c: torch.Tensor
    dcdt: torch.Tensor
    traj: torch.Tensor
    dt: float

    @classmethod
    def from_arrays(cls, c: np.ndarray, dcdt: np.ndarray, dt: float, device: torch.device,
                    dtype: torch.dtype = torch.float64) -> "TrainingData":
        c3 = c if c.ndim == 3 else c[None]
        d3 = dcdt if dcdt.ndim == 3 else dcdt[None]
        t = torch.as_tensor(c3, dtype=dtype, device=device)
        return cls(c=t.reshape(-1, t.shape[-1]),
                   dcdt=torch.as_tensor(d3, dtype=dtype, device=device).reshape(-1, t.shape[-1]),
                   traj=t, dt=dt)

    @property
    def n_rows(self) -> int:
        return self.c.shape[0]

    @property
    def target(self) -> torch.Tensor:
        return self.dcdt

    @property
    def device(self) -> torch.device:
        return self.c.device

    def terms(self, model: MetabolismGNN, rows: torch.Tensor, node: bool = True) -> Terms:
        c = self.c[rows]
        return model.phi(c), model.node_term(c) if node else torch.zeros_like(c), self.dcdt[rows]


def stoichiometry_matrix(model: MetabolismGNN, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Dense S (n, m) from the model's reaction -> metabolite edges."""
    S = torch.zeros(model.n, model.m, dtype=dtype, device=model.stoich_coeff.device)
    S[model.stoich_index[1], model.stoich_index[0]] = model.stoich_coeff.to(dtype)
    return S


def normal_equations(phi: torch.Tensor, r: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """G, b of min_k sum_t |r_t - S diag(k) phi_t|^2: G = (Phi^T Phi) o (S^T S), b = sum_t phi_t o (S^T r_t)."""
    return (phi.T @ phi) * (S.T @ S), (phi * (r @ S)).sum(0)


def _solve(G: torch.Tensor, b: torch.Tensor, ridge: float, k0: torch.Tensor | float = 0.0) -> torch.Tensor:
    """argmin_k k^T G k - 2 b^T k + ridge * mean(diag G) * |k - k0|^2 (Tikhonov towards k0)."""
    mu = ridge * torch.diagonal(G).mean()
    eye = torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    return torch.linalg.solve(G + mu * eye, b + mu * k0)


def rate_constant_system(model: MetabolismGNN, data, rows: torch.Tensor | None = None,
                         chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal equations G, b of k for the current functions on ``rows`` (all if None), in float64."""
    idx = torch.arange(data.n_rows, device=data.device) if rows is None else rows
    S = stoichiometry_matrix(model)
    G = torch.zeros(model.m, model.m, dtype=torch.float64, device=data.device)
    b = torch.zeros(model.m, dtype=torch.float64, device=data.device)
    with torch.no_grad():
        for part in idx.split(chunk):
            phi, node, target = data.terms(model, part)
            dG, db = normal_equations(phi.double(), (target - node).double(), S)
            G += dG
            b += db
    return G, b


def solve_rate_constants(model: MetabolismGNN, data, n_frames: int | None = None,
                         floor: float = 1e-6, ridge: float = 1e-10) -> torch.Tensor:
    """Least-squares k for the current functions on `n_frames` evenly spaced rows (all if None), in float64.

    Clipped below at `floor` (rates are positive). Returns k; does not modify the model.
    """
    n_all = data.n_rows
    idx = torch.linspace(0, n_all - 1, min(n_frames or n_all, n_all), device=data.device).long()
    G, b = rate_constant_system(model, data, idx)
    with torch.no_grad():
        k = _solve(G, b, ridge)
    return k.clamp_min(floor).to(data.target.dtype)


def varpro_prediction(terms: Terms, S: torch.Tensor, ridge: float, k0: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' prediction with k at its (Tikhonov-regularised) least-squares optimum on this batch, and k.

    Differentiable through the solve, so the functions get the variable-projection gradient.
    """
    phi, node, target = terms
    G, b = normal_equations(phi, target - node, S)
    k = _solve(G, b, ridge, k0)
    return node + (k * phi) @ S.T, k


def ridge_schedule(cfg: TrainingConfig, step: int) -> float:
    """Geometric decay from ridge_start to ridge_end over the first `ridge_decay_fraction` of training.

    Early on the substrate function is nearly constant, the normal equations are rank-deficient, and a
    strong pull towards the running k keeps the solve well-posed; at the end the solve is essentially exact.
    """
    frac = min(step / max(cfg.ridge_decay_fraction * cfg.steps, 1), 1.0)
    return cfg.ridge_start * (cfg.ridge_end / cfg.ridge_start) ** frac


def _rollout_loss(model: MetabolismGNN, data: TrainingData, steps: int, batch: int, gen: torch.Generator,
                  node: bool = True) -> torch.Tensor:
    """Mean squared error of a differentiable RK4 rollout of `steps` frames against the data (the node term
    0 without ``node``)."""
    B, T, _ = data.traj.shape
    b = torch.randint(0, B, (batch,), generator=gen, device="cpu").to(data.c.device)
    t0 = torch.randint(0, T - steps, (batch,), generator=gen, device="cpu").to(data.c.device)
    rhs = model if node else (lambda c: model(c, node=False))
    pred = odeint(rhs, data.traj[b, t0], steps + 1, data.dt, "rk4", negative_tolerance=None, label="rollout loss")
    err = 0.0
    for s in range(1, steps + 1):
        err = err + ((pred[:, s] - data.traj[b, t0 + s]) ** 2).mean()
    return err / steps / data.traj.var()


def _lr_lambda(cfg: TrainingConfig):
    ratio = cfg.lr_final / cfg.lr

    def f(step: int) -> float:
        frac = min(step / max(cfg.steps, 1), 1.0)
        return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * frac))

    return f


def checkpoint_digest(cfg: RunConfig) -> str:
    return cfg.digest("network", "simulation", "model", "training") + f"-{cfg.seed}"


def _function_params(model: MetabolismGNN, cfg: TrainingConfig) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if not (name == "log_k" and cfg.k_solver == "varpro")]


def _batch_loss(model: MetabolismGNN, data, rows: torch.Tensor, S: torch.Tensor, var: torch.Tensor,
                cfg: TrainingConfig, ridge: float, k_step: float, node: bool = True) -> torch.Tensor:
    """Normalised error of a batch of rows; in varpro mode also moves log k towards the batch optimum.
    Without ``node`` the node term is 0 (the warm-up)."""
    terms = data.terms(model, rows, node)
    target = terms[2]
    if cfg.k_solver != "varpro":
        phi, node, _ = terms
        return ((node + (model.k * phi) @ S.T - target) ** 2).mean() / var
    pred, k = varpro_prediction(terms, S, ridge, model.k.detach())
    with torch.no_grad():
        model.log_k.lerp_(k.clamp_min(cfg.k_floor).log(), k_step)
    return ((pred - target) ** 2).mean() / var


def train(
    model: MetabolismGNN,
    data: TrainingData,
    cfg: RunConfig,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train a simulated run's model in place (``fit_model`` with the run's training settings and digest)."""
    return fit_model(model, data, cfg.training, cfg.seed, checkpoint_digest(cfg), checkpoint, progress)


def fit_model(
    model: MetabolismGNN,
    data,
    tc: TrainingConfig,
    seed: int,
    digest: str,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train in place on ``data`` (``TrainingData`` or ``windows.WindowData``: anything with ``n_rows``,
    ``target``, ``device`` and ``terms(model, rows)``); resume from `checkpoint` when it exists (it must carry
    `digest`). Returns the loss
    log, whose rows carry the cumulative training wall and CPU time over all sessions (`seconds`,
    `cpu_seconds`: this process's CPU, which a shared machine does not inflate).

    Two phases: `steps` of Adam on random batches of rows (cosine learning rate), then `lbfgs_steps` of
    L-BFGS on a fixed set of `lbfgs_frames` evenly spaced rows, which polishes the functions to the
    precision the rate constants need. A final least-squares solve on all rows sets log k, and the
    checkpoint then holds that final state.
    """
    if tc.rollout_steps > 0 and not isinstance(data, TrainingData):
        raise ValueError("training.rollout_steps needs frames with dc/dt (a simulated run), not windows")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    params = _function_params(model, tc)
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(tc))
    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=1, history_size=50, line_search_fn="strong_wolfe")
    start, log, seconds_before, cpu_before = 0, [], 0.0, 0.0
    t_start, c_start = time.perf_counter(), time.process_time()
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=data.device, weights_only=False)
        if state["digest"] != digest:
            raise CheckpointMismatch(
                f"checkpoint {checkpoint} was made with another configuration (digest {state['digest']}, "
                f"this run {digest}); use a new output directory or delete the checkpoint"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        lbfgs.load_state_dict(state["lbfgs"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        start, log = state["step"], state["log"]
        seconds_before, cpu_before = state.get("seconds", 0.0), state.get("cpu_seconds", 0.0)

    def clocks() -> dict:
        return {"seconds": seconds_before + time.perf_counter() - t_start,
                "cpu_seconds": cpu_before + time.process_time() - c_start}

    def save(step: int) -> None:
        if checkpoint is not None:
            _save(checkpoint, {"step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                               "sched": sched.state_dict(), "lbfgs": lbfgs.state_dict(), "gen": gen.get_state(),
                               "torch_rng": torch.get_rng_state(), "log": log, "digest": digest, **clocks()})

    var = data.target.var()
    n_frames = data.n_rows
    S = stoichiometry_matrix(model, data.target.dtype)
    total_steps = tc.steps + tc.lbfgs_steps
    bar = tqdm(range(start, total_steps), initial=start, total=total_steps, disable=not progress, desc="train",
               mininterval=1.0)
    fixed = torch.linspace(0, n_frames - 1, min(tc.lbfgs_frames, n_frames), device=data.device).long()
    for step in bar:
        node = step >= tc.node_warmup_fraction * tc.steps  # the warm-up fits the reactions alone
        if step < tc.steps:
            if n_frames <= tc.batch_frames:  # few rows (windows): every step sees all of them
                idx = torch.arange(n_frames, device=data.device)
            else:
                idx = torch.randint(0, n_frames, (tc.batch_frames,), generator=gen).to(data.device)
            loss = _batch_loss(model, data, idx, S, var, tc, ridge_schedule(tc, step), tc.k_average, node)
            if tc.rollout_steps > 0:
                loss = loss + tc.rollout_weight * _rollout_loss(model, data, tc.rollout_steps, 8, gen, node)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            sched.step()
            phase = "adam"
        else:
            def closure() -> torch.Tensor:
                lbfgs.zero_grad(set_to_none=True)
                value = _batch_loss(model, data, fixed, S, var, tc, tc.ridge_end, 1.0, node)
                value.backward()
                return value

            loss = lbfgs.step(closure)
            phase = "lbfgs"
        done = step + 1
        if done % tc.log_every == 0 or done in (tc.steps, total_steps):
            log.append({"step": done, "phase": phase, "loss": loss.item(), **clocks()})
            bar.set_postfix(loss=f"{loss.item():.2e}", phase=phase)
        if done % tc.checkpoint_every == 0 or done in (tc.steps, total_steps):
            save(done)
    if tc.k_solver == "varpro":
        with torch.no_grad():
            model.log_k.copy_(solve_rate_constants(model, data, floor=tc.k_floor, ridge=tc.ridge_end).log())
        save(total_steps)
    return log


def _save(path: Path, state: dict) -> None:
    save_torch(state, path)


def polish(model: MetabolismGNN, data, tc: TrainingConfig, steps: int) -> None:
    """``steps`` full-batch L-BFGS iterations from the model's current state, then the final k solve: the
    last phase of training alone, e.g. to re-fit a trained model to a bootstrap replicate of its data."""
    params = _function_params(model, tc)
    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=1, history_size=50, line_search_fn="strong_wolfe")
    var = data.target.var()
    S = stoichiometry_matrix(model, data.target.dtype)
    rows = torch.linspace(0, data.n_rows - 1, min(tc.lbfgs_frames, data.n_rows), device=data.device).long()

    def closure() -> torch.Tensor:
        lbfgs.zero_grad(set_to_none=True)
        value = _batch_loss(model, data, rows, S, var, tc, tc.ridge_end, 1.0)
        value.backward()
        return value

    for _ in range(steps):
        lbfgs.step(closure)
    if tc.k_solver == "varpro":
        with torch.no_grad():
            model.log_k.copy_(solve_rate_constants(model, data, floor=tc.k_floor, ridge=tc.ridge_end).log())
