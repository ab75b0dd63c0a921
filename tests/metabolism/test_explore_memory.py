"""The offline memory says what a single-key mutation did, in the direction it was made."""
from __future__ import annotations

from metabolism.explore.memory import offline_memory
from metabolism.explore.space import SearchSpace
from metabolism.explore.tree import Node, Tree


def _memory(ridge_end: float, score: float) -> str:
    tree = Tree(maximize=True)
    tree.add(Node(0, None, {}, {}, status="ok", score=0.90))
    tree.add(Node(1, 0, {"training.ridge_end": ridge_end}, {"training.ridge_end": ridge_end}, status="ok",
                  score=score))
    iterations = [{"iteration": i, "finished": True, "status": "ok"} for i in (0, 1)]
    return offline_memory(iterations, tree, SearchSpace(), {"training.ridge_end": 1e-8}, "rate_constants.r2_log_k",
                          True)


def test_a_single_observation_is_reported_as_the_mutation_was_made():
    raised_worse = _memory(1e-6, 0.80)
    assert "training.ridge_end: raised alone once (it 1), which worsened the score by 0.1" in raised_worse
    assert "decreasing training.ridge_end" not in raised_worse
    lowered_better = _memory(1e-10, 0.95)
    assert "training.ridge_end: lowered alone once (it 1), which improved the score by 0.05" in lowered_better
