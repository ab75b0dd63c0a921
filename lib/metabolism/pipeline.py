"""The phases of a run and the files they write: simulate -> train -> evaluate.

Each phase reads what the previous one wrote in the run directory, so each can run alone (and a killed
training resumes from its checkpoint). Every file is written atomically.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from . import evaluate as ev
from .config import RunConfig, dump_config, load_config
from common.device import get_device
from common.io import write_json, write_npz, write_text
from common.provenance import git_commit
from .model import MetabolismGNN
from .network import Network, generate_network
from .simulate import activity_rank, initial_conditions, simulate
from .train import TrainingData, train

SYSTEM, LEARNED, METRICS, FIGURES, CHECKPOINT, CONFIG = (
    "system.npz", "learned.npz", "metrics.json", "figures.npz", "checkpoint.pt", "config.yaml")


def resolve_device(name: str = "auto") -> torch.device:
    """The GPU when one is present (or asked for), else the CPU (``common.device.get_device``)."""
    return get_device(name)


def _dtype(cfg: RunConfig) -> torch.dtype:
    return torch.float64 if cfg.training.dtype == "float64" else torch.float32


def _timing(out: Path, phase: str, seconds: float | None) -> None:
    path = out / "timing.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[phase] = seconds
    write_json(path, data)


def load_system(out: Path) -> tuple[Network, dict]:
    path = Path(out) / SYSTEM
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the simulate phase first")
    z = dict(np.load(path))
    ids = {key: tuple(str(i) for i in z[key]) for key in ("metabolite_ids", "reaction_ids") if key in z}
    net = Network(R=z["R"], P=z["P"], k=z["k"], types=z["types"], lam=z["lambda"], baseline=z["baseline"],
                  aggregation=str(z["aggregation"]), **ids)
    return net, z


def simulate_run(cfg: RunConfig, out: str | Path) -> dict:
    """Draw the network, simulate the training trajectories, write config.yaml and system.npz."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_text(out / CONFIG, dump_config(cfg))
    net = generate_network(cfg.network, cfg.seed)
    sc = cfg.simulation
    rng = np.random.default_rng(cfg.seed)
    c0 = initial_conditions(rng, sc.n_trajectories, net.n_metabolites, sc.c_min, sc.c_max)
    tr = simulate(net, c0, sc.n_frames, sc.dt, sc.integrator, sc.substeps, sc.negative_tolerance, sc.noise_std,
                  rng, label=f"of regime {cfg.regime!r}", device=resolve_device(cfg.device))
    squeeze = (lambda a: a[0]) if sc.n_trajectories == 1 else (lambda a: a)
    write_npz(out / SYSTEM, R=net.R, P=net.P, S=net.S, k=net.k, **{"lambda": net.lam}, baseline=net.baseline,
              types=net.types, dt=sc.dt, c=squeeze(tr.c), dcdt=squeeze(tr.dcdt), aggregation=net.aggregation)
    seconds = time.perf_counter() - t0
    _timing(out, "simulate", seconds)
    return {"activity_rank": activity_rank(tr.c[0]), "seconds": seconds}


def build_model(cfg: RunConfig, net: Network, c: np.ndarray) -> MetabolismGNN:
    """The GNN for this network (structure only: R, P and the aggregation), on the run's device and dtype."""
    scale = float(np.mean(c)) if c.size else 5.0
    model = MetabolismGNN(net, cfg.model, c_scale=scale)
    return model.to(device=resolve_device(cfg.device), dtype=_dtype(cfg))


def train_run(cfg: RunConfig, out: str | Path, progress: bool = True) -> dict:
    """Train on system.npz (resuming from checkpoint.pt if present); write learned.npz."""
    out = Path(out)
    net, z = load_system(out)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    resumed = (out / CHECKPOINT).exists()
    model = build_model(cfg, net, z["c"])
    data = TrainingData.from_arrays(z["c"], z["dcdt"], float(z["dt"]), resolve_device(cfg.device), _dtype(cfg))
    log = train(model, data, cfg, checkpoint=out / CHECKPOINT, progress=progress)
    grid = np.linspace(*np.percentile(z["c"], [1, 99]), cfg.evaluation.grid_points)
    lam, base = ev.read_homeostasis(ev.node_curves(model, grid), grid)
    write_npz(out / LEARNED, k=model.k.detach().cpu().numpy(), **{"lambda": lam}, baseline=base,
              embedding=model.embedding.detach().cpu().numpy())
    write_json(out / "training_log.json", log)
    seconds: float | None = time.perf_counter() - t0
    if log and "seconds" in log[-1]:  # a resumed run: count the earlier sessions too
        seconds = max(seconds, log[-1]["seconds"])
    elif resumed:  # a checkpoint from before training time was recorded: the total is unknown
        seconds = None
    _timing(out, "train", seconds)
    return {"final_loss": log[-1]["loss"] if log else None, "seconds": seconds}


