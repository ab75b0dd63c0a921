"""Metrics of a trained model against the true system, and the arrays behind every figure."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from .config import EvaluationConfig
from .model import MetabolismGNN
from .network import Network
from .simulate import RHS, SimulationError, TrueRHS, activity_rank, odeint


def r2_identity(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R^2 of predictions against the identity line y = x (not a fitted line)."""
    ss_res = float(((y_pred - y_true) ** 2).sum())
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def rate_constant_metrics(k_true: np.ndarray, k_learned: np.ndarray, outlier_threshold: float) -> dict:
    lt, ll = np.log10(k_true), np.log10(k_learned)
    err = np.abs(ll - lt)
    return {
        "r2_log_k": r2_identity(lt, ll),
        "slope": float(np.polyfit(lt, ll, 1)[0]),
        "n_outliers": int((err > outlier_threshold).sum()),
        "n_scored": int(lt.size),
        "max_abs_error_log_k": float(err.max()),
        "median_abs_error_log_k": float(np.median(err)),
    }


def node_curves(model: MetabolismGNN, grid: np.ndarray) -> np.ndarray:
    """MLP_node(c, a_i) for every metabolite i on a concentration grid, shape (n, G)."""
    p = next(model.parameters())
    c = torch.as_tensor(grid, dtype=p.dtype, device=p.device)[:, None].expand(-1, model.n)
    with torch.no_grad():
        return model.node_term(c).T.cpu().numpy()


