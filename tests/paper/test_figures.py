"""metabolism.figures on a synthetic run directory: every figure and table is produced from the files alone."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import yaml

matplotlib.use("Agg")

from metabolism import figures  # noqa: E402


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n, m, T, G = 6, 5, 40, 20
    R = np.zeros((n, m))
    P = np.zeros((n, m))
    for j in range(m):
        R[j, j], P[(j + 1) % n, j] = 1, 1
    types = np.arange(n) % 2
    np.savez(tmp_path / "system.npz", R=R, P=P, S=P - R, k=np.full(m, 0.1), types=types, dt=0.1,
             c=rng.uniform(1, 9, (T, n)), dcdt=rng.normal(size=(T, n)), **{"lambda": np.full(n, 0.01)},
             baseline=np.full(n, 5.0))
    grid = np.linspace(0.5, 9, G)
    np.savez(tmp_path / "figures.npz", log_k_true=rng.uniform(-2, -1, m), log_k_learned=rng.uniform(-2, -1, m),
             sub_c=grid, sub_orders=np.array([1.0, 2.0]), sub_true=np.stack([grid, grid ** 2]),
             sub_learned=np.stack([grid, grid ** 2]) * 1.01, node_c=grid, node_true=-0.01 * (grid[None] - 5) + 0 * types[:, None],
             node_learned=np.zeros((n, G)), types=types, embedding=rng.normal(size=(n, 2)),
             rollout_true=rng.uniform(1, 9, (T, n)), rollout_learned=np.full((T, n), np.nan), rollout_dt=0.1,
             horizon_steps=10)
    metrics = {"seed": 7, "device": "cpu", "commit": "abc", "rate_constants": {"r2_log_k": 0.9, "slope": 1.0,
               "n_outliers": 0, "n_scored": m}, "homeostasis": {"lambda_rel_error": [0.1, 0.3],
               "baseline_abs_error": [0.2, 0.2]}, "rollout": {"r2": 0.5}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"regime": "toy", "seed": 7, "network": {"n_metabolites": n}}))
    return tmp_path


def test_every_figure_renders_from_a_run_directory(run_dir: Path):
    for make in (figures.network_figure, figures.trajectories_figure, figures.rate_constants_figure,
                 figures.substrate_function_figure, figures.homeostasis_figure, figures.embedding_figure,
                 figures.rollout_figure):
        fig = figures.stamp(make(run_dir), run_dir)
        assert fig.axes and "seed 7" in fig.texts[-1].get_text() and "commit abc" in fig.texts[-1].get_text()
        matplotlib.pyplot.close(fig)


def test_metrics_table_and_summary_average_over_seeds(run_dir: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    m = json.loads((run_dir / "metrics.json").read_text())
    m.update(seed=8, rate_constants=dict(m["rate_constants"], r2_log_k=0.7))
    (other / "metrics.json").write_text(json.dumps(m))
    table = figures.metrics_table([run_dir, other])
    assert list(table.columns) == ["seed 7", "seed 8", "mean", "std"]
    assert table.loc["R² of log₁₀ k", "mean"] == pytest.approx(0.8)
    assert table.loc["λ: rel. error, mean of types", "seed 7"] == pytest.approx(0.2)
    shown = figures.metrics_display(table).set_index("metric")
    assert list(shown.columns) == ["seed 7", "seed 8", "mean ± std"]
    assert shown.loc["R² of log₁₀ k", "seed 7"] == "0.900" and shown.loc["outliers (|Δ log₁₀ k| > 0.3)", "seed 8"] == "0"
    assert shown.loc["R² of log₁₀ k", "mean ± std"] == "0.800 ± 0.141"
    summary = figures.summarize([run_dir, other])
    assert summary["rate_constants.r2_log_k"]["values"] == [0.9, 0.7]
    assert summary["embedding.cluster_accuracy"]["mean"] is None
    json.dumps(summary, allow_nan=False)


def test_system_summary_reads_sizes_and_activity_rank(run_dir: Path):
    s = figures.system_summary(run_dir)
    assert (s["n_metabolites"], s["n_reactions"], s["n_frames"]) == (6, 5, 40)
    assert 1 <= s["activity_rank"] <= 6


def _summary(sub: float, lam: float, acc: float) -> dict:
    entry = lambda v: {"mean": v, "std": 0.01, "values": [v, v]}  # noqa: E731
    return {"rate_constants.r2_log_k": entry(0.99), "substrate_function.max_rel_error": entry(sub),
            "homeostasis.lambda_rel_error": entry(lam), "homeostasis.baseline_abs_error": entry(0.1),
            "embedding.cluster_accuracy": entry(acc)}


def test_recovery_findings_follow_the_numbers():
    good = figures.recovery_findings(_summary(0.05, 0.04, 0.97), n_types=2)
    assert all(met for met, _ in good.values())
    assert "matches $c^s$" in good["substrate"][1] and "5.0 ± 1.0%" in good["substrate"][1]
    assert good["embedding"][1].startswith("The embeddings separate the metabolite types")
    bad = figures.recovery_findings(_summary(8.4, 0.62, 0.57), n_types=2)
    assert not any(met for met, _ in bad.values())
    assert "falls short of $c^s$" in bad["substrate"][1] and "840 ± 1%" in bad["substrate"][1]
    assert "does not reduce" in bad["homeostasis"][1] and "62 ± 1%" in bad["homeostasis"][1]
    assert "do not separate" in bad["embedding"][1] and "0.50 is what a random split of 2 types" in bad["embedding"][1]
    assert "only partly" in figures.recovery_findings(_summary(0.05, 0.04, 0.8), n_types=2)["embedding"][1]


def test_provenance_display_names_seed_size_device_and_commit(run_dir: Path):
    row = figures.provenance_display([run_dir]).iloc[0]
    assert (row["seed"], row["metabolites"], row["device"], row["commit"]) == ("7", "6", "cpu", "`abc`")
