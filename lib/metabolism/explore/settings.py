"""What an exploration directory is made of: its file names, its settings (which of them fix its identity),
how stored settings are resumed, and the UCB tree rebuilt from its log. Shared by the loop that runs an
exploration and the summary that reads one, so that neither imports the other."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from common.io import write_json
from ..config import ConfigError, load_config
from .proposers import ROLES
from .record import LogState, read_log
from .space import SearchSpace, build_config
from .tree import Node, Tree

SETTINGS, LOG, MEMORY, TREE, SUMMARY, RUNS = (
    "explore.json", "log.jsonl", "memory.md", "tree.json", "summary.json", "runs")
IDENTITY = ("base_data", "base_overrides", "seed", "score_key", "maximize", "score_floor", "space")


class ExploreSettings(BaseModel):
    """Settings of an exploration. Fields in IDENTITY cannot change when resuming a directory."""

    model_config = ConfigDict(extra="forbid")

    regime: str | None = None
    base_data: dict = Field(default_factory=dict, description="the base config (regime and file) as a dict")
    base_overrides: list[str] = Field(default_factory=list, description="section.key=value applied to every run")
    seed: int | None = None
    budget: PositiveInt = Field(20, description="iterations in total, the default config included")
    budget_seconds: float | None = Field(None, gt=0, description="no new round after this many seconds (per session)")
    slots: PositiveInt = 4
    roles: list[str] = Field(default_factory=lambda: list(ROLES), min_length=1,
                             description="slot j of round r gets roles[(r * slots + j) % len(roles)]; "
                             "slot 0 of the first round is the default config")
    proposer: Literal["offline", "openai", "anthropic"] = "offline"
    executor: Literal["local", "dask", "serial"] = "local"
    workers: PositiveInt | None = None
    mp_context: Literal["spawn", "forkserver", "fork"] = "spawn"
    dask_address: str | None = None
    dask_cluster: dict | None = None
    jobqueue: dict | None = None
    threads_per_job: PositiveInt = 1
    job_timeout: float | None = Field(None, gt=0, description="seconds after which a run is stopped and recorded "
                                      "as failed (local and serial executors)")
    score_key: str = "rate_constants.r2_log_k"
    maximize: bool = True
    score_floor: float | None = -1.0
    ucb_c: float = Field(0.5, ge=0)
    explore_factor: float = Field(4.0, ge=1)
    explore_seed: int = 0
    space: list[dict] | None = Field(None, description="whitelist specs; None = the default whitelist")
    llm_retries: int = Field(2, ge=0)
    recent: PositiveInt = 20
    max_empty_rounds: PositiveInt = 3

    @field_validator("space")
    @classmethod
    def _canonical_space(cls, v: list[dict] | None) -> list[dict] | None:
        return None if v is None else SearchSpace.from_specs(v).specs()

    @classmethod
    def for_regime(cls, regime: str | None = None, config: str | Path | None = None,
                   overrides: list[str] | None = None, seed: int | None = None, **kw: Any) -> "ExploreSettings":
        """Settings whose base is a shipped regime and/or a YAML file, plus overrides."""
        base = load_config(regime, config).model_dump(mode="json")
        settings = cls(regime=regime or base.get("regime"), base_data=base, base_overrides=list(overrides or []),
                       seed=seed, **kw)
        build_config(settings.base_data, settings.base_overrides, settings.seed)
        SearchSpace.from_specs(settings.space)
        return settings


def resolve_settings(out: Path, settings: ExploreSettings | None, updates: dict | None = None) -> ExploreSettings:
    """The directory's settings: new ones (first run) or the stored ones with non-identity `updates` applied."""
    path = out / SETTINGS
    stored = None
    if path.exists():
        stored = ExploreSettings.model_validate_json(path.read_text())
    elif (out / LOG).exists():  # explore.json lost: the log's last session record has the settings
        logged = LogState.from_records(read_log(out / LOG)).settings
        stored = ExploreSettings.model_validate(logged) if logged else None
    if stored is not None:
        if settings is not None:
            diff = [k for k in IDENTITY if getattr(stored, k) != getattr(settings, k)]
            if diff:
                raise ConfigError(f"{out} holds an exploration with other {', '.join(diff)}; use a new --out")
            given = {k: getattr(settings, k) for k in settings.model_fields_set if k not in IDENTITY}
            updates = {**given, **(updates or {})}
        bad = [k for k in (updates or {}) if k in IDENTITY]
        if bad:
            raise ConfigError(f"cannot change {', '.join(bad)} of an existing exploration")
        settings = ExploreSettings.model_validate({**stored.model_dump(), **(updates or {})})
    elif settings is None:
        raise ConfigError(f"{path} not found: give a regime or config to start an exploration")
    elif updates:
        settings = ExploreSettings.model_validate({**settings.model_dump(), **updates})
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, settings.model_dump(mode="json"))
    return settings


def tree_from(state: LogState, settings: ExploreSettings) -> Tree:
    """The UCB tree of every iteration in the log (unfinished ones as pending nodes)."""
    tree = Tree(settings.ucb_c, settings.maximize, settings.score_floor)
    for i, it in sorted(state.iterations.items()):
        tree.add(Node(i, it.get("parent"), dict(it.get("params") or {}), dict(it.get("mutation") or {}),
                      it.get("role", ""), int(it.get("round", 0))))
        if it.get("finished"):
            tree.finish(i, it.get("status", "failed"), it.get("score"))
    return tree
