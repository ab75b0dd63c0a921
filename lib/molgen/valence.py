"""Bond orders that meet the valences the atom features set: the core of the ``valence`` decoder.

A generated atom with element ``e``, formal charge ``c`` (the ``charge`` block) and ``h`` hydrogens (the
``num_hs`` block) must carry bonds to heavy atoms whose orders sum to ``v - h``, where ``v`` is one of the
valences RDKit allows the element isoelectronic with ``e`` at charge ``c`` (N+ as C: 4; O- as F: 1; C- as N:
3).  Given which atom pairs are bonded, these per-atom targets decide the bond orders up to the alternatives
of conjugated rings (Kekulé structures), so the decoder takes the bond *topology* from A and the *orders*
from the features, choosing among the assignments that meet every target the one closest to A's continuous
values.  When no assignment meets the targets (the features contradict the topology) there is none: the
caller falls back to GDSS's decoding.

The targets are exact for ``h`` in 0, 1, 2; ``"3+"`` allows 3 or more hydrogens, and an atom with no
``num_hs`` column above 0.5 (or no ``num_hs`` block) allows any number, i.e. only the upper bound ``v``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from rdkit import Chem

MAX_ORDER = 3
_TABLE = Chem.GetPeriodicTable()


def allowed_valences(symbol: str, charge: int) -> tuple[int, ...]:
    """Total valences (bond orders + hydrogens) RDKit accepts for ``symbol`` at formal ``charge``: those of
    the neutral element with ``charge`` fewer protons (isoelectronic), e.g. N+ -> (4,), O- -> (1,)."""
    z = _TABLE.GetAtomicNumber(symbol) - int(charge)
    if z < 1:
        return ()
    return tuple(v for v in _TABLE.GetValenceList(z) if v >= 0)


def bond_valence_targets(symbol: str, charge: int, hydrogens: int | str | None) -> frozenset[int]:
    """The sums of heavy-atom bond orders an atom may have: ``v - h`` over its allowed valences ``v`` and the
    hydrogen counts ``h`` its ``num_hs`` category allows (an int: exactly that; ``"3+"``: 3 or more;
    ``None``: unknown, any)."""
    if hydrogens is None:
        hs = range(0, 9)
    elif hydrogens == "3+":
        hs = range(3, 9)
    else:
        hs = (int(hydrogens),)
    return frozenset(v - h for v in allowed_valences(symbol, charge) for h in hs if v - h >= 0)


def assign_bond_orders(weights: np.ndarray, targets: Sequence[frozenset[int]]) -> np.ndarray | None:
    """Integer bond orders on the bonded pairs that meet every atom's target, closest to ``weights``.

    ``weights``: ``(n, n)`` symmetric, the continuous bond values on the raw 0..3 scale; a pair is bonded iff
    its weight is at least 0.5 (GDSS's threshold), and gets an order 1..3.  ``targets``: per atom, the
    allowed sums of its bond orders (:func:`bond_valence_targets`).  Among the assignments meeting every
    target the one with the least squared distance to ``weights`` is returned (ties: the first found, orders
    tried from the nearest), as an ``(n, n)`` int64 matrix; ``None`` if there is none.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = w.shape[0]
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} atoms")
    rows, cols = np.nonzero(np.triu(w >= 0.5, k=1))
    edges = list(zip(rows.tolist(), cols.tolist()))
    lo = np.array([min(t) if t else 1 for t in targets])
    hi = np.array([max(t) if t else -1 for t in targets])
    degree = np.zeros(n, dtype=np.int64)
    for i, j in edges:
        degree[i] += 1
        degree[j] += 1
    if np.any(degree > hi) or np.any(MAX_ORDER * degree < lo):
        return None
    options = [sorted(range(1, MAX_ORDER + 1), key=lambda k, x=w[i, j]: ((x - k) ** 2, k)) for i, j in edges]
    costs = [[(w[i, j] - k) ** 2 for k in opts] for (i, j), opts in zip(edges, options)]
    rest = np.zeros(len(edges) + 1)  # least cost of edges e.. (a lower bound for pruning)
    for e in range(len(edges) - 1, -1, -1):
        rest[e] = rest[e + 1] + costs[e][0]
    left = degree.copy()  # bonds of each atom not yet assigned
    total = np.zeros(n, dtype=np.int64)
    chosen = [0] * len(edges)
    best: list = [np.inf, None]

    def search(e: int, cost: float) -> None:
        if cost + rest[e] >= best[0]:
            return
        if e == len(edges):
            if all(int(total[a]) in targets[a] for a in range(n)):
                best[0], best[1] = cost, list(chosen)
            return
        i, j = edges[e]
        left[i] -= 1
        left[j] -= 1
        for k, c in zip(options[e], costs[e]):
            total[i] += k
            total[j] += k
            if all(lo[a] <= total[a] + MAX_ORDER * left[a] and total[a] + left[a] <= hi[a] for a in (i, j)):
                chosen[e] = k
                search(e + 1, cost + c)
            total[i] -= k
            total[j] -= k
        left[i] += 1
        left[j] += 1

    if edges:
        search(0, 0.0)
    elif all(0 in t for t in targets):
        best[1] = []
    if best[1] is None:
        return None
    out = np.zeros((n, n), dtype=np.int64)
    for (i, j), k in zip(edges, best[1]):
        out[i, j] = out[j, i] = k
    return out


__all__ = ["MAX_ORDER", "allowed_valences", "assign_bond_orders", "bond_valence_targets"]