def read_homeostasis(curves: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lambda_i and baseline_i from a straight-line fit of each MLP_node curve: -lambda (c - baseline)."""
    A = np.stack([grid, np.ones_like(grid)], 1)
    coef, *_ = np.linalg.lstsq(A, curves.T, rcond=None)
    lam = -coef[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        baseline = np.where(lam != 0, coef[1] / lam, np.nan)
    return lam, baseline


def homeostasis_metrics(lam_hat: np.ndarray, base_hat: np.ndarray, net: Network) -> dict:
    """Per type: relative error of the median learned lambda and absolute error of the median baseline; and
    the mean over types of the lambda error (one number to score how well homeostasis was learned)."""
    out: dict = {"lambda_true": [], "lambda_learned": [], "baseline_true": [], "baseline_learned": [],
                 "lambda_rel_error": [], "baseline_abs_error": []}
    for t in np.unique(net.types):
        sel = net.types == t
        lt, bt = float(net.lam[sel][0]), float(net.baseline[sel][0])
        lh, bh = float(np.median(lam_hat[sel])), float(np.nanmedian(base_hat[sel]))
        out["lambda_true"].append(lt)
        out["lambda_learned"].append(lh)
        out["baseline_true"].append(bt)
        out["baseline_learned"].append(bh)
        out["lambda_rel_error"].append(abs(lh - lt) / lt if lt > 0 else float("nan"))
        out["baseline_abs_error"].append(abs(bh - bt))
    out["lambda_rel_error_mean"] = float(np.mean(out["lambda_rel_error"])) if out["lambda_rel_error"] else None
    return out


def substrate_curves(model: MetabolismGNN, grid: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """MLP_sub(c, s) for each order s on the grid, shape (n_orders, G)."""
    p = next(model.parameters())
    c = torch.as_tensor(grid, dtype=p.dtype, device=p.device)
    s = torch.as_tensor(orders, dtype=p.dtype, device=p.device)
    with torch.no_grad():
        return model.f_sub(c[None, :], s[:, None]).cpu().numpy()


def cluster_accuracy(embedding: np.ndarray, types: np.ndarray, seed: int = 0) -> float:
    """Accuracy of k-means clusters of the embeddings against the types, under the best label matching."""
    n_types = int(types.max()) + 1
    if n_types < 2 or not np.isfinite(embedding).all():
        return float("nan")
    labels = KMeans(n_clusters=n_types, n_init=10, random_state=seed).fit_predict(embedding)
    conf = np.zeros((n_types, n_types))
    np.add.at(conf, (labels, types), 1)
    rows, cols = linear_sum_assignment(-conf)
    return float(conf[rows, cols].sum() / types.size)


def per_frame_r2(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """R^2 of x against ref across metabolites at each frame; x, ref of shape (B, T, n) -> (B, T)."""
    ss_res = ((x - ref) ** 2).sum(-1)
    ss_tot = ((ref - ref.mean(-1, keepdims=True)) ** 2).sum(-1)
    return 1 - ss_res / np.maximum(ss_tot, 1e-300)


def predictability_horizon(true_ref: np.ndarray, true_pert: np.ndarray, threshold: float) -> int:
    """Median over initial conditions of the first frame where two true runs fall below R^2 = threshold."""
    r2 = per_frame_r2(true_pert, true_ref)
    below = r2 < threshold
    first = np.where(below.any(1), below.argmax(1), r2.shape[1])
    return int(np.median(first))


def long_run_stats(x: np.ndarray) -> dict:
    """Per-metabolite mean and std over time, and activity rank, of x (B, T, n)."""
    return {"mean": x.mean(1), "std": x.std(1), "rank": np.array([activity_rank(b) for b in x], float)}


def stats_rel_error(a: dict, ref: dict) -> dict:
    """Relative L1 errors of per-metabolite mean and std, and relative error of the activity rank."""
    return {
        "mean": float(np.abs(a["mean"] - ref["mean"]).sum() / np.abs(ref["mean"]).sum()),
        "std": float(np.abs(a["std"] - ref["std"]).sum() / max(np.abs(ref["std"]).sum(), 1e-300)),
        "activity_rank": float(np.abs(a["rank"] - ref["rank"]).mean() / max(ref["rank"].mean(), 1)),
    }


def _integrate(rhs: RHS, c0: np.ndarray, n_frames: int, dt: float, substeps: int, dtype: torch.dtype,
               device: torch.device, check_sign: bool) -> np.ndarray | None:
    try:
        with torch.no_grad():
            out = odeint(rhs, torch.as_tensor(c0, dtype=dtype, device=device), n_frames, dt, "rk4", substeps,
                         1e-6 if check_sign else None, label="rollout")
    except SimulationError:
        return None
    return out.cpu().numpy()


def rollout_metrics(model: MetabolismGNN, net: Network, c0: np.ndarray, dt: float, cfg: EvaluationConfig,
                    rng: np.random.Generator) -> tuple[dict, dict]:
    """Predictability horizon of the true system, learned-vs-true rollouts from unseen initial conditions
    over that horizon, and long-run statistics over `stats_steps` frames beyond it.

    Returns (metrics, arrays for figures).
    """
    p = next(model.parameters())
    device = p.device
    total = cfg.max_horizon + cfg.stats_steps
    true_rhs = TrueRHS(net, device=device)
    ref = _integrate(true_rhs, c0, total, dt, cfg.rollout_substeps, torch.float64, device, True)
    pert0 = c0 * (1 + cfg.horizon_perturbation * rng.standard_normal(c0.shape))
    pert = _integrate(true_rhs, pert0, total, dt, cfg.rollout_substeps, torch.float64, device, True)
    horizon = max(predictability_horizon(ref[:, : cfg.max_horizon], pert[:, : cfg.max_horizon], cfg.horizon_r2), 1)
    model_rhs = lambda c: model(c)  # noqa: E731 - the model as an ODE right-hand side
    learned = _integrate(model_rhs, c0, total, dt, cfg.rollout_substeps, p.dtype, device, False)
    metrics: dict = {"horizon_steps": horizon, "horizon_capped": horizon >= cfg.max_horizon,
                     "n_initial_conditions": int(c0.shape[0])}
    if learned is None or not np.isfinite(learned).all():
        metrics.update({"diverged": True, "r2": float("nan"), "pearson": float("nan")})
        return metrics, {"rollout_true": ref[0], "rollout_learned": np.full_like(ref[0], np.nan)}
    window = slice(0, horizon)
    x, y = learned[:, window].ravel(), ref[:, window].ravel()
    tail = slice(total - cfg.stats_steps, total)
    true_stats, learned_stats, pert_stats = (long_run_stats(a[:, tail]) for a in (ref, learned, pert))
    metrics.update({
        "diverged": False,
        "r2": r2_identity(y, x),
        "pearson": float(np.corrcoef(x, y)[0, 1]),
        "stats_rel_error": stats_rel_error(learned_stats, true_stats),
        "stats_rel_error_true_vs_true": stats_rel_error(pert_stats, true_stats),
        "activity_rank_true": float(true_stats["rank"].mean()),
        "activity_rank_learned": float(learned_stats["rank"].mean()),
    })
    return metrics, {"rollout_true": ref[0], "rollout_learned": learned[0]}
