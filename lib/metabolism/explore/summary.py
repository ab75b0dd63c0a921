"""A summary of an exploration directory for the paper: best vs default, score over iterations, tree, memory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .record import LogState, read_log
from .settings import LOG, MEMORY, SETTINGS, ExploreSettings, tree_from


def summarize(out: str | Path) -> dict[str, Any]:
    """Everything a figure or table needs, from the directory's settings and log.

    Keys: settings, counts, default (iteration 0), best (its params, overrides, lineage and the changed keys
    with their default values), history (per iteration id: score and best so far), tree (nodes with parent,
    depth, score, UCB; for plotting) and memory (the memory.md text).
    """
    from .memory import effective
    from .space import SearchSpace, build_config

    out = Path(out)
    settings = ExploreSettings.model_validate_json((out / SETTINGS).read_text())
    state = LogState.from_records(read_log(out / LOG))
    tree = tree_from(state, settings)
    space = SearchSpace.from_specs(settings.space)
    base_values = space.values_of(build_config(settings.base_data, settings.base_overrides, settings.seed))

    history, best_so_far = [], None
    for it in state.finished():
        score = it.get("score") if it.get("status") == "ok" else None
        if score is not None and (best_so_far is None or (score > best_so_far if settings.maximize
                                                          else score < best_so_far)):
            best_so_far = score
        history.append({"iteration": it["iteration"], "round": it.get("round"), "role": it.get("role"),
                        "proposer": it.get("proposer"), "parent": it.get("parent"), "mutation": it.get("mutation"),
                        "status": it.get("status"), "score": score, "best_so_far": best_so_far,
                        "wall_time": it.get("wall_time")})

    def brief(node_id: int | None) -> dict | None:
        if node_id is None or node_id not in state.iterations:
            return None
        it = state.iterations[node_id]
        return {"iteration": node_id, "status": it.get("status"), "score": it.get("score"),
                "params": it.get("params"), "overrides": it.get("overrides"), "metrics": it.get("metrics")}

    best_node = tree.best()
    best = brief(best_node.id if best_node else None)
    if best is not None:
        values = effective(best_node.params, base_values)
        best["changes_vs_default"] = {k: {"default": base_values[k], "best": values[k]}
                                      for k in space.keys() if values[k] != base_values[k]}
        lineage, node = [], best_node
        while node is not None:
            lineage.append(node.id)
            node = tree.nodes.get(node.parent) if node.parent is not None else None
        best["lineage"] = lineage[::-1]
    nodes = tree.to_dict()
    depth: dict[int, int] = {}
    for n in nodes["nodes"]:
        depth[n["id"]] = 0 if n["parent"] is None else depth.get(n["parent"], -1) + 1
        n["depth"] = depth[n["id"]]
    finished = state.finished()
    memory_path = out / MEMORY
    return {
        "settings": {k: v for k, v in settings.model_dump(mode="json").items() if k != "base_data"},
        "counts": {"iterations": len(finished), "ok": sum(1 for it in finished if it.get("status") == "ok"),
                   "failed": sum(1 for it in finished if it.get("status") != "ok"),
                   "unfinished": len(state.unfinished()), "rejected": state.n_rejected, "skipped": state.n_skipped,
                   "wall_time": sum(it.get("wall_time") or 0.0 for it in finished)},
        "default": brief(0),
        "best": best,
        "history": history,
        "tree": nodes,
        "memory": memory_path.read_text() if memory_path.exists() else "",
    }
