"""Validated configuration of a GDSS run: data, SDEs, score networks, training and sampling.

Configs are YAML (``molgen/configs/<name>.yaml`` or any path). Every section forbids unknown keys, so a typo is
an error that names the field; ``--set section.key=value`` overrides are applied before validation.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, PositiveInt, SerializerFunctionWrapHandler, model_serializer, model_validator

from common.config import ConfigError, Section, apply_overrides, validated
from .features import DEFAULT_ATOM_FEATURES, AtomFeatureSpec, check_derived_features, derived_width

__all__ = ["ConfigError", "apply_overrides"]


class _Section(Section):
    """A section whose fields at the values in ``omitted`` are left out of the dump: fields added after runs
    were made, so that those runs' configs, checkpoints and digests are unchanged and still compare equal."""

    omitted: ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: SerializerFunctionWrapHandler) -> dict:
        out = handler(self)
        for name, value in self.omitted.items():
            if name in out and out[name] == value:
                del out[name]
        return out


class DataConfig(_Section):
    """What the model is trained on (``molgen.data.load_dataset``).

    ``atom_features`` lists the one-hot blocks of X (``molgen.features``; default ``["type"]``, GDSS's
    encoding); ``derived_features`` the atom features computed from the noisy graph at every score call and
    given to the networks of ``derived_networks`` (default both) as extra input columns, not diffused
    (``molgen.derived``; default none; the defaults are left out of the dumped config like a default
    ``atom_features``).  ``max_feat_num`` stays an explicit field, checked against the feature set's width rather
    than derived from it: it fixes the networks' shapes, so a config that changes X's width must say so.
    A default ``atom_features`` is left out of the dumped config, so configs, checkpoints and digests of
    runs made before the field existed are unchanged and still compare equal.
    """

    dataset: Literal["qm9", "zinc250k", "moses"] = "qm9"
    max_node_num: PositiveInt = Field(9, description="N: nodes per padded graph (must match the dataset)")
    max_feat_num: PositiveInt = Field(4, description="F: columns of X, the width of atom_features on the dataset")
    atom_features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ATOM_FEATURES),
        description="blocks of X: type (first), then any of charge, aromatic, hybridization, num_hs, degree, ring")
    derived_features: list[str] = Field(
        default_factory=list, description="network inputs computed from (X_t, A_t): any of num_hs, ring")
    derived_networks: list[Literal["x", "adj"]] = Field(
        default_factory=lambda: ["x", "adj"], min_length=1, description="the networks the derived features go to")
    adj_scale: Literal["raw", "unit"] = Field("raw", description="A as bond orders 0..3 (GDSS) or divided by 3")
    batch_size: PositiveInt = 1024
    split_path: str | None = Field(None, description="test split file; None = the default (GDSS's) split")
    limit: PositiveInt | None = Field(None, description="keep only the first `limit` train / test molecules")
    split_seed: int = 42
    omitted: ClassVar[dict[str, Any]] = {"atom_features": list(DEFAULT_ATOM_FEATURES), "derived_features": [],
                                         "derived_networks": ["x", "adj"]}

    @model_validator(mode="after")
    def _check_features(self) -> "DataConfig":
        spec = self.feature_spec  # raises on unknown, repeated or misplaced names
        check_derived_features(self.derived_features, spec.names)
        if self.max_feat_num != spec.width:
            raise ValueError(
                f"data.max_feat_num={self.max_feat_num} but data.atom_features {self.atom_features} on "
                f"{self.dataset} give X {spec.width} columns ({spec.describe()}); set data.max_feat_num: {spec.width}")
        return self

    @property
    def feature_spec(self) -> AtomFeatureSpec:
        return AtomFeatureSpec.build(self.atom_features, dataset=self.dataset)

    @property
    def bond_unit(self) -> float:
        """Bond order 1 in A's scale."""
        return 1.0 if self.adj_scale == "raw" else 1 / 3

    def input_feat_num(self, network: str) -> int:
        """Columns of the node input of the ``"x"`` or ``"adj"`` network: X's, and the derived features' if
        they go to it."""
        derived = self.derived_features if network in self.derived_networks else ()
        return self.max_feat_num + derived_width(derived)


