"""GNN-LLM-Memory: a closed-loop exploration of training settings.

Each round a proposer (offline Optuna-TPE + UCB, or a language model) fills N slots with a parent node of the
UCB tree plus a whitelisted mutation; an executor (process pool or Dask) runs `metabolism.pipeline.run` for
each; an append-only JSONL log records everything, and a memory file and the tree are derived from it.
"""
from .loop import ExploreSettings, Explorer, explore
from .space import DEFAULT_PARAMS, Param, Rejected, SearchSpace
from .summary import summarize
from .tree import RULE, Tree

__all__ = ["DEFAULT_PARAMS", "ExploreSettings", "Explorer", "Param", "RULE", "Rejected", "SearchSpace", "Tree",
           "explore", "summarize"]