def load_trained(cfg: RunConfig, out: Path) -> tuple[MetabolismGNN, Network, dict]:
    net, z = load_system(out)
    path = out / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the train phase first")
    model = build_model(cfg, net, z["c"])
    state = torch.load(path, map_location=resolve_device(cfg.device), weights_only=False)
    model.load_state_dict(state["model"])  # the final state: training saves it after the last k solve
    return model.eval(), net, z


def evaluate_run(cfg: RunConfig, out: str | Path) -> dict:
    """Score the trained model against the true system; write metrics.json and figures.npz."""
    out = Path(out)
    t0 = time.perf_counter()
    model, net, z = load_trained(cfg, out)
    ec = cfg.evaluation
    learned = np.load(out / LEARNED)
    c_train = z["c"]
    lo, hi = np.percentile(c_train, [1, 99])
    grid = np.linspace(lo, hi, ec.grid_points)
    orders = model.orders.cpu().numpy()
    sub_learned = ev.substrate_curves(model, grid, orders)
    sub_true = grid[None, :] ** orders[:, None]
    sub_err = np.abs(sub_learned - sub_true) / sub_true
    node_learned = ev.node_curves(model, grid)
    node_true = -net.lam[:, None] * (grid[None, :] - net.baseline[:, None])
    rng = np.random.default_rng(cfg.seed + 1)
    sc = cfg.simulation
    c0 = initial_conditions(rng, ec.n_test_initial, net.n_metabolites, sc.c_min, sc.c_max)
    rollout, arrays = ev.rollout_metrics(model, net, c0, sc.dt, ec, rng)
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else {}
    metrics = {
        "regime": cfg.regime,
        "seed": cfg.seed,
        "device": str(resolve_device(cfg.device)),
        "commit": git_commit(short=True),
        "config_digest": cfg.digest(),
        "rate_constants": ev.rate_constant_metrics(net.k, learned["k"], ec.outlier_threshold),
        "homeostasis": ev.homeostasis_metrics(learned["lambda"], learned["baseline"], net),
        "substrate_function": {
            "data_range": [float(lo), float(hi)],
            "orders": orders.tolist(),
            "max_rel_error_per_order": sub_err.max(1).tolist(),
            "max_rel_error": float(sub_err.max()),
        },
        "rollout": rollout,
        "embedding": {"cluster_accuracy": ev.cluster_accuracy(learned["embedding"], net.types, cfg.seed)},
        "system": {"activity_rank": activity_rank(c_train if c_train.ndim == 2 else c_train[0]),
                   "n_metabolites": net.n_metabolites, "n_reactions": net.n_reactions},
    }
    timing["evaluate"] = time.perf_counter() - t0
    metrics["timing"] = timing
    _timing(out, "evaluate", timing["evaluate"])
    write_npz(out / FIGURES, log_k_true=np.log10(net.k), log_k_learned=np.log10(learned["k"]), sub_c=grid,
              sub_orders=orders, sub_true=sub_true, sub_learned=sub_learned, node_c=grid, node_true=node_true,
              node_learned=node_learned, types=net.types, embedding=learned["embedding"],
              rollout_dt=sc.dt, horizon_steps=rollout["horizon_steps"], **arrays)
    write_json(out / METRICS, metrics)
    return metrics


def run(cfg: RunConfig, out: str | Path, progress: bool = True) -> dict:
    """Simulate, train and evaluate; returns the metrics."""
    simulate_run(cfg, out)
    train_run(cfg, out, progress=progress)
    return evaluate_run(cfg, out)


def config_of(out: str | Path) -> RunConfig:
    """The config a run directory was made with."""
    path = Path(out) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a run directory")
    return load_config(path=path)
