"""Proposers: what to run next. Each fills the slots of a round with a parent node plus a mutation.

Every proposal goes through `RoundContext.vet`, which rejects (and logs) anything outside the whitelist,
anything that fails the RunConfig schema, no-op mutations and duplicates of configs already in the tree.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..config import ConfigError
from .memory import effective, effects
from .space import Rejected, SearchSpace, build_config, overrides_for
from .tree import Tree

ROLES = ("exploit", "exploit", "explore", "test-a-principle")
KNOWN_ROLES = frozenset(ROLES) | {"baseline"}


@dataclass
class Proposal:
    """A parent iteration id, a mutation {key: value}, and why."""

    parent: int
    mutation: dict
    role: str
    reasoning: str = ""
    hypothesis: dict | None = None


@dataclass
class Candidate:
    """A vetted proposal: its full parameters (the keys that differ from the default) and overrides."""

    proposal: Proposal
    params: dict
    overrides: list[str]


@dataclass
class RoundContext:
    """Everything a proposer may look at in one round, and the vetting of its proposals."""

    round: int
    roles: list[str]
    tree: Tree
    iterations: list[dict]
    space: SearchSpace
    base_data: dict
    base_overrides: list[str]
    base_values: dict
    seed: int | None
    memory: str
    score_key: str
    maximize: bool
    ucb_c: float
    explore_factor: float
    explore_seed: int
    recent: int = 20
    log: Callable[[dict], Any] = lambda rec: None
    proposer_name: str = ""
    virtual: Counter = field(default_factory=Counter)
    accepted: list[Candidate] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)

    def parents(self) -> list[int]:
        """Ids a proposal may start from: the default config (0) and every ok node."""
        return sorted({0} | {n.id for n in self.tree.ok()})

    def vet(self, proposal: Proposal, raw: Any = None) -> Candidate | None:
        """The candidate if the proposal is runnable; otherwise log a `rejected` record and return None."""
        try:
            cand = self._check(proposal)
        except (Rejected, ConfigError) as err:
            self.log({"event": "rejected", "round": self.round, "proposer": self.proposer_name,
                      "proposal": raw if raw is not None else {"parent": proposal.parent, "role": proposal.role,
                                                               "mutation": proposal.mutation},
                      "reason": str(err)})
            self.rejections.append(str(err))
            return None
        self.accepted.append(cand)
        self.virtual[cand.proposal.parent] += 1
        return cand

    def _check(self, p: Proposal) -> Candidate:
        if isinstance(p.parent, bool) or not isinstance(p.parent, int) or p.parent not in self.parents():
            raise Rejected(f"parent {p.parent!r} is not an evaluated ok node (valid: {self.parents()})")
        if p.role not in KNOWN_ROLES:
            raise Rejected(f"unknown role {p.role!r}")
        mutation = self.space.check(p.mutation)
        parent_values = effective(self.tree.nodes[p.parent].params if p.parent in self.tree.nodes else {},
                                  self.base_values)
        if all(parent_values.get(k) == v for k, v in mutation.items()):
            raise Rejected("the mutation changes nothing relative to its parent")
        values = {**parent_values, **mutation}
        params = {k: values[k] for k in self.space.keys() if values[k] != self.base_values.get(k)}
        for node in self.tree.nodes.values():
            if effective(node.params, self.base_values) == values:
                raise Rejected(f"duplicate of iteration {node.id}")
        for cand in self.accepted:
            if effective(cand.params, self.base_values) == values:
                raise Rejected("duplicate of another proposal of this round")
        overrides = overrides_for(self.base_overrides, params)
        build_config(self.base_data, overrides, self.seed)
        p.mutation = mutation
        return Candidate(p, params, overrides)


class Proposer(Protocol):
    name: str

    def propose(self, ctx: RoundContext) -> tuple[list[Candidate], str | None]:
        """Candidates for (at most) len(ctx.roles) slots, and an optional memory text."""


def _tidy(param, value):
    """Floats rounded to 4 significant digits (kept inside the range), so configs stay readable."""
    if param.kind != "float" or value == 0:
        return value
    return min(max(float(f"{value:.4g}"), param.low), param.high)


def _clip(param, value):
    if param.kind == "choice":
        return value if value in param.choices else None
    return min(max(value, param.low), param.high)


class OfflineProposer:
    """'optuna-tpe+ucb': UCB picks the parent, Optuna's TPE (seeded, rebuilt from the tree each round) the values.

    exploit: parent = UCB argmax (c); one key (keys without measurable effect 4x less likely) set to a TPE
    sample.
    explore: parent = UCB argmax (c * explore_factor); two keys set to uniform random draws.
    test-a-principle: parent = best node; the strongest established principle applied one step further
    (a hypothesis, refuted if the child is worse); without principles, the least-studied key is set to a TPE
    sample on the best node.
    """

    name = "optuna-tpe+ucb"
    max_tries = 12

    def propose(self, ctx: RoundContext) -> tuple[list[Candidate], str | None]:
        rng = random.Random(f"{ctx.explore_seed}-{ctx.round}")
        study, dists = self._study(ctx)
        n_told = len(study.trials)
        out: list[Candidate] = []
        for role in ctx.roles:
            for attempt in range(self.max_tries):
                trial = study.ask(dists)
                tpe = {k: _tidy(ctx.space.params[k], v) for k, v in trial.params.items()}
                proposal = self._make(role, ctx, rng, tpe, n_told, attempt)
                if proposal is None:
                    break
                cand = ctx.vet(proposal)
                if cand is not None:
                    out.append(cand)
                    break
            else:
                ctx.log({"event": "skipped", "round": ctx.round, "proposer": self.name, "n": 1,
                         "reason": f"no runnable {role} proposal in {self.max_tries} tries"})
        return out, None

    def _study(self, ctx: RoundContext):
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = {}
        for key, p in ctx.space.params.items():
            if p.kind == "choice":
                dists[key] = CategoricalDistribution(list(p.choices))
            elif p.kind == "int":
                dists[key] = IntDistribution(int(p.low), int(p.high), log=p.log)
            else:
                dists[key] = FloatDistribution(p.low, p.high, log=p.log)
        sampler = optuna.samplers.TPESampler(seed=(ctx.explore_seed * 100_003 + ctx.round) % 2**32)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        trials = []
        for node in ctx.tree.evaluated():
            values = effective(node.params, ctx.base_values)
            params = {k: _clip(ctx.space.params[k], values[k]) for k in dists}
            if any(v is None for v in params.values()):
                continue
            trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                    value=ctx.tree.utility(node)))
        study.add_trials(trials)
        return study, dists

    def _parent(self, ctx: RoundContext, c: float) -> tuple[int, str]:
        pid = ctx.tree.select(c, ctx.virtual)
        if pid is None:
            return 0, "parent it 0 (the default; nothing evaluated yet)"
        n, mean = ctx.tree.stats(pid, ctx.virtual)
        return pid, f"parent it {pid} (UCB {ctx.tree.ucb(pid, c, ctx.virtual):.4g} = mean {mean:.4g} + bonus, n={n})"

    def _make(self, role: str, ctx: RoundContext, rng: random.Random, tpe: dict, n_trials: int,
              attempt: int = 0) -> Proposal | None:
        keys = ctx.space.keys()
        if role == "explore":
            pid, why = self._parent(ctx, ctx.ucb_c * ctx.explore_factor)
            chosen = rng.sample(keys, min(2, len(keys)))
            mutation = {k: _tidy(ctx.space.params[k], ctx.space.params[k].sample(rng)) for k in chosen}
            return Proposal(pid, mutation, role, f"explore: {why}; random values for {', '.join(chosen)}")
        if role == "test-a-principle":
            proposal = self._principle(ctx, attempt)
            if proposal is not None:
                return proposal
            best = ctx.tree.best()
            pid = best.id if best is not None else 0
            seen = Counter(e.key for e in effects(ctx.iterations, ctx.tree, ctx.space, ctx.base_values)
                           for _ in e.deltas)
            key = min(keys, key=lambda k: (seen[k], rng.random()))
            return Proposal(pid, {key: tpe[key]}, role,
                            f"test-a-principle: no established principle to test; open question: does {key} "
                            f"matter? ({seen[key]} single-key observations) - TPE value on best it {pid}")
        pid, why = self._parent(ctx, ctx.ucb_c)
        current = effective(ctx.tree.nodes[pid].params if pid in ctx.tree.nodes else {}, ctx.base_values)
        movable = [k for k in keys if tpe[k] != current.get(k)] or keys
        null = {e.key for e in effects(ctx.iterations, ctx.tree, ctx.space, ctx.base_values)
                if len(e.deltas) >= 2 and e.null}
        key = rng.choices(movable, weights=[0.25 if k in null else 1.0 for k in movable])[0]
        return Proposal(pid, {key: tpe[key]}, "exploit" if role not in KNOWN_ROLES else role,
                        f"{role}: {why}; {key}: {current.get(key)} -> {tpe[key]} (TPE after {n_trials} trials)")

    def _principle(self, ctx: RoundContext, skip: int = 0) -> Proposal | None:
        """The `skip`-th applicable established principle, applied to the best node (None if there is none)."""
        best = ctx.tree.best()
        if best is None:
            return None
        current = effective(best.params, ctx.base_values)
        for eff in effects(ctx.iterations, ctx.tree, ctx.space, ctx.base_values):
            if not eff.established:
                continue
            param = ctx.space.params[eff.key]
            if param.kind == "choice":
                if eff.mean > 0 and current[eff.key] != eff.direction:
                    value = eff.direction
                elif eff.mean < 0 and current[eff.key] == eff.direction:
                    value = next(c for c in param.choices if c != eff.direction)
                else:
                    continue
                hyp = {"key": eff.key, "value": value, "statement": eff.statement()}
            else:
                sign = 1 if eff.mean > 0 else -1
                value = _tidy(param, param.step(current[eff.key], sign))
                if value == current[eff.key]:
                    continue
                hyp = {"key": eff.key, "direction": "increase" if sign > 0 else "decrease",
                       "statement": eff.statement()}
            if skip > 0:
                skip -= 1
                continue
            gain = abs(eff.mean) if eff.numeric else eff.mean
            return Proposal(best.id, {eff.key: value}, "test-a-principle",
                            f"test-a-principle: '{eff.statement()}' (mean gain {gain:+.3g} over {len(eff.deltas)}); "
                            f"apply it once more to best it {best.id}: {eff.key} {current[eff.key]} -> {value}",
                            hypothesis=hyp)
        return None
