import json

import numpy as np
import pytest

from metabolism import pipeline
from metabolism.cli import main
from metabolism.train import CheckpointMismatch

pytestmark = pytest.mark.integration


def test_small_regime_recovers_rate_constants(small_cfg, tmp_path):
    metrics = pipeline.run(small_cfg, tmp_path, progress=False)
    rc = metrics["rate_constants"]
    assert rc["r2_log_k"] > 0.95, rc
    assert rc["n_scored"] == small_cfg.network.n_reactions


def test_cli_writes_the_documented_files(small_cfg, tmp_path, capsys):
    cfg_path = tmp_path / "small.yaml"
    from metabolism.config import dump_config
    cfg_path.write_text(dump_config(small_cfg))
    out = tmp_path / "run"
    assert main(["run", "--config", str(cfg_path), "--seed", "5", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for section, keys in {
        "rate_constants": ["r2_log_k", "slope", "n_outliers", "n_scored"],
        "homeostasis": ["lambda_rel_error", "baseline_abs_error"],
        "substrate_function": ["max_rel_error"],
        "rollout": ["horizon_steps", "r2", "pearson", "stats_rel_error"],
        "embedding": ["cluster_accuracy"],
        "timing": ["simulate", "train", "evaluate"],
    }.items():
        assert set(keys) <= set(metrics[section]), section
    assert metrics["device"] in ("cpu", "cuda") and metrics["seed"] == 5
    assert len(metrics["homeostasis"]["lambda_rel_error"]) == small_cfg.network.n_types
    system = np.load(out / "system.npz")
    assert {"R", "P", "S", "k", "lambda", "baseline", "types", "dt", "c", "dcdt"} <= set(system.files)
    assert system["c"].shape == system["dcdt"].shape == (small_cfg.simulation.n_frames, small_cfg.network.n_metabolites)
    learned = np.load(out / "learned.npz")
    assert learned["k"].shape == system["k"].shape and learned["embedding"].shape[0] == system["c"].shape[1]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"


def test_training_resumes_and_refuses_a_foreign_checkpoint(small_cfg, tmp_path):
    import torch

    from metabolism.train import TrainingData, train

    cfg = small_cfg.model_copy(deep=True)
    cfg.training.lbfgs_steps = 0
    cfg.training.checkpoint_every = 100
    pipeline.simulate_run(cfg, tmp_path)
    pipeline.train_run(cfg, tmp_path, progress=False)
    k_straight = np.load(tmp_path / "learned.npz")["k"]
    (tmp_path / "checkpoint.pt").unlink()

    net, z = pipeline.load_system(tmp_path)
    model = pipeline.build_model(cfg, net, z["c"])
    data = TrainingData.from_arrays(z["c"], z["dcdt"], float(z["dt"]), torch.device("cpu"))
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after(train, model, data, cfg, tmp_path / "checkpoint.pt", steps=150)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 100
    pipeline.train_run(cfg, tmp_path, progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "learned.npz")["k"], k_straight, rtol=1e-9)

    other = cfg.model_copy(deep=True)
    other.training.lr = 0.123
    with pytest.raises(CheckpointMismatch, match="another configuration"):
        pipeline.train_run(other, tmp_path, progress=False)


def _interrupt_after(train, model, data, cfg, checkpoint, steps):
    """Run `train` and raise KeyboardInterrupt once `steps` optimisation steps have happened."""
    import torch
    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > steps:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    torch.optim.AdamW.step = step
    try:
        train(model, data, cfg, checkpoint=checkpoint, progress=False)
    finally:
        torch.optim.AdamW.step = original


def test_bad_input_is_named_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", "--regime", "oscillatory", "--set", "network.n_metabolites=-4", "--out", str(out)]) == 2
    assert "network.n_metabolites" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert main(["simulate", "--regime", "oscillatory", "--set", "network.max_substrates=0", "--out", str(out)]) == 2
    assert "network.max_substrates" in capsys.readouterr().err
    assert main(["run", "--regime", "oscillatory", "--set", "training.bogus=1", "--out", str(out)]) == 2
    assert "training.bogus: unknown key" in capsys.readouterr().err


def test_the_rollout_loss_vanishes_on_the_models_own_trajectory_and_has_a_gradient(small_cfg):
    import torch

    from metabolism.network import generate_network
    from metabolism.simulate import TrueRHS, simulate
    from metabolism.train import TrainingData, _rollout_loss

    net = generate_network(small_cfg.network, small_cfg.seed)
    c0 = np.random.default_rng(0).uniform(1, 2, (2, net.n_metabolites))
    z = simulate(net, c0, 20, 0.05, substeps=1)
    data = TrainingData.from_arrays(z.c, z.dcdt, 0.05, torch.device("cpu"))
    rhs = TrueRHS(net)
    loss = _rollout_loss(rhs, data, 3, 4, torch.Generator().manual_seed(0))
    assert float(loss) < 1e-20  # the same RK4 steps as the simulation
    scale = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    loss = _rollout_loss(lambda c: scale * rhs(c), data, 3, 4, torch.Generator().manual_seed(0))
    loss.backward()
    assert float(loss) > 0 and abs(float(scale.grad)) > 0
