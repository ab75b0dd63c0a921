"""Rate constants from a researcher's network and measured concentrations: ``fit`` (files in, a directory of
results out) and ``fit_data`` (objects in, a ``FitResult`` out).

The steps: import the network (``importers``: every conversion counted in the report), read and check the
data (``measurements``), build the integral objective (``weakform``), then either train the form-free GNN on
its windows (``windows.WindowData``, with the variable-projection k solve of training) or solve the least
squares that assumes mass action (``massaction``), and finally bootstrap the data for intervals and the
identifiability flags (``uncertainty``). The output directory holds

    rate_constants.csv   k per reaction, keyed by the network's own ids, with its interval and flag
    functions.npz        the learned substrate function per order and node term per metabolite (GNN)
    report.json          the conversion, the data, the objective, training, timing, device, commit, config
    rate_constants.png, functions.png

A killed fit resumes: training from ``checkpoint.pt``, the bootstrap from ``bootstrap.npz``. Every file is
written atomically.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from common.device import get_device
from common.io import atomic_path, write_json, write_npz, write_text
from common.provenance import device_name, git_commit
from . import massaction as ma
from . import trajectory as tj
from . import uncertainty as unc
from . import weakform as wfm
from .config import FitConfig, RefineConfig, load_fit_config
from .importers import REVERSE_SUFFIX, ImportReport, load_network
from .measurements import Experiment, Measurements, read_measurements, require_observed
from .model import MetabolismGNN
from .network import Stoichiometry
from .train import _solve, fit_model, polish
from .windows import Tables, WindowData

K_FLOOR = 1e-12
"""Estimates below this (the unconstrained least squares can go negative) are reported at it and flagged."""


@dataclass
class FitResult:
    """k per reaction with its interval, the learned functions and the report."""

    stoich: Stoichiometry
    k: np.ndarray
    intervals: unc.Intervals
    report: dict
    functions: dict = field(default_factory=dict)
    model: MetabolismGNN | None = None

    def table(self) -> list[dict]:
        """One row per reaction: ids, direction, k, interval, evidence and the flag."""
        rows = []
        I = self.intervals
        half = I.half_width_log10
        for j, rid in enumerate(self.stoich.reactions):
            base = rid[:-len(REVERSE_SUFFIX)] if rid.endswith(REVERSE_SUFFIX) else rid
            rows.append({"reaction": rid, "source_reactions": base.replace(REVERSE_SUFFIX, ""),
                         "direction": "reverse" if rid.endswith(REVERSE_SUFFIX) else "forward",
                         "k": float(self.k[j]), "k_low": float(I.lo[j]), "k_high": float(I.hi[j]),
                         "log10_k": float(np.log10(max(self.k[j], K_FLOOR))),
                         "log10_half_width": float(half[j]), "vif": float(I.vif[j]),
                         "determined": bool(not I.flagged[j])})
        return rows


def time_scale(data: Measurements, smoothing: str | float = "auto", log: bool = True) -> float:
    """The data's own time scale: the median over experiments and metabolites of std(c) / rms(dc/dt) of the
    smoothed trajectories (P / 2 pi for an oscillation of period P, the time constant of a decay)."""
    taus = []
    for e, traj in zip(data.experiments, wfm.smooth(data, smoothing, log)):
        t = np.linspace(e.t[0], e.t[-1], 2000)
        c, dc = traj(t), traj.derivative(t)
        rms = np.sqrt((dc ** 2).mean(0))
        ok = rms > 0
        taus.append(np.std(c, 0)[ok] / rms[ok])
    taus = np.concatenate(taus)
    return float(np.median(taus)) if taus.size else float("inf")


def resolve_window(cfg: FitConfig, data: Measurements, tau: float | None = None) -> int:
    """The window in sample intervals: the configured one, or ``auto``: twice the data's time scale
    (``time_scale``), within 4 sample intervals and a quarter of the shortest experiment.

    Why twice: on the benchmark's data (mass-action least squares, 5% noise) the best windows were 4-8 time
    units on the oscillatory regime (time scale 2.6) and 8-13 on E. coli core (time scale 6-7), at both sampling
    intervals; an eighth of the samples, the rule before, gave 36 time units on the oscillatory regime sampled
    every 1.0 (R^2 0.47 there against 0.72 at 8)."""
    if cfg.weakform.window != "auto":
        return int(cfg.weakform.window)
    tau = time_scale(data, cfg.weakform.smoothing, cfg.weakform.log) if tau is None else tau
    shortest = min(e.t.size for e in data.experiments) - 1
    return int(np.clip(round(2.0 * tau / _median_dt(data)), 4, max(4, shortest // 4)))


SEGMENT_TIME_SCALES = 4.0
"""An automatic shooting segment spans this many of the data's time scales (``resolve_segment``)."""