class SDEConfig(_Section):
    """One forward SDE in GDSS's notation: for VE, beta_min/beta_max are sigma_min/sigma_max."""

    type: Literal["VP", "VE", "subVP"] = "VE"
    beta_min: float = Field(0.1, gt=0)
    beta_max: float = Field(1.0, gt=0)
    num_scales: PositiveInt = 1000

    @model_validator(mode="after")
    def _check(self) -> "SDEConfig":
        if self.beta_min >= self.beta_max:
            raise ValueError("beta_min must be smaller than beta_max")
        return self


class SDEPair(_Section):
    x: SDEConfig = Field(default_factory=SDEConfig)
    adj: SDEConfig = Field(default_factory=SDEConfig)


class CANConfig(_Section):
    """The cell-attention score networks (``molgen.nets.can``): sizes and how the noisy graph is lifted."""

    hidden: PositiveInt = Field(24, description="width of node, edge and time states (divisible by heads)")
    num_layers: PositiveInt = Field(3, description="CAN layers over the edges")
    heads: PositiveInt = 4
    gcn_depth: int = Field(2, ge=0, description="dense GCN layers over A_t in the node branch")
    ring_features: bool = Field(False, description="2-cell attributes (size, double-bond fraction, heteroatoms)")
    max_ring: int = Field(8, ge=3, description="longest chordless cycle lifted to a 2-cell")
    threshold: float = Field(0.5, gt=0, description="A_t above this (in A's scale) is a bond of the lifted complex")

    @model_validator(mode="after")
    def _check(self) -> "CANConfig":
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        return self


class ModelConfig(_Section):
    """The two score networks: GDSS's ScoreNetworkX (depth, nhid) and ScoreNetworkA (the GDSS fields), or the
    cell-attention networks CANScoreX / CANScoreA configured by ``can`` (absent for GDSS-only models, and then
    left out of the dumped config, so configs of runs made before it existed compare equal)."""

    x: Literal["ScoreNetworkX", "CANScoreX"] = "ScoreNetworkX"
    adj: Literal["ScoreNetworkA", "CANScoreA"] = "ScoreNetworkA"
    conv: Literal["GCN"] = "GCN"
    num_heads: PositiveInt = 4
    depth: PositiveInt = 2
    adim: PositiveInt = 16
    nhid: PositiveInt = 16
    num_layers: int = Field(3, ge=2)
    num_linears: PositiveInt = 3
    c_init: PositiveInt = 2
    c_hid: PositiveInt = 8
    c_final: PositiveInt = 4
    can: CANConfig | None = None
    omitted: ClassVar[dict[str, Any]] = {"can": None}

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        for name in ("adim", "nhid"):
            if getattr(self, name) % self.num_heads:
                raise ValueError(f"{name}={getattr(self, name)} must be divisible by num_heads={self.num_heads}")
        uses_can = self.x.startswith("CAN") or self.adj.startswith("CAN")
        if uses_can and self.can is None:
            self.can = CANConfig()
        if not uses_can and self.can is not None:
            raise ValueError("model.can is set but neither model.x nor model.adj is a CAN network")
        return self


