"""Score networks: GDSS's (``gdss``, with their loop-form oracle ``gdss_reference``) and the cell-attention ones
(``can``), chosen by the config's ``model.x`` and ``model.adj`` from ``SCORE_NETWORKS``; ``score`` turns a
pair of them into the score of a noisy graph.

A network added here is one class in its own module, built by its ``from_config(cfg)``, and one line below
(and its name in ``config.ModelConfig``, which validates the config without importing the networks).
"""
from types import MappingProxyType
from typing import Mapping

from torch import nn

from .can import CANScoreA, CANScoreX
from .gdss import ScoreNetworkA, ScoreNetworkX

SCORE_NETWORKS: Mapping[str, type[nn.Module]] = MappingProxyType({
    "ScoreNetworkX": ScoreNetworkX,
    "ScoreNetworkA": ScoreNetworkA,
    "CANScoreX": CANScoreX,
    "CANScoreA": CANScoreA,
})

__all__ = ["CANScoreA", "CANScoreX", "SCORE_NETWORKS", "ScoreNetworkA", "ScoreNetworkX"]
