"""Validated configuration of a metabolism run: regime (network + simulation), model, training, evaluation.

Configs are YAML data. Every section forbids unknown keys, so a typo is an error that names the field
instead of a silently ignored setting.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from common.config import ConfigError, Section as _Section, apply_overrides, validated

__all__ = ["ConfigError", "apply_overrides"]


class NetworkConfig(_Section):
    """The stoichiometry and the kinetic parameters of the true system."""

    n_metabolites: PositiveInt = 100
    n_reactions: PositiveInt = 256
    n_types: PositiveInt = 2
    aggregation: Literal["multiplicative", "additive"] = "multiplicative"
    cycle_fraction: float = Field(1.0, ge=0.0, le=1.0, description="share of reactions in autocatalytic cycles")
    cycle_length: int = Field(3, ge=2)
    max_substrates: int = Field(3, ge=1, le=3)
    max_products: int = Field(3, ge=1, le=3)
    orders: list[PositiveInt] = Field(default_factory=lambda: [1, 2], min_length=1)
    log_k_min: float = -2.0
    log_k_max: float = -1.0
    lambdas: list[float] = Field(default_factory=lambda: [0.001, 0.002], description="homeostasis rate per type")
    baselines: list[float] = Field(default_factory=lambda: [4.0, 6.0], description="homeostatic set point per type")

    @model_validator(mode="after")
    def _check(self) -> "NetworkConfig":
        if self.log_k_min > self.log_k_max:
            raise ValueError("log_k_min must not exceed log_k_max")
        if len(self.lambdas) != self.n_types or len(self.baselines) != self.n_types:
            raise ValueError(f"lambdas and baselines need one value per type (n_types={self.n_types})")
        if any(v < 0 for v in self.lambdas):
            raise ValueError("lambdas must be >= 0")
        if self.n_metabolites < 2:
            raise ValueError("n_metabolites must be >= 2")
        return self


class SimulationConfig(_Section):
    """How the true system is integrated and observed."""

    dt: float = Field(0.1, gt=0, description="time between stored frames")
    n_frames: PositiveInt = 2880
    n_trajectories: PositiveInt = Field(1, description="independent initial conditions in the training data")
    integrator: Literal["rk4", "euler"] = "rk4"
    substeps: PositiveInt = Field(10, description="integrator steps per frame (1 = the reference's Euler)")
    c_min: float = Field(1.0, ge=0)
    c_max: float = Field(9.0, gt=0)
    noise_std: float = Field(0.0, ge=0, description="Gaussian measurement noise added to c")
    negative_tolerance: float = Field(1e-6, ge=0, description="a concentration below -tolerance is a blow-up")

    @model_validator(mode="after")
    def _check(self) -> "SimulationConfig":
        if self.c_min > self.c_max:
            raise ValueError("c_min must not exceed c_max")
        return self


class ModelConfig(_Section):
    """The GNN that replaces the unknown functions."""

    hidden: PositiveInt = 32
    n_layers: PositiveInt = 3
    embedding_dim: PositiveInt = 2
    sub_input: Literal["log", "linear"] = Field("log", description="MLP_sub sees log c (power laws are linear) or c")
    c_ref: float = Field(1.0, gt=0, description="gauge: MLP_sub(c_ref, s) = c_ref**s, so k is in the mass-action gauge")
    node_scale: float = Field(0.1, gt=0, description="output scale of MLP_node")


class TrainingConfig(_Section):
    """Optimisation of the GNN on dc/dt."""

    steps: PositiveInt = 3000
    batch_frames: PositiveInt = 256
    lr: float = Field(2e-3, gt=0)
    lr_final: float = Field(1e-5, gt=0, description="cosine schedule end value")
    k_solver: Literal["varpro", "adam"] = Field(
        "varpro", description="varpro: k is the least-squares optimum for the current functions on each batch"
    )
    ridge_start: float = Field(1e-2, gt=0, description="Tikhonov weight of the k solve at step 0 (relative to mean diag)")
    ridge_end: float = Field(1e-9, gt=0, description="Tikhonov weight once decayed")
    ridge_decay_fraction: float = Field(0.5, gt=0, le=1)
    k_average: float = Field(0.1, gt=0, le=1, description="step of the running k (the Tikhonov centre) towards each batch solve")
    k_floor: float = Field(1e-6, gt=0)
    dtype: Literal["float64", "float32"] = Field("float64", description="float64: the k solve is badly conditioned")
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    node_warmup_fraction: float = Field(
        0.3, ge=0, le=1, description="share of the Adam steps trained without MLP_node, so that the per-metabolite "
        "node term cannot absorb the reaction dynamics before the reaction term has taken shape")
    lbfgs_steps: int = Field(
        50, ge=0, description="L-BFGS iterations after Adam, full-batch on lbfgs_frames (300 measured no better)")
    lbfgs_frames: PositiveInt = 1440
    rollout_steps: int = Field(0, ge=0, description="optional multi-step rollout loss horizon (0 = off)")
    rollout_weight: float = Field(0.1, ge=0)
    checkpoint_every: PositiveInt = 500
    log_every: PositiveInt = 50


class EvaluationConfig(_Section):
    """What a run measures after training."""

    n_test_initial: PositiveInt = Field(4, description="unseen initial conditions for rollouts")
    horizon_perturbation: float = Field(1e-3, gt=0, description="relative IC perturbation for the predictability horizon")
    horizon_r2: float = Field(0.9, gt=0, lt=1)
    max_horizon: PositiveInt = Field(2880, description="frames simulated to find the predictability horizon")
    stats_steps: PositiveInt = Field(2000, description="frames beyond max_horizon for long-run statistics")
    rollout_substeps: PositiveInt = Field(
        1, description="RK4 steps per frame in evaluation rollouts (1: within R^2 1e-6 of 10 on oscillatory)")
    grid_points: PositiveInt = 200
    outlier_threshold: float = Field(0.3, gt=0, description="|delta log10 k| above this is an outlier")


class RunConfig(_Section):
    """A whole run: one regime plus how it is learned and evaluated."""

    regime: str = "custom"
    description: str = ""
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)


class WeakFormConfig(_Section):
    """The integral objective (``metabolism.weakform``: why these choices)."""

    window: int | Literal["auto"] = Field(
        "auto", description="sample intervals per window; auto: twice the data's time scale (fit.resolve_window)")
    stride: PositiveInt | None = Field(None, description="sample intervals between window starts (None: a quarter window)")
    nodes: PositiveInt = Field(2, description="Gauss-Legendre nodes per sample interval")
    smoothing: Literal["auto", "none"] | float = Field(
        "auto", description="smoothing-spline penalty: auto (generalised cross-validation), none, or a value")
    log: bool = Field(True, description="smooth log c (relative noise), else c (additive noise)")

    @model_validator(mode="after")
    def _check(self) -> "WeakFormConfig":
        if isinstance(self.window, int) and self.window < 2:
            raise ValueError("window must span at least 2 sample intervals")
        return self


class UncertaintyConfig(_Section):
    """Intervals of the rate constants (``metabolism.uncertainty``)."""

    bootstrap: int = Field(50, ge=0, description="bootstrap replicates of the data (0: the cluster sandwich only)")
    level: float = Field(0.95, gt=0, lt=1)
    threshold: float = Field(0.3, gt=0, description="a k whose interval is wider than +-threshold in log10 is "
                             "flagged as not determined by the data")
    bias_correction: bool = Field(True, description="subtract the bootstrap estimate of the bias of log k")
    refit_steps: int = Field(
        0, ge=0, description="GNN: L-BFGS iterations re-fitting the functions to each replicate (0: functions "
        "held fixed, k re-solved only; 20 took 10x longer on E. coli core and covered no better)")


class RefineConfig(_Section):
    """Trajectory matching after the integral objective (``metabolism.trajectory``), on by default: more
    accurate where noise biases the integral objective, and its intervals (from its own curvature) cover the
    true k where the bootstrap's, blind to the GNN's misfit, did not; about the cost of training again."""

    enabled: bool = Field(True, description="refine k by multiple shooting on the measured concentrations")
    segment: PositiveInt | Literal["auto"] = Field(
        "auto", description="sample intervals per shooting segment (each segment's initial state is free); "
        "auto: four times the data's time scale (fit.resolve_segment, where the benchmark behind it is)")
    first_segment: PositiveInt | Literal["auto"] | None = Field(
        "auto", description="refine first on segments of this many sample intervals, then on `segment`: short "
        "segments forgive a poor start (a wider basin), long ones determine k better (fit._refine, where the "
        "benchmark behind it is); auto: 20 where `segment` is longer, else a quarter of it (at least 2; "
        "fit.resolve_first_segment); None, or a value not below `segment`: one stage")
    second_start: Literal["smoothed", "first-stage"] = Field(
        "smoothed", description="where the second stage's segments start: on the smoothed data, as the first "
        "stage's do, or on the first stage's fitted trajectories (where sparse samples leave the smoothing "
        "far from the states: benchmarks/results/metabolism_measurements_second_start.json)")
    iterations: PositiveInt = Field(20, description="Levenberg-Marquardt iterations at most (5-7 sufficed on "
                                    "E. coli core)")
    max_step: float = Field(2.0, gt=0, description="largest change of any refined parameter in one "
                            "Levenberg-Marquardt step (log k: a factor e^2); trajectory.refine says why")
    safety: float = Field(0.5, gt=0, le=2.78, description="RK4 step times the largest |eigenvalue| of the "
                          "Jacobian (2.78: the stability bound; smaller for accuracy)")
    functions: bool = Field(True, description="GNN only: also correct its learned functions (a polynomial "
                            "in c on each node term, node_degree; a smooth factor on each substrate function) "
                            "instead of holding them")
    knots: int = Field(8, ge=4, le=64, description="knots in log c of each substrate function's correction")
    knot_range: Literal["table", "data"] = Field(
        "table", description="where the knots lie: evenly over the tables' range (half the smallest to 1.5 times "
        "the largest concentration), or over the measured concentrations' 1st-99th percentiles in log c (the "
        "correction constant beyond), where the data can place them")
    node_degree: int = Field(3, ge=1, le=3, description="degree in c of the polynomial added to each node "
                             "term by the correction (1: alpha + beta c, the mass-action form's own parameters; "
                             "2-3 also fit the curvature the GNN's node function may carry within the data, "
                             "which k absorbs otherwise: benchmarks/metabolism_measurements.py measures 3 "
                             "against 1)")
    function_ridge: float = Field(1e-4, ge=0, description="weight w of the penalty w theta^2 on the substrate "
                                  "corrections' knots (a prior of sd sigma / sqrt(w): about 1 in log at 1% noise), "
                                  "so that a knot no sample constrains stays at 0")
    max_memory_gb: float = Field(8.0, gt=0, description="skip the refinement (and say so in the report) when "
                                 "its Jacobian would hold more than this (trajectory.memory_bytes: quadratic in "
                                 "the network's size; E. coli core about 0.1 GB, genome scale out of reach)")


class FitModelConfig(ModelConfig):
    """The GNN of a fit: the study's, with its gauge where the measured concentrations lie."""

    c_ref: Literal["auto"] | PositiveFloat = Field(
        "auto", description="gauge: MLP_sub(c_ref, s) = c_ref**s; auto: the geometric mean of the measured "
        "concentrations (fit.resolve_gauge)")


