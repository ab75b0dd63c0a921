"""The UCB tree of evaluated configurations.

Nodes are iterations; node 0 is the default config (the base overrides, no mutation) and every other node is
its parent's configuration plus one mutation. The selection rule, exactly:

* utility u(v) = score(v), negated when minimising, clipped below at `floor` (no clipping if floor is None);
  a failed node has u = floor (or, without a floor, the lowest utility of any ok node, or 0 if there is none);
* n(v) = number of evaluated nodes in the subtree of v, v included, plus the virtual visits of not yet
  evaluated proposals of the current round below v;
* mean(v) = the average u over the evaluated nodes of that subtree;
* N(v) = n(parent(v)), and N(root) = n(root);
* UCB(v) = mean(v) + c * sqrt(ln N(v) / n(v)).

The parent for a new proposal is the ok node (status "ok") with the largest UCB; ties go to the lower id.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RULE = ("UCB(v) = mean(v) + c*sqrt(ln N(v) / n(v)); mean(v) = average utility over the evaluated subtree of v "
        "(utility = score, negated when minimising, clipped below at floor; failed = floor); n(v) = evaluated "
        "subtree size incl. v (+ virtual visits of this round's pending proposals); N(v) = n(parent(v)), "
        "N(root) = n(root); argmax over ok nodes, ties to the lower id")


@dataclass
class Node:
    id: int
    parent: int | None
    params: dict
    mutation: dict
    role: str = ""
    round: int = 0
    status: str = "pending"
    score: float | None = None
    children: list[int] = field(default_factory=list)


class Tree:
    """Evaluated configurations with their parent links and UCB statistics."""

    def __init__(self, c: float = 0.5, maximize: bool = True, floor: float | None = -1.0):
        self.c, self.maximize, self.floor = c, maximize, floor
        self.nodes: dict[int, Node] = {}

    def add(self, node: Node) -> None:
        self.nodes[node.id] = node
        if node.parent is not None and node.parent in self.nodes:
            children = self.nodes[node.parent].children
            if node.id not in children:
                children.append(node.id)

    def finish(self, node_id: int, status: str, score: float | None) -> None:
        node = self.nodes[node_id]
        node.status, node.score = status, score

    def evaluated(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.status in ("ok", "failed")]

    def ok(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.status == "ok" and n.score is not None]

    def utility(self, node: Node, clip: bool = True) -> float:
        """The score as a quantity to maximise, clipped at the floor (unless clip=False); failed = the floor."""
        if node.status == "ok" and node.score is not None:
            u = node.score if self.maximize else -node.score
            return u if self.floor is None or not clip else max(u, self.floor)
        if self.floor is not None:
            return self.floor
        oks = [self.utility(n) for n in self.ok()]
        return min(oks) if oks else 0.0

    def subtree(self, node_id: int) -> list[Node]:
        out, stack = [], [node_id]
        while stack:
            n = self.nodes[stack.pop()]
            out.append(n)
            stack.extend(n.children)
        return out

    def stats(self, node_id: int, virtual: Counter | None = None) -> tuple[int, float | None]:
        """(n, mean) of the subtree of `node_id`; n includes virtual visits below it."""
        sub = self.subtree(node_id)
        done = [n for n in sub if n.status in ("ok", "failed")]
        n = len(done) + (sum(virtual[m.id] for m in sub) if virtual else 0)
        mean = sum(self.utility(m) for m in done) / len(done) if done else None
        return n, mean

    def ucb(self, node_id: int, c: float | None = None, virtual: Counter | None = None) -> float | None:
        """The UCB value of a node (None if its subtree has no evaluated node)."""
        c = self.c if c is None else c
        n, mean = self.stats(node_id, virtual)
        if mean is None or n == 0:
            return None
        parent = self.nodes[node_id].parent
        big_n = self.stats(parent, virtual)[0] if parent is not None and parent in self.nodes else n
        return mean + c * math.sqrt(math.log(max(big_n, 1)) / n)

    def select(self, c: float | None = None, virtual: Counter | None = None) -> int | None:
        """The ok node with the largest UCB (lowest id on ties), or None if no node is ok."""
        best, best_id = -math.inf, None
        for node in sorted(self.ok(), key=lambda n: n.id):
            value = self.ucb(node.id, c, virtual)
            if value is not None and value > best:
                best, best_id = value, node.id
        return best_id

    def best(self) -> Node | None:
        oks = self.ok()
        if not oks:
            return None
        return max(oks, key=lambda n: ((n.score if self.maximize else -n.score), -n.id))

    def to_dict(self) -> dict[str, Any]:
        nodes = []
        for node in sorted(self.nodes.values(), key=lambda n: n.id):
            n, mean = self.stats(node.id)
            nodes.append({"id": node.id, "parent": node.parent, "children": list(node.children),
                          "round": node.round, "role": node.role, "status": node.status, "score": node.score,
                          "utility": self.utility(node) if node.status in ("ok", "failed") else None,
                          "mutation": node.mutation, "params": node.params, "n": n, "mean": mean,
                          "ucb": self.ucb(node.id)})
        return {"rule": RULE, "c": self.c, "maximize": self.maximize, "floor": self.floor, "nodes": nodes}
