"""metabolism.explore.figures on an exploration run with a fake job (no training): replicates, figures, table."""
from __future__ import annotations

import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")

from metabolism.explore import ExploreSettings, Explorer, summarize  # noqa: E402
from metabolism.explore import figures as xfig  # noqa: E402
from metabolism.explore import replicate as xrep  # noqa: E402
from metabolism.explore.executor import Job, SerialExecutor  # noqa: E402

TINY = ["network.n_metabolites=12", "network.n_reactions=18", "simulation.n_frames=300", "training.steps=30"]
SPACE = [{"key": "training.lr", "kind": "float", "low": 1e-3, "high": 1e-2, "log": True},
         {"key": "model.hidden", "kind": "int", "low": 4, "high": 12}]


def fake_job(j: Job) -> dict:
    """Score = a smooth function of lr and hidden, shifted by the seed (a replicate effect)."""
    ov = dict(o.split("=", 1) for o in j.overrides)
    lr, hidden = float(ov.get("training.lr", 2e-3)), int(ov.get("model.hidden", 32))
    s = 1 - (math.log10(lr) + 2.5) ** 2 - 0.01 * (hidden - 6) ** 2 + 0.01 * (j.seed or 0)
    return {"iteration": j.iteration, "status": "ok", "score": s, "wall_time": 0.0, "error": None,
            "metrics": {"rate_constants": {"r2_log_k": s}, "device": "cpu", "commit": "abc1234"}}


@pytest.fixture
def explored(tmp_path):
    settings = ExploreSettings.for_regime("oscillatory", overrides=TINY, seed=3, space=SPACE, budget=7, slots=2)
    Explorer(tmp_path, settings, executor=SerialExecutor(fake_job), report=None).run()
    return tmp_path


def test_replicates_figures_table_and_results(explored):
    summary = summarize(explored)
    rep = xrep.replicate(explored, [1, 2, 3], executor=SerialExecutor(fake_job), report=None)
    assert rep["default"]["seeds"] == [1, 2, 3] and rep["default"]["n"] == 3
    assert rep["best"]["iteration"] == summary["best"]["iteration"] != 0
    c = rep["comparison"]
    assert c["improvement"] == pytest.approx(rep["best"]["mean"] - rep["default"]["mean"])
    assert c["exceeds_spread"] is (c["improvement"] > c["spread"])
    assert c["paired"]["n"] == 3 and c["paired"]["std"] == pytest.approx(0, abs=1e-9)  # the seed shift cancels
    assert json.loads((explored / "replicates.json").read_text())["seeds"] == [1, 2, 3]

    for make in (xfig.tree_figure, xfig.score_figure):
        fig = make(summary)
        assert fig.axes and "commit abc1234" in fig.texts[-1].get_text()
        matplotlib.pyplot.close(fig)
    table = xfig.replicate_table(rep)
    assert list(table.index) == ["default", "best", "best − default"]
    assert {"seed 1", "seed 3", "mean", "std", "n"} <= set(table.columns)
    assert table.loc["best", "n"] == 3
    assert xfig.memory_markdown(summary).startswith("#### Exploration memory")

    res = xfig.results(summary, rep, profile="test")
    json.dumps(res, allow_nan=False)
    assert res["proposer"] == "offline" and res["proposer_names"] == ["optuna-tpe+ucb"]
    assert res["best_score"] == summary["best"]["score"] and res["commit"] == ["abc1234"]
    assert "replicate seeds (1, 2, 3)" in res["comparison_text"]


def test_compare_says_when_the_spread_is_undefined():
    one = {"seeds": [1], "scores": [0.5], "mean": 0.5, "std": None, "n": 1}
    c = xrep.compare(one, dict(one, scores=[0.7], mean=0.7))
    assert c["improvement"] == pytest.approx(0.2) and c["exceeds_spread"] is None
    lower = xrep.compare(dict(one, std=0.01), dict(one, scores=[0.4], mean=0.4, std=0.01), maximize=False)
    assert lower["improvement"] == pytest.approx(0.1) and lower["exceeds_spread"] is True


def test_replicates_reuse_finished_runs_of_the_same_config(explored):
    """A replicate whose run directory holds the metrics of the same config (committed, or from an earlier
    execution) is read, not run again; metrics of another config are not trusted."""
    from metabolism.explore.loop import SETTINGS
    from metabolism.explore.space import build_config

    settings = ExploreSettings.model_validate_json((explored / SETTINGS).read_text())
    default = summarize(explored)["default"]
    digest = build_config(settings.base_data, default["overrides"], 1).digest()
    for seed, d in ((1, digest), (2, "another-config")):
        run = explored / xrep.REPLICATES / f"default_seed{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"config_digest": d, "rate_constants": {"r2_log_k": 0.123},
                                                      "device": "cpu", "commit": "def5678"}))
    ran = []

    def counting_job(j):
        ran.append((j.run_dir.rsplit("/", 1)[-1]))
        return fake_job(j)
    rep = xrep.replicate(explored, [1, 2], executor=SerialExecutor(counting_job), report=None)
    assert "default_seed1" not in ran and "default_seed2" in ran
    assert rep["default"]["scores"][0] == 0.123 and rep["default"]["scores"][1] != 0.123
    assert "def5678" in rep["default"]["commit"]