class TrainConfig(_Section):
    num_epochs: PositiveInt = 300
    max_minutes: float | None = Field(
        None, gt=0, description="wall-time budget: stop after the epoch that brings the run's training time (the "
                                "sum of its epochs' seconds, over all sessions) to this; num_epochs stays a cap")
    budget_clock: Literal["wall", "cpu"] = Field(
        "wall", description="the clock max_minutes counts: wall time, or this process's CPU time, which other "
                            "jobs on the machine do not stretch (for one-thread CPU runs; equal to wall time "
                            "on an idle core)")
    lr: float = Field(5e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    lr_schedule: bool = True
    lr_decay: float = Field(0.999, gt=0, le=1, description="ExponentialLR gamma, stepped once per epoch")
    ema: float = Field(0.999, ge=0, le=1)
    grad_norm: float = Field(1.0, gt=0)
    eps: float = Field(1e-5, gt=0, lt=1, description="t ~ U[eps, T]")
    reduce_mean: bool = False
    test_loss: bool = Field(True, description="evaluate the test loss with the EMA weights every epoch (GDSS)")
    max_batches: PositiveInt | None = Field(None, description="cap on batches per epoch (quick runs)")
    compile: bool = Field(False, description="torch.compile the score networks")
    num_threads: int | None = Field(
        None, ge=1, description="CPU threads: of the fused kernels for GDSS's networks (None: torch's thread count, "
                                "which follows OMP_NUM_THREADS), torch's for the others (None: 1, since two torch "
                                "threads beside another job ran 7x slower; benchmarks/threads.py)")
    torch_threads: int | None = Field(
        1, ge=1, description="torch intra-op threads when the fused kernels run (None: leave torch's setting)")
    omitted: ClassVar[dict[str, Any]] = {"budget_clock": "wall"}


class SamplerConfig(_Section):
    """GDSS's sampler and sample sections (sample_qm9.yaml / sample_zinc250k.yaml), and the decoder of the
    sampled graphs (the default, GDSS's, is left out of the dumped config, ``omitted``)."""

    predictor: Literal["Reverse", "Euler", "None", "S4"] = "Reverse"
    corrector: Literal["Langevin", "None"] = "Langevin"
    snr: float = Field(0.2, gt=0)
    scale_eps: float = Field(0.7, ge=0)
    n_steps: PositiveInt = 1
    probability_flow: bool = False
    noise_removal: bool = True
    eps: float = Field(1e-4, gt=0, lt=1)
    use_ema: bool = False
    batch_size: PositiveInt = 2500
    seed: int = 42
    decoder: Literal["gdss", "valence"] = Field(
        "gdss", description="molgen.decode: GDSS's (atom type and charge) or bond orders from charges and hydrogens")
    omitted: ClassVar[dict[str, Any]] = {"decoder": "gdss"}


class RunConfig(_Section):
    name: str = "custom"
    description: str = ""
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    sde: SDEPair = Field(default_factory=SDEPair)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)


# Keys that may differ between a checkpoint and the config that resumes it (they do not change what has
# been trained so far): everything else must match.
RESUMABLE_KEYS = ("name", "description", "device", "train.num_epochs", "train.max_minutes", "train.test_loss",
                  "train.compile", "train.num_threads", "train.torch_threads", "sampler.")


def config_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("molgen.configs").iterdir() if p.name.endswith(".yaml"))


def validate(data: dict, source: str = "") -> RunConfig:
    return validated(RunConfig, data, source)


def read_config_dict(name_or_path: str | Path) -> tuple[dict, str]:
    """The raw dict of a shipped config (by name) or of a YAML file (by path)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        data, source = yaml.safe_load(p.read_text()) or {}, str(p)
    else:
        name = str(name_or_path)
        if name not in config_names():
            raise ConfigError(f"unknown config {name!r}; shipped configs: {', '.join(config_names())}")
        data = yaml.safe_load(resources.files("molgen.configs").joinpath(f"{name}.yaml").read_text()) or {}
        source = f"config {name}"
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping at the top level")
    return data, source


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """A RunConfig from a shipped config name or a YAML path (or the defaults), then overrides."""
    data, source = read_config_dict(name_or_path) if name_or_path is not None else ({}, "defaults")
    if overrides:
        data = apply_overrides(data, list(overrides))
        source += " with overrides " + " ".join(overrides)
    return validate(data, f"({source})")


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(a: RunConfig | dict, b: RunConfig | dict, ignore=RESUMABLE_KEYS) -> list[str]:
    """``key: a -> b`` for every flattened key that differs, except keys starting with an ``ignore`` prefix."""
    fa = flatten(a.model_dump(mode="json") if isinstance(a, RunConfig) else a)
    fb = flatten(b.model_dump(mode="json") if isinstance(b, RunConfig) else b)
    diffs = []
    for key in sorted(set(fa) | set(fb)):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in ignore):
            continue
        if fa.get(key, "<missing>") != fb.get(key, "<missing>"):
            diffs.append(f"{key}: {fa.get(key, '<missing>')!r} -> {fb.get(key, '<missing>')!r}")
    return diffs
