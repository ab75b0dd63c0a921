"""Metabolic networks: the stoichiometry (R, P, S) of a network, and the seeded generator of the study's own.

R[i, j] is the order of metabolite i as a reactant of reaction j, P[i, j] its product coefficient, S = P - R.
A ``Stoichiometry`` is what any network has (a generated one, or one imported from SBML, COBRA or a table:
``metabolism.importers``); a ``Network`` adds the true kinetics (rate constants, homeostasis) of a system
whose ground truth is known. Generated networks satisfy stricter invariants than real ones: every column of
S sums to zero (mass is conserved) and no two reactions share a reactant set. Real stoichiometries need
neither (``A + B -> C`` does not conserve molecule counts; two reactions with the same reactants and
different products are separately identifiable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import NetworkConfig


class NetworkError(ValueError):
    """A stoichiometry that violates the network's invariants."""


@dataclass(frozen=True, kw_only=True)
class Stoichiometry:
    """Reactant orders R and product coefficients P (n metabolites x m reactions), with optional ids."""

    R: np.ndarray  # (n, m) reactant orders
    P: np.ndarray  # (n, m) product coefficients
    aggregation: str = "multiplicative"
    metabolite_ids: tuple[str, ...] = ()
    reaction_ids: tuple[str, ...] = ()

    @property
    def S(self) -> np.ndarray:
        return self.P - self.R

    @property
    def n_metabolites(self) -> int:
        return self.R.shape[0]

    @property
    def n_reactions(self) -> int:
        return self.R.shape[1]

    @property
    def metabolites(self) -> tuple[str, ...]:
        """Metabolite ids (``m0``, ``m1``, ... when none were given)."""
        return self.metabolite_ids or tuple(f"m{i}" for i in range(self.n_metabolites))

    @property
    def reactions(self) -> tuple[str, ...]:
        """Reaction ids (``r0``, ``r1``, ... when none were given)."""
        return self.reaction_ids or tuple(f"r{j}" for j in range(self.n_reactions))

    def substrate_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(metabolite, reaction, order) for every substrate edge, sorted by reaction."""
        rxn, met = np.nonzero(self.R.T)
        return met, rxn, self.R[met, rxn]

    def stoichiometry_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reaction, metabolite, S_ij) for every nonzero entry of S."""
        met, rxn = np.nonzero(self.S)
        return rxn, met, self.S[met, rxn]

    def validate_structure(self) -> None:
        """The invariants of every usable network: shapes, signs, ids, a substrate per reaction, no idle
        metabolite. Raises NetworkError naming the first violation."""
        n, m = self.R.shape
        if self.P.shape != (n, m):
            raise NetworkError(f"P has shape {self.P.shape}, R has {self.R.shape}")
        if (self.R < 0).any() or (self.P < 0).any():
            raise NetworkError("R and P must be non-negative")
        if not (np.isfinite(self.R).all() and np.isfinite(self.P).all()):
            raise NetworkError("R and P must be finite")
        for name, ids, size in (("metabolite_ids", self.metabolite_ids, n), ("reaction_ids", self.reaction_ids, m)):
            if ids and len(ids) != size:
                raise NetworkError(f"{name} has {len(ids)} entries for {size} {name.split('_')[0]}s")
            if ids and len(set(ids)) != len(ids):
                dup = next(i for i in ids if list(ids).count(i) > 1)
                raise NetworkError(f"{name}: {dup!r} appears more than once")
        empty = np.flatnonzero(self.R.sum(0) == 0)
        if empty.size:
            raise NetworkError(f"reaction {self.reactions[int(empty[0])]} has no substrate")
        isolated = np.flatnonzero((self.R + self.P).sum(1) == 0)
        if isolated.size:
            raise NetworkError(f"metabolite {self.metabolites[int(isolated[0])]} takes part in no reaction")
        if self.aggregation not in ("multiplicative", "additive"):
            raise NetworkError(f"unknown aggregation {self.aggregation!r}")


@dataclass(frozen=True, kw_only=True)
class Network(Stoichiometry):
    """The true system: stoichiometry, kinetics and homeostasis."""

    k: np.ndarray  # (m,) rate constants
    types: np.ndarray  # (n,) metabolite type
    lam: np.ndarray  # (n,) homeostasis rate
    baseline: np.ndarray  # (n,) homeostatic set point

    def validate(self, generated: bool = True) -> None:
        """Raise NetworkError naming the first violated invariant; ``generated`` adds the generator's own
        (mass conservation, distinct reactant sets), which imported networks need not meet."""
        self.validate_structure()
        m = self.n_reactions
        if generated:
            if not np.allclose(self.S.sum(0), 0):
                bad = int(np.flatnonzero(~np.isclose(self.S.sum(0), 0))[0])
                raise NetworkError(f"column {bad} of S does not sum to zero")
            keys = [tuple(self.R[:, j]) for j in range(m)]
            if len(set(keys)) != m:
                seen: dict = {}
                for j, key in enumerate(keys):
                    if key in seen:
                        raise NetworkError(f"reactions {seen[key]} and {j} share the same reactant set")
                    seen[key] = j
        if self.k.shape != (m,) or (self.k <= 0).any():
            raise NetworkError("k must hold one positive rate constant per reaction")


