"""The one place that picks the torch device for both studies: a GPU when there is one (and it is asked for),
else the CPU."""
from __future__ import annotations

import torch


def get_device(preference: str = "auto") -> torch.device:
    """``"auto"``: CUDA if available else CPU; ``"cpu"``; ``"cuda"`` (an error without a GPU)."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available")
    if preference not in ("cpu", "cuda") and not preference.startswith("cuda:"):
        raise ValueError(f"unknown device {preference!r}: use auto, cpu or cuda")
    return torch.device(preference)