def _fit_training() -> "TrainingConfig":
    """The run defaults with a longer L-BFGS polish: on E. coli core (clean data, seed 901) 1,000 Adam and 50
    L-BFGS steps left R^2 of log k at 0.85, 3,000 and 100 reached 0.998."""
    return TrainingConfig(steps=3000, lbfgs_steps=100)


class FitConfig(_Section):
    """A fit to a researcher's data: the estimator, its model and training, the objective, the intervals."""

    estimator: Literal["gnn", "mass-action"] = Field(
        "gnn", description="gnn: the form-free GNN; mass-action: least squares that assumes the mass-action form")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    unit: str | None = Field(None, description="concentration unit, when the data table does not state it")
    time_unit: str | None = Field(None, description="time unit of the data")
    model: FitModelConfig = Field(default_factory=FitModelConfig)
    training: TrainingConfig = Field(default_factory=_fit_training)
    weakform: WeakFormConfig = Field(default_factory=WeakFormConfig)
    uncertainty: UncertaintyConfig = Field(default_factory=UncertaintyConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)


def load_fit_config(path: str | Path | None = None, overrides: list[str] | None = None) -> FitConfig:
    """A FitConfig from an optional YAML file and ``section.key=value`` overrides (unknown keys are errors)."""
    data: dict = {}
    source = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"invalid config {path}: expected a mapping at the top level")
        source.append(str(path))
    if overrides:
        data = apply_overrides(data, list(overrides))
        source.append("overrides " + " ".join(overrides))
    return validated(FitConfig, data, "(" + "; ".join(source) + ")" if source else "")