def _cycle_reactions(rng: np.random.Generator, n: int, count: int, length: int, queue: list[int],
                     used: set) -> list[tuple[dict, dict]]:
    """Autocatalytic cycles m_1 + m_2 -> 2 m_2, m_2 + m_3 -> 2 m_3, ..., m_L + m_1 -> 2 m_1."""
    out: list[tuple[dict, dict]] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise NetworkError("could not place autocatalytic cycles with distinct reactant sets; "
                               "increase n_metabolites or lower n_reactions")
        members: list[int] = []
        while queue and len(members) < length:
            members.append(queue.pop())
        rest = [i for i in rng.permutation(n) if i not in members]
        members += rest[: length - len(members)]
        take = min(length, count - len(out))
        cycle = []
        for a_pos in range(take):
            a, b = members[a_pos], members[(a_pos + 1) % length]
            cycle.append(({a: 1, b: 1}, {b: 2}))
        keys = [frozenset(r.items()) for r, _ in cycle]
        if len(set(keys)) < len(keys) or any(key in used for key in keys):
            queue.extend(m for m in members if m not in rest)
            continue
        used.update(keys)
        out.extend(cycle)
    return out


def _random_reaction(rng: np.random.Generator, n: int, cfg: NetworkConfig, queue: list[int]) -> tuple[dict, dict]:
    n_sub = int(rng.integers(1, cfg.max_substrates + 1))
    subs = [queue.pop()] if queue else []
    pool = [i for i in rng.permutation(n) if i not in subs]
    subs += pool[: n_sub - len(subs)]
    reactants = {int(i): int(rng.choice(cfg.orders)) for i in subs}
    total = sum(reactants.values())
    others = [i for i in rng.permutation(n) if i not in reactants]
    n_prod = int(min(rng.integers(1, cfg.max_products + 1), total, len(others)))
    if n_prod == 0:
        raise NetworkError("n_metabolites too small for reactions with distinct products")
    prods: list[int] = []
    while queue and len(prods) < n_prod and queue[-1] not in reactants:
        prods.append(int(queue.pop()))
    prods += [int(i) for i in others if i not in prods][: n_prod - len(prods)]
    cuts = np.sort(rng.choice(np.arange(1, total), size=len(prods) - 1, replace=False)) if len(prods) > 1 else []
    coeffs = np.diff(np.concatenate([[0], cuts, [total]])).astype(int)
    return reactants, {p: int(c) for p, c in zip(prods, coeffs)}


def generate_network(cfg: NetworkConfig, seed: int) -> Network:
    """Draw a network satisfying all invariants, deterministically from `seed`."""
    rng = np.random.default_rng(seed)
    n, m = cfg.n_metabolites, cfg.n_reactions
    if 2 * m < n:
        raise NetworkError(f"{m} reactions cannot involve all {n} metabolites; raise n_reactions")
    queue = [int(i) for i in rng.permutation(n)]
    used: set = set()
    n_cycle = int(round(cfg.cycle_fraction * m))
    reactions = _cycle_reactions(rng, n, n_cycle, cfg.cycle_length, queue, used) if n_cycle else []
    attempts = 0
    while len(reactions) < m:
        attempts += 1
        if attempts > 100 * m:
            raise NetworkError("could not draw enough reactions with distinct reactant sets")
        reactants, products = _random_reaction(rng, n, cfg, queue)
        key = frozenset(reactants.items())
        if key in used:
            continue
        used.add(key)
        reactions.append((reactants, products))
    R = np.zeros((n, m))
    P = np.zeros((n, m))
    for j, (reactants, products) in enumerate(reactions):
        for i, o in reactants.items():
            R[i, j] = o
        for i, c in products.items():
            P[i, j] = c
    types = rng.permutation(np.arange(n) % cfg.n_types)
    k = 10.0 ** rng.uniform(cfg.log_k_min, cfg.log_k_max, size=m)
    net = Network(
        R=R, P=P, k=k, types=types,
        lam=np.asarray(cfg.lambdas, float)[types], baseline=np.asarray(cfg.baselines, float)[types],
        aggregation=cfg.aggregation,
    )
    net.validate()
    return net
