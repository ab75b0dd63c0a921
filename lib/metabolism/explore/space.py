"""The whitelist of config keys the exploration may change, with their ranges, and proposal vetting.

A mutation is a dict `{"section.key": value}`. It is accepted only if every key is in the whitelist and every
value lies in its range (or among its choices); the resulting config must then also pass the RunConfig schema.
"""
from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from ..config import ConfigError, RunConfig, apply_overrides, validate


class Rejected(ValueError):
    """A proposal that must not run; the message says why."""


@dataclass(frozen=True)
class Param:
    """One mutable key: a float or int range (optionally log-scaled) or a list of choices."""

    key: str
    kind: Literal["float", "int", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if not self.choices:
                raise ValueError(f"{self.key}: a choice parameter needs choices")
            object.__setattr__(self, "choices", tuple(self.choices))
        else:
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError(f"{self.key}: needs low <= high")
            if self.log and self.low <= 0:
                raise ValueError(f"{self.key}: a log range needs low > 0")

    def check(self, value: Any) -> Any:
        """The value normalised to the parameter's type; raises Rejected if it is not allowed."""
        if self.kind == "choice":
            if value not in self.choices:
                raise Rejected(f"{self.key}={value!r} is not one of {list(self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Rejected(f"{self.key}={value!r} is not a number")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise Rejected(f"{self.key}={value!r} is not an integer")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise Rejected(f"{self.key}={value!r} is not finite")
        if not (self.low <= value <= self.high):
            raise Rejected(f"{self.key}={value!r} is outside [{self.low}, {self.high}]")
        return value

    def sample(self, rng: random.Random) -> Any:
        """A uniform (log-uniform if `log`) draw."""
        if self.kind == "choice":
            return rng.choice(self.choices)
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return min(max(int(round(x)), int(math.ceil(self.low))), int(self.high)) if self.kind == "int" else x

    def step(self, value: Any, direction: int, factor: float = 2.0) -> Any:
        """`value` moved one step up (+1) or down (-1): x`factor` on log ranges, 1/5 of the range otherwise."""
        if self.kind == "choice":
            raise ValueError("choices have no direction")
        if self.log and value > 0:
            x = value * factor ** direction
        else:
            x = value + direction * (self.high - self.low) / 5
        x = min(max(x, self.low), self.high)
        if self.kind == "int":
            x = int(round(x))
            if x == value:
                x = min(max(value + direction, int(math.ceil(self.low))), int(self.high))
        return x

    def spec(self) -> dict:
        """The JSON form, without unused fields: {key, kind, low, high[, log]} or {key, kind, choices}."""
        if self.kind == "choice":
            return {"key": self.key, "kind": self.kind, "choices": list(self.choices)}
        d = {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high}
        return {**d, "log": True} if self.log else d


DEFAULT_PARAMS: tuple[Param, ...] = (
    Param("training.lr", "float", 1e-4, 1e-2, log=True),
    Param("training.lr_final", "float", 1e-7, 1e-3, log=True),
    Param("training.steps", "int", 200, 20000, log=True),
    Param("training.lbfgs_steps", "int", 0, 2000),
    Param("training.batch_frames", "int", 16, 1024, log=True),
    Param("training.ridge_start", "float", 1e-5, 1.0, log=True),
    Param("training.ridge_end", "float", 1e-12, 1e-4, log=True),
    Param("training.k_average", "float", 0.01, 1.0, log=True),
    Param("training.weight_decay", "float", 0.0, 1e-3),
    Param("model.hidden", "int", 4, 128, log=True),
    Param("model.n_layers", "int", 1, 5),
    Param("model.embedding_dim", "int", 1, 8),
    Param("model.sub_input", "choice", choices=("log", "linear")),
)


def _schema_has(key: str) -> bool:
    model: Any = RunConfig
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        model = fields[part].annotation
    return True


class SearchSpace:
    """An ordered whitelist of Params whose keys all exist in the RunConfig schema."""

    def __init__(self, params: list[Param] | tuple[Param, ...] = DEFAULT_PARAMS):
        self.params = {p.key: p for p in params}
        if len(self.params) != len(params):
            raise ValueError("duplicate keys in the search space")
        bad = [k for k in self.params if not _schema_has(k)]
        if bad:
            raise ConfigError(f"search space keys not in the RunConfig schema: {', '.join(bad)}")

    @classmethod
    def from_specs(cls, specs: list[dict] | None) -> "SearchSpace":
        """Build from `[{key, kind, low, high, log, choices}, ...]`; None gives the default whitelist."""
        if specs is None:
            return cls()
        params = []
        for s in specs:
            try:
                params.append(Param(**{k: (tuple(v) if k == "choices" else v) for k, v in dict(s).items()}))
            except TypeError as err:
                raise ValueError(f"bad search-space entry {s!r}: {err}") from None
        return cls(params)

    def specs(self) -> list[dict]:
        return [p.spec() for p in self.params.values()]

    def keys(self) -> list[str]:
        return list(self.params)

    def check(self, mutation: Any) -> dict:
        """The mutation with normalised values; raises Rejected for non-whitelisted keys or bad values."""
        if not isinstance(mutation, dict) or not mutation:
            raise Rejected(f"mutation must be a non-empty mapping of key -> value, got {mutation!r}")
        out = {}
        for key, value in mutation.items():
            if key not in self.params:
                raise Rejected(f"{key!r} is not in the whitelist ({', '.join(self.params)})")
            out[key] = self.params[key].check(value)
        return out

    def values_of(self, cfg: RunConfig) -> dict:
        """The current value of every whitelisted key in `cfg`."""
        data = cfg.model_dump(mode="json")
        out = {}
        for key in self.params:
            node: Any = data
            for part in key.split("."):
                node = node[part]
            out[key] = node
        return out


def format_override(key: str, value: Any) -> str:
    """`key=value` whose value parses back (as YAML, like the CLI's --set) to exactly `value`."""
    text = repr(value) if isinstance(value, float) else json.dumps(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        text = text.replace("e", ".0e")
    if yaml.safe_load(text) != value:
        text = json.dumps(value)
    return f"{key}={text}"


def overrides_for(base_overrides: list[str], params: dict) -> list[str]:
    """The full override list of a node: the base overrides, then its parameters in whitelist order."""
    return list(base_overrides) + [format_override(k, v) for k, v in params.items()]


def build_config(base_data: dict, overrides: list[str], seed: int | None = None) -> RunConfig:
    """Validate base data + overrides (+ seed) against the schema; raises ConfigError."""
    data = apply_overrides(copy.deepcopy(base_data), list(overrides))
    if seed is not None:
        data["seed"] = seed
    return validate(data, "(exploration)")
