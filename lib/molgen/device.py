"""Devices and seeds of a molecule run (the device itself is chosen in ``common.device``)."""
from __future__ import annotations

import torch

from common.device import get_device

__all__ = ["get_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
