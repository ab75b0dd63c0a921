import pytest
import torch

from metabolism.config import load_config


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture
def small_cfg():
    """A small oscillatory system that trains in seconds."""
    return load_config(regime="oscillatory", seed=3, overrides=[
        "network.n_metabolites=12", "network.n_reactions=18", "simulation.n_frames=600",
        "training.steps=200", "training.lbfgs_steps=60", "training.batch_frames=128", "training.lbfgs_frames=300",
        "model.hidden=16", "evaluation.max_horizon=200", "evaluation.stats_steps=200", "evaluation.n_test_initial=2",
    ])
