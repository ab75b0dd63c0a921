"""The readable memory of an exploration: established principles, refuted hypotheses, open questions.

The offline version is regenerated from the log by simple statistics over single-key mutations: for each
child whose mutation changed exactly one key, the change of score (unclipped, sign-flipped when minimising)
against its parent is one observation of that key's effect ("increasing training.lr" or "model.sub_input=linear"). An effect seen at least twice with
the same sign in >= 2/3 of the cases is a principle; a test of a principle (a hypothesis) that made its
parent worse is a refuted hypothesis; keys never varied alone or with mixed effects are open questions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.io import write_text
from .space import SearchSpace
from .tree import Tree

MAX_LINES = 5


@dataclass
class Effect:
    """Aggregated single-key mutation effects: `direction` is +1 (numeric: every delta is the effect of an
    increase) or the chosen value; `moves` records, per observation, whether the mutation actually raised (+1)
    or lowered (-1) a numeric key."""

    key: str
    direction: object
    deltas: list[float]
    iterations: list[int]
    moves: list[int | None] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.deltas) / len(self.deltas)

    @property
    def agree(self) -> int:
        sign = 1 if self.mean >= 0 else -1
        return sum(1 for d in self.deltas if d * sign > 0)

    @property
    def numeric(self) -> bool:
        return isinstance(self.direction, int) and not isinstance(self.direction, bool)

    @property
    def null(self) -> bool:
        return all(abs(d) <= 1e-12 for d in self.deltas)

    @property
    def established(self) -> bool:
        return len(self.deltas) >= 2 and self.agree >= 2 * len(self.deltas) / 3 and abs(self.mean) > 1e-9

    def statement(self) -> str:
        """The principle in words, stated in its helpful direction."""
        if self.numeric:
            verb = "increasing" if (self.direction > 0) == (self.mean >= 0) else "decreasing"
            return f"{verb} {self.key} helps"
        return f"{self.key}={self.direction} {'helps' if self.mean >= 0 else 'hurts'}"


def effective(params: dict, base_values: dict) -> dict:
    return {**base_values, **params}


def single_key_observations(iterations: list[dict], tree: Tree, space: SearchSpace,
                            base_values: dict) -> list[tuple[str, object, float, int, int | None]]:
    """(key, direction, utility change vs parent, iteration, move) for ok children of ok parents with one changed
    key: for a numeric key the direction is +1 and the change is that of an increase (sign-flipped when the
    mutation lowered the key, which `move` = -1 records); for a choice the direction is the value chosen."""
    out = []
    for it in iterations:
        node = tree.nodes.get(it["iteration"])
        if node is None or node.status != "ok" or node.parent is None:
            continue
        parent = tree.nodes.get(node.parent)
        if parent is None or parent.status != "ok":
            continue
        before, after = effective(parent.params, base_values), effective(node.params, base_values)
        changed = [k for k in space.keys() if before.get(k) != after.get(k)]
        if len(changed) != 1:
            continue
        key = changed[0]
        delta = tree.utility(node, clip=False) - tree.utility(parent, clip=False)
        if space.params[key].kind == "choice":
            out.append((key, after[key], delta, node.id, None))
        else:
            up = after[key] > before[key]
            out.append((key, 1, delta if up else -delta, node.id, 1 if up else -1))
    return out


def effects(iterations: list[dict], tree: Tree, space: SearchSpace, base_values: dict) -> list[Effect]:
    """Single-key effects grouped by key (numeric: signed as 'increasing') or by key and value (choices)."""
    groups: dict[tuple, Effect] = {}
    for key, direction, delta, i, move in single_key_observations(iterations, tree, space, base_values):
        eff = groups.setdefault((key, direction), Effect(key, direction, [], []))
        eff.deltas.append(delta)
        eff.iterations.append(i)
        eff.moves.append(move)
    return sorted(groups.values(), key=lambda e: (-abs(e.mean), e.key))


def refuted(iterations: list[dict], tree: Tree) -> list[tuple[dict, float | None, int, int]]:
    """(hypothesis, utility change or None if the run failed, iteration, parent) for failed tests."""
    out = []
    for it in iterations:
        hyp = it.get("hypothesis")
        node = tree.nodes.get(it["iteration"])
        if not hyp or node is None or node.parent is None or node.status not in ("ok", "failed"):
            continue
        parent = tree.nodes.get(node.parent)
        if parent is None or parent.status != "ok":
            continue
        if node.status != "ok":
            out.append((hyp, None, node.id, parent.id))
            continue
        delta = tree.utility(node, clip=False) - tree.utility(parent, clip=False)
        if delta < 0:
            out.append((hyp, delta, node.id, parent.id))
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _seen_once(e: Effect) -> str:
    """One observation in words, as the mutation was made: which way the key moved and what the score did."""
    if not e.numeric:
        return f"- {e.statement()}? seen once (it {e.iterations[0]}: {e.deltas[0]:+.3g})"
    move = e.moves[0] if e.moves else 1
    change = e.deltas[0] * move
    return (f"- {e.key}: {'raised' if move > 0 else 'lowered'} alone once (it {e.iterations[0]}), which "
            f"{'improved' if change > 0 else 'worsened'} the score by {abs(change):.3g}")


def offline_memory(iterations: list[dict], tree: Tree, space: SearchSpace, base_values: dict,
                   score_key: str, maximize: bool) -> str:
    """The memory markdown computed from the finished iterations and the tree (kept to a few lines each)."""
    done = [it for it in iterations if it.get("finished")]
    n_ok = sum(1 for it in done if it.get("status") == "ok")
    root = tree.nodes.get(0)
    best = tree.best()
    lines = ["# Exploration memory", "",
             f"Score `{score_key}` ({'higher' if maximize else 'lower'} is better): {len(done)} iterations, "
             f"{n_ok} ok, {len(done) - n_ok} failed. Default (it 0): {_fmt(root.score if root else None)}."]
    if best is not None:
        changes = ", ".join(f"{k}={v}" for k, v in best.params.items()) or "no change"
        lines.append(f"Best: {_fmt(best.score)} (it {best.id}: {changes}).")
    effs = effects(done, tree, space, base_values)
    established = [e for e in effs if e.established]
    lines += ["", "## Established principles"]
    lines += [f"- {e.statement()}: mean score {'gain' if e.numeric else 'change'} "
              f"{abs(e.mean) if e.numeric else e.mean:+.3g} over {len(e.deltas)} single-key "
              f"mutations ({e.agree}/{len(e.deltas)} agree; its {', '.join(map(str, e.iterations[:6]))})"
              for e in established[:MAX_LINES]] or ["- none yet (need >= 2 consistent single-key mutations)"]
    null = sorted({e.key for e in effs if len(e.deltas) >= 2 and e.null})
    if null:
        lines.append(f"- no measurable effect (>= 2 single-key mutations each): {', '.join(null)}")
    lines += ["", "## Refuted hypotheses"]
    lines += [f"- \"{h.get('statement', h)}\": it {i} on parent it {p} "
              f"{'failed' if d is None else f'changed the score by {d:+.3g}'}"
              for h, d, i, p in refuted(done, tree)[-MAX_LINES:]] or ["- none"]
    lines += ["", "## Open questions"]
    seen = {e.key for e in effs}
    open_q = [f"- {e.key}: mixed effect of "
              f"{'increasing' if e.direction == 1 else e.direction} ({e.agree}/{len(e.deltas)} agree, "
              f"mean {e.mean:+.3g})" for e in effs if len(e.deltas) >= 2 and not e.established and not e.null]
    never = [k for k in space.keys() if k not in seen]
    if never:
        open_q.append(f"- never varied alone: {', '.join(never)}")
    open_q += [f"- {e.key}: no effect in a single try (it {e.iterations[0]})" if e.null else _seen_once(e)
               for e in effs if len(e.deltas) == 1]
    lines += open_q[:MAX_LINES] or ["- none"]
    return "\n".join(lines) + "\n"


def write_memory(path: str | Path, text: str) -> None:
    """Write the memory file atomically."""
    write_text(path, text if text.endswith("\n") else text + "\n")
