import os

import pytest
import torch

from metabolism.config import load_config

THREADS = max(1, 2 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
"""Torch threads a test: two, shared out among pytest-xdist workers (with two workers one each), so that a
split suite runs no more threads than the two cores it was tuned on."""


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)


@pytest.fixture
def small_cfg():
    """A small oscillatory system that trains in seconds."""
    return load_config(regime="oscillatory", seed=3, overrides=[
        "network.n_metabolites=12", "network.n_reactions=18", "simulation.n_frames=600",
        "training.steps=200", "training.lbfgs_steps=60", "training.batch_frames=128", "training.lbfgs_frames=300",
        "model.hidden=16", "evaluation.max_horizon=200", "evaluation.stats_steps=200", "evaluation.n_test_initial=2",
    ])
