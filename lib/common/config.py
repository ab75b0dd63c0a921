"""What both studies' configs share: sections that reject unknown keys, a digest of named sections, error
messages that name each bad field, and ``section.key=value`` overrides."""
from __future__ import annotations

import hashlib
import json

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending field."""


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def digest(self, *sections: str) -> str:
        """A short hash of the named sections (all if none), used to match checkpoints to configs."""
        data = self.model_dump(mode="json")
        if sections:
            data = {k: data[k] for k in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def format_errors(err: ValidationError, source: str) -> str:
    """One line per bad field: its dotted location and what is wrong ("unknown key" for a typo)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {loc}: {msg}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        path, value = item.split("=", 1)
        keys = path.strip().split(".")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key} is not a section")
        node[keys[-1]] = yaml.safe_load(value)
    return data


def validated(model: type[BaseModel], data: dict, source: str = ""):
    """``model.model_validate(data)``, raising ConfigError that names each bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None
