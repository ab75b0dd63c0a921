"""Score networks: GDSS's ScoreNetworkX / ScoreNetworkA (``gdss``) and their loop-form oracle (``gdss_reference``)."""
from .gdss import ScoreNetworkA, ScoreNetworkX

__all__ = ["ScoreNetworkA", "ScoreNetworkX"]