def resolve_segment(cfg: FitConfig, data: Measurements, tau: float | None = None) -> int:
    """Sample intervals per shooting segment of the refinement: the configured number, or ``auto``:
    ``SEGMENT_TIME_SCALES`` times the data's time scale, at least 4 intervals and at most the longest experiment.

    Why: a longer segment sees more of the dynamics that k shapes and spends fewer samples and parameters on
    free starts, until its trajectory can no longer follow the data from one start. On the benchmark's data
    (``benchmarks/metabolism_refine_segments.py``, mass-action refined at 5% noise, sampled every 0.1) R^2 of
    log10 k rose from 0.955 (20 intervals, 2 time units) to 0.991 (100) on E. coli core (time scale 6-7);
    on the oscillatory regime (time scale 2.6) from 0.995 (20) to 0.9997 (100, 10 time units) and fell to 0.96
    at 300 (30 time units, the iterations exhausted: a small error in k shifts the phase)."""
    if cfg.refine.segment != "auto":
        return int(cfg.refine.segment)
    tau = time_scale(data, cfg.weakform.smoothing, cfg.weakform.log) if tau is None else tau
    longest = max(e.t.size for e in data.experiments) - 1
    return int(np.clip(round(SEGMENT_TIME_SCALES * tau / _median_dt(data)), 4, max(4, longest)))


FIRST_SEGMENT = 20
"""The automatic first stage's segment in sample intervals where the stage's segment is longer."""