def regime_names() -> list[str]:
    """Names of the regimes shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files("metabolism.regimes").iterdir() if p.name.endswith(".yaml"))


def validate(data: dict, source: str = "") -> RunConfig:
    """Validate a config dict, raising ConfigError that names each bad field."""
    return validated(RunConfig, data, source)


def load_regime(name: str) -> dict:
    """The raw dict of a shipped regime."""
    if name not in regime_names():
        raise ConfigError(f"unknown regime {name!r}; shipped regimes: {', '.join(regime_names())}")
    text = resources.files("metabolism.regimes").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def load_config(
    regime: str | None = None,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
) -> RunConfig:
    """Build a RunConfig from a shipped regime and/or a YAML file, then `section.key=value` overrides.

    A file given together with a regime is layered on top of it (the file's keys win).
    """
    data: dict = {}
    source = []
    if regime is not None:
        data = load_regime(regime)
        source.append(f"regime {regime}")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"invalid config {path}: expected a mapping at the top level")
        data = _merge(data, loaded)
        source.append(str(path))
    if overrides:
        data = apply_overrides(data, list(overrides))
        source.append("overrides " + " ".join(overrides))
    if seed is not None:
        data["seed"] = seed
    return validate(data, "(" + "; ".join(source) + ")" if source else "")


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def dump_config(cfg: RunConfig) -> str:
    """The YAML text of a config (round-trips through load_config)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