def resolve_first_segment(refine: RefineConfig, segment: int) -> int | None:
    """Sample intervals per segment of the refinement's first stage, or None for one stage: the configured
    number where it is below ``segment``, or (auto) ``FIRST_SEGMENT``, a quarter of ``segment`` (at least 2)
    where that is not shorter.

    Why a quarter: sampled every 1.0 the oscillatory regime's auto segment is 10-11 intervals, so 20 ran one
    stage from integral fits far from the data (RMSE 1.4-2.3 in log c), which long segments do not forgive;
    3-interval segments first took the GNN from R^2 0.68 to 0.996 (seed 901, 5% noise) and from -1.77 to 0.977
    (10%) (``benchmarks/results/metabolism_measurements_first_segment.json``). Where the segment is longer than
    20 (every 0.1, E. coli core every 1.0) auto is the 20 behind ``_refine``'s evidence."""
    first = refine.first_segment
    if first == "auto":
        first = FIRST_SEGMENT if FIRST_SEGMENT < segment else max(2, -(-segment // 4))
    return int(first) if first is not None and first < segment else None


def resolve_gauge(cfg: FitConfig, data: Measurements) -> float:
    """The GNN's gauge c_ref: the configured value, or (auto) the geometric mean of the positive measured
    concentrations. The learned substrate function equals c_ref^s there by construction, so the scale of k
    is tied to the function where the data determine it rather than extrapolated to a fixed concentration;
    for a true power law every c_ref gives the same k. On E. coli core (seed 901, sampled every 0.1, 10%
    noise; data from 0.5 to 12.5 between their 5th and 95th percentiles) c_ref = 1 left a common offset of
    -0.06 in log10 k (R^2 0.920), the geometric mean 3.4 one of -0.03 (R^2 0.955)."""
    if cfg.model.c_ref != "auto":
        return float(cfg.model.c_ref)
    c = np.concatenate([e.c.ravel() for e in data.experiments])
    c = c[np.isfinite(c) & (c > 0)]
    if c.size == 0:
        raise ValueError("model.c_ref=auto needs positive measured concentrations; the data have none")
    return float(np.exp(np.log(c).mean()))


def _median_dt(data: Measurements) -> float:
    return float(np.median(np.concatenate([np.diff(e.t) for e in data.experiments])))


def _build(cfg: FitConfig, data: Measurements, window: int) -> wfm.WeakForm:
    w = cfg.weakform
    return wfm.build(data, window=window, stride=w.stride, nodes=w.nodes, smoothing=w.smoothing, log=w.log)


def _data_digest(stoich: Stoichiometry, data: Measurements) -> str:
    h = hashlib.sha256()
    for a in (stoich.R, stoich.P):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("|".join(stoich.reactions).encode())
    for e in data.experiments:
        h.update(e.name.encode())
        h.update(np.ascontiguousarray(e.t).tobytes())
        h.update(np.ascontiguousarray(np.nan_to_num(e.c, nan=-1.0)).tobytes())
    return h.hexdigest()[:16]


def _solve_k(stoich: Stoichiometry, phi: np.ndarray, node: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    S = torch.as_tensor(stoich.S, dtype=torch.float64)
    G = (torch.as_tensor(phi.T @ phi)) * (S.T @ S)
    b = torch.as_tensor((phi * ((y - node) @ stoich.S)).sum(0))
    return _solve(G, b, ridge).numpy()


def _gnn_sandwich(stoich: Stoichiometry, phi: np.ndarray, node: np.ndarray, y: np.ndarray, k: np.ndarray,
                  clusters: np.ndarray, level: float, threshold: float) -> unc.Intervals:
    S = stoich.S
    H = (phi.T @ phi) * (S.T @ S)
    H_inv, vif = unc.scaled_inverse(H)
    e = y - node - (phi * k) @ S.T
    cov = unc.sandwich(H_inv, phi * (e @ S), clusters)
    return unc.intervals(k, cov, vif, level, threshold)


def _residual_pool(data: Measurements, trajectories: list, log: bool) -> np.ndarray:
    """Centred residuals of the data about their smoothed trajectories (log scale when smoothing log c)."""
    parts = []
    for e, tr in zip(data.experiments, trajectories):
        fitted = tr(e.t)
        ok = np.isfinite(e.c) & (e.c > 0) & (fitted > 0)
        r = (np.log(e.c[ok]) - np.log(fitted[ok])) if log else (e.c[ok] - fitted[ok])
        parts.append(r)
    pool = np.concatenate(parts)
    return pool - pool.mean()


def _replicate(data: Measurements, trajectories: list, pool: np.ndarray, log: bool, seed: int) -> Measurements:
    """Data resampled about the smoothed trajectories: the residual bootstrap."""
    rng = np.random.default_rng(seed)
    exps = []
    for e, tr in zip(data.experiments, trajectories):
        fitted = tr(e.t)
        draw = rng.choice(pool, size=fitted.shape)
        c = fitted * np.exp(draw) if log else np.maximum(fitted + draw, 0.0)
        exps.append(Experiment(e.name, e.t, np.where(np.isfinite(e.c), c, np.nan)))
    return Measurements(data.metabolite_ids, tuple(exps), data.unit, data.source)


def bootstrap(estimate, data: Measurements, cfg: FitConfig, window: int, path: Path | None = None,
              progress: bool = True, digest: str = "") -> np.ndarray:
    """log k of ``cfg.uncertainty.bootstrap`` residual-bootstrap replicates (B, m), resuming from ``path``
    when it was made with the same ``digest`` (the fit's).

    ``estimate(weakform) -> k`` re-fits the rate constants on a replicate's objective (for the GNN from its
    trained state: ``uncertainty.refit_steps``)."""
    B = cfg.uncertainty.bootstrap
    done: list = []
    if path is not None and path.exists():
        saved = np.load(path)
        if "digest" in saved and str(saved["digest"]) == digest:
            done = list(saved["log_k"])
    trajectories = wfm.smooth(data, cfg.weakform.smoothing, cfg.weakform.log)
    pool = _residual_pool(data, trajectories, cfg.weakform.log)
    for b in tqdm(range(len(done), B), initial=len(done), total=B, disable=not progress, desc="bootstrap"):
        replicate = _replicate(data, trajectories, pool, cfg.weakform.log, seed=cfg.seed * 100_003 + b)
        k = estimate(_build(cfg, replicate, window))
        done.append(np.log(np.maximum(k, K_FLOOR)))
        if path is not None:
            write_npz(path, log_k=np.asarray(done), digest=digest)
    return np.asarray(done).reshape(len(done), -1)


def fit_data(stoich: Stoichiometry, data: Measurements, cfg: FitConfig | None = None, out: str | Path | None = None,
             progress: bool = True, import_report: ImportReport | None = None) -> FitResult:
    """Fit the rate constants of ``stoich`` to ``data`` (objects; ``fit`` reads files). With ``out``, training
    checkpoints and bootstrap replicates go there, so that a killed fit resumes."""
    cfg = cfg or FitConfig()
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if tuple(data.metabolite_ids) != tuple(stoich.metabolites):
        raise ValueError("the data's metabolite order must be the network's (read_measurements with its ids)")
    require_observed(data, stoich.reactions, stoich.R)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    tau = time_scale(data, cfg.weakform.smoothing, cfg.weakform.log) \
        if "auto" in (cfg.weakform.window, cfg.refine.segment) else None
    window = resolve_window(cfg, data, tau)
    segment = resolve_segment(cfg, data, tau)
    wf = _build(cfg, data, window)
    timing["objective"] = time.perf_counter() - t0
    device = get_device(cfg.device)
    uc = cfg.uncertainty
    model, c_ref = None, None
    functions: dict = {}
    log: list[dict] = []
    t1 = time.perf_counter()
    tables: Tables | None = None
    if cfg.estimator == "mass-action":
        design = ma.weak_design(stoich, wf)
        lin = ma.fit_linear(stoich, design, uc.level, uc.threshold)
        k, vif, sandwich = lin.k, lin.intervals.vif, lin.intervals

        def estimate(w: wfm.WeakForm) -> np.ndarray:
            return ma.fit_linear(stoich, ma.weak_design(stoich, w), uc.level, uc.threshold).k
        functions = {"alpha": lin.alpha, "beta": lin.beta}
    else:
        torch.manual_seed(cfg.seed)
        scale = float(np.nanmean(np.concatenate([e.c.ravel() for e in data.experiments])))
        c_ref = resolve_gauge(cfg, data)
        model = MetabolismGNN(stoich, cfg.model.model_copy(update={"c_ref": c_ref}), c_scale=scale).to(
            device=device, dtype=torch.float64)
        rows = WindowData(wf, model, device=device)
        digest = f"{cfg.digest('model', 'training', 'weakform')}-{cfg.seed}-{_data_digest(stoich, data)}-w{window}"
        log = fit_model(model, rows, cfg.training, cfg.seed, digest,
                        checkpoint=out / "checkpoint.pt" if out is not None else None, progress=progress)
        model.eval()
        tables = Tables(model, rows.lo, rows.hi)
        phi, node = tables.terms(wf)
        k = model.k.detach().cpu().numpy()
        sandwich = _gnn_sandwich(stoich, phi, node, wf.y, k, ma.weak_design(stoich, wf).cluster, uc.level,
                                 uc.threshold)
        vif = sandwich.vif

        def estimate(w: wfm.WeakForm) -> np.ndarray:
            if uc.refit_steps == 0:
                p, nd = tables.terms(w)
                return np.maximum(_solve_k(stoich, p, nd, w.y, cfg.training.ridge_end), cfg.training.k_floor)
            clone = copy.deepcopy(model)
            polish(clone, WindowData(w, clone, device=device), cfg.training, uc.refit_steps)
            return clone.k.detach().cpu().numpy()
        functions = learned_functions(model, wf)
    timing["fit"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    refinement, skipped = None, refine_skipped(stoich, data, cfg, segment)
    if cfg.refine.enabled and skipped is None:
        refinement, k_report, intervals, functions = _refine(stoich, data, cfg, segment, k, functions, vif, model,
                                                             tables, c_ref)
        method = refinement["intervals"]
    elif uc.bootstrap > 1:
        boot_digest = f"{cfg.digest()}-{_data_digest(stoich, data)}"
        boot = bootstrap(estimate, data, cfg, window, out / "bootstrap.npz" if out is not None else None, progress,
                         boot_digest)
        floor = cfg.training.k_floor if cfg.estimator == "gnn" else K_FLOOR  # where each solver clips k
        k_report, intervals = unc.bootstrap_intervals(k, boot, vif, uc.level, uc.threshold, uc.bias_correction,
                                                      floor=floor)
        method = f"residual bootstrap, {boot.shape[0]} replicates" + (", bias-corrected" if uc.bias_correction else "")
    else:
        k_report, intervals, method = np.maximum(k, K_FLOOR), sandwich, "cluster-robust sandwich"
        intervals.flagged |= k <= K_FLOOR
    timing["intervals" if refinement is None else "refine"] = time.perf_counter() - t2
    report = {
        "estimator": cfg.estimator,
        "network": import_report.to_dict() if import_report is not None else
        {"metabolites_out": stoich.n_metabolites, "reactions_out": stoich.n_reactions},
        "data": {"source": data.source, "experiments": len(data.experiments), "measurements": data.n_points,
                 "metabolites": len(data.metabolite_ids),
                 "unit": data.unit or cfg.unit or "not stated (k is in units of the data's concentrations "
                 "and times)", "time_unit": cfg.time_unit or "not stated (that of the data's times)"},
        "objective": {"window": window, "windows": wf.n_windows, "nodes": int(wf.c.shape[0]),
                      "smoothing": cfg.weakform.smoothing, "log_smoothing": cfg.weakform.log},
        "gauge": {"c_ref": c_ref, "from": None if c_ref is None else
                  "geometric mean of the data" if cfg.model.c_ref == "auto" else "model.c_ref"},
        "intervals": {"method": method, "level": uc.level, "threshold_log10": uc.threshold,
                      "flagged": int(intervals.flagged.sum()), "determined": int((~intervals.flagged).sum())},
        "training": {"steps": len(log) and log[-1]["step"], "final_loss": log[-1]["loss"] if log else None,
                     "seconds": log[-1]["seconds"] if log else None,
                     "cpu_seconds": log[-1].get("cpu_seconds") if log else None},
        "refine": refinement or {"enabled": False, **({"skipped": skipped} if cfg.refine.enabled else {})},
        "timing": timing,
        "device": device_name(device),
        "commit": git_commit(short=True),
        "config": cfg.model_dump(mode="json"),
    }
    result = FitResult(stoich=stoich, k=k_report, intervals=intervals, report=report, functions=functions,
                       model=model)
    if out is not None:
        write_outputs(result, out)
    return result


def refined_parameters(stoich: Stoichiometry, cfg: FitConfig, orders: int) -> tuple[list[str], int]:
    """The parameters the refinement fits and how many there are (``orders``: the GNN's substrate orders)."""
    n, m = stoich.n_metabolites, stoich.n_reactions
    if cfg.estimator == "mass-action":
        return ["log_k", "alpha", "beta"], m + 2 * n
    if cfg.refine.functions:
        higher = ["gamma"] if cfg.refine.node_degree > 1 else []
        return (["log_k", "alpha", "beta", *higher, "sub_correction"],
                m + (cfg.refine.node_degree + 1) * n + orders * cfg.refine.knots)
    return ["log_k"], m


def refine_skipped(stoich: Stoichiometry, data: Measurements, cfg: FitConfig, segment: int) -> str | None:
    """Why the configured refinement is not run (its memory beyond ``refine.max_memory_gb``), or None."""
    if not cfg.refine.enabled:
        return None
    orders = len(np.unique(stoich.R[stoich.R > 0]))
    need = tj.memory_bytes(data, segment, refined_parameters(stoich, cfg, orders)[1]) / 1e9
    if need <= cfg.refine.max_memory_gb:
        return None
    return (f"the trajectory refinement would hold {need:,.1f} GB (refine.max_memory_gb = "
            f"{cfg.refine.max_memory_gb:g}); the integral fit's k is reported with "
            + ("bootstrap" if cfg.uncertainty.bootstrap > 1 else "sandwich") + " intervals")


def _refine(stoich: Stoichiometry, data: Measurements, cfg: FitConfig, segment: int, k: np.ndarray,
            functions: dict, vif: np.ndarray, model: MetabolismGNN | None,
            tables: Tables | None, c_ref: float | None) -> tuple[dict, np.ndarray, unc.Intervals, dict]:
    """Trajectory matching from the integral fit (``trajectory``): for the mass-action estimator its k and
    node term, for the GNN its k with the learned functions read from their ``tables``, held or (with
    ``refine.functions``) corrected, the correction pinned to 1 at the GNN's gauge ``c_ref``; intervals from
    the curvature (the block-robust sandwich's standard errors of log k beside them in the report, measured
    against the curvature's in the benchmark, not yet used for the intervals).

    In two stages when the first stage's segment (``resolve_first_segment``) is shorter than ``segment``: short
    segments first, from the integral fit, then the long ones from there. Long segments determine k better but
    trap a poor start: on E. coli core (seed 901, sampled every 0.1, 5% noise) the GNN refined on auto's
    263-interval segments alone stayed at R^2 0.78 (its integral fit's 0.77), on 20-interval segments reached
    0.945, and through both 0.993 (``report["refine"]["first_stage"]`` is the first stage's record; ``seconds``
    counts both). The node
    terms' curvature (``refine.node_degree`` > 1) is fitted in the second stage only: fitted on short segments
    (E. coli core, 901, every 0.1, 10% noise, degree 3), it lowered their objective by 0.1% but left a model
    whose 262-interval trajectories started the second stage at 5.4 instead of 0.015, and never came back.
    The second stage's segments start on the smoothed data (``refine.second_start``) or on the first stage's
    fitted trajectories.

    A k the integral fit left at its floor (or negative) starts at the geometric mean of the others: at the
    floor its rate term, and so its gradient, vanishes."""
    rc, uc = cfg.refine, cfg.uncertainty
    start = np.asarray(k, float).copy()
    low = start <= max(K_FLOOR, cfg.training.k_floor) * (1 + 1e-9)
    if low.any() and (~low).any():
        start[low] = np.exp(np.log(start[~low]).mean())
    names = refined_parameters(stoich, cfg, 0)[0]
    if model is None:
        rhs = tj.MassActionODE(stoich, start, functions["alpha"], functions["beta"])
    else:
        rhs = tj.TabulatedGNN(tables, stoich, np.log(start), functions=rc.functions, knots=rc.knots,
                              anchor=c_ref, knot_range=measured_range(data) if rc.knot_range == "data" else None,
                              node_degree=rc.node_degree, node_range=metabolite_ranges(data))
    trajectories = wfm.smooth(data, cfg.weakform.smoothing, cfg.weakform.log)
    init = np.concatenate([tr(e.t) for tr, e in zip(trajectories, data.experiments)])
    ridge = {"sub_correction": rc.function_ridge}
    first = None
    first_segment = resolve_first_segment(rc, segment)
    if first_segment is not None:
        first = tj.refine(rhs, data, init, first_segment, [n for n in names if n != "gamma"],
                          iterations=rc.iterations, safety=rc.safety, covariance=False, ridge=ridge,
                          max_step=rc.max_step, states=rc.second_start == "first-stage")
    if first is not None and rc.second_start == "first-stage":
        init = first.states
    ref = tj.refine(rhs, data, init, segment, names, iterations=rc.iterations, safety=rc.safety, ridge=ridge,
                    max_step=rc.max_step)
    if model is not None:
        with torch.no_grad():
            model.log_k.copy_(rhs.log_k.to(model.log_k))
    m = stoich.n_reactions
    k_new = rhs.k.detach().cpu().numpy()
    intervals = unc.log_intervals(k_new, ref.cov[:m, :m], vif, uc.level, uc.threshold)
    out = {"enabled": True, **ref.to_dict(), "first_stage": None if first is None else first.to_dict(),
           "seconds": ref.seconds + (0.0 if first is None else first.seconds), "parameters": names,
           "intervals": "curvature of the trajectory fit (Gauss-Newton, the segments' states eliminated)",
           "sd_log_k_robust": np.sqrt(np.clip(np.diag(ref.cov_robust)[:m], 0.0, None)).tolist()}
    if model is None:
        refined = {"alpha": rhs.alpha.detach().numpy(), "beta": rhs.beta.detach().numpy()}
    elif rc.functions:
        refined = {**functions, **rhs.functions(functions["grid"], functions["substrate"], functions["node"])}
    else:
        refined = functions
    return out, k_new, intervals, refined


def described_range(c: np.ndarray) -> tuple[float, float]:
    """The 1st percentile of the positive finite concentrations ``c`` and the 99th of all finite ones: the range
    they describe a function on."""
    c = np.asarray(c, float).ravel()
    c = c[np.isfinite(c)]
    return float(np.percentile(c[c > 0], 1)), float(np.percentile(c, 99))


def measured_range(data: Measurements) -> tuple[float, float]:
    """``described_range`` of every measured concentration."""
    return described_range(np.concatenate([e.c.ravel() for e in data.experiments]))


def metabolite_ranges(data: Measurements) -> tuple[np.ndarray, np.ndarray]:
    """Each metabolite's smallest and largest measured concentration (n,), over all experiments."""
    c = np.concatenate([e.c for e in data.experiments])
    return np.nanmin(c, axis=0), np.nanmax(c, axis=0)


def learned_functions(model: MetabolismGNN, wf: wfm.WeakForm, points: int = 200) -> dict:
    """The learned substrate function per order and node term per metabolite on the data's range."""
    grid = np.geomspace(*described_range(wf.c), points)
    p = model.log_k
    with torch.no_grad():
        g = torch.as_tensor(grid, dtype=p.dtype, device=p.device)
        sub = model.f_sub(g[None, :], model.orders.to(p.dtype)[:, None]).cpu().numpy()
        node = model.node_term(g[:, None].expand(-1, model.n)).T.cpu().numpy()
    return {"grid": grid, "orders": model.orders.cpu().numpy(), "substrate": sub, "node": node,
            "embedding": model.embedding.detach().cpu().numpy()}


def write_outputs(result: FitResult, out: Path) -> None:
    """rate_constants.csv, functions.npz, report.json and the two figures, each written atomically."""
    rows = result.table()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(out / "rate_constants.csv", buf.getvalue())
    if result.functions:
        write_npz(out / "functions.npz", **result.functions)
    write_json(out / "report.json", result.report)
    from .fit_figures import fit_figures

    for name, fig in fit_figures(result).items():
        with atomic_path(out / f"{name}.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")


def fit(network: str | Path, data: str | Path, out: str | Path, fixed_species: Sequence[str] | None = None,
        extra_fixed: Sequence[str] = (), config: FitConfig | str | Path | None = None,
        overrides: Sequence[str] = (), progress: bool = True) -> FitResult:
    """Files in, a results directory out: ``network`` (SBML, COBRA JSON, ``cobra:NAME`` or a table), ``data``
    (a tidy CSV/Parquet of experiment, time, metabolite, value). See the module docstring."""
    if isinstance(config, FitConfig) and overrides:
        raise ValueError("give overrides with a config file (or none), not with a FitConfig object")
    cfg = config if isinstance(config, FitConfig) else load_fit_config(config, list(overrides))
    stoich, report = load_network(network, fixed_species=fixed_species, extra_fixed=extra_fixed)
    measured = read_measurements(data, metabolite_ids=stoich.metabolites, unit=cfg.unit)
    return fit_data(stoich, measured, cfg, out, progress=progress, import_report=report)

