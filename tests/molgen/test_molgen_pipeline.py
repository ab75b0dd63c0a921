"""The run pipeline (train -> sample -> evaluate, each stage resumed or skipped) and the page figures."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from molgen import figures, pipeline


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two seeds of the tiny config, 24 samples each, 5 sampling steps (a smoke run, not a result)."""
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        d = root / f"tiny_s{seed}"
        pipeline.run("tiny", d, [f"seed={seed}", "train.num_epochs=1"], n_samples=24, num_steps=5, progress=False)
        dirs.append(d)
    return dirs


def test_run_writes_every_stage_with_provenance(tiny_runs):
    d = tiny_runs[0]
    r = pipeline.results(d)
    assert r["config"] == "tiny" and r["seed"] == 0 and r["epochs"] == 1
    assert r["n_samples"] == 24 and 0 <= r["validity_wo_correction"] <= r["validity"] <= 1
    assert r["sampling"]["steps"] == 5 and r["sampling"]["device"].startswith(("cpu", "cuda"))
    (session,) = r["training_sessions"]
    assert session["epochs"] == [0, 1] and session["commit"]
    assert not list(d.glob(".*.tmp")), "no temporary files may remain"


def test_done_stages_are_skipped_and_changed_ones_rerun(tiny_runs):
    d = tiny_runs[0]
    samples, metrics = d / pipeline.SAMPLES, d / pipeline.METRICS
    before = samples.stat().st_mtime_ns, metrics.stat().st_mtime_ns
    pipeline.run("tiny", d, ["seed=0", "train.num_epochs=1"], n_samples=24, num_steps=5, progress=False)
    assert (samples.stat().st_mtime_ns, metrics.stat().st_mtime_ns) == before
    meta = pipeline.sample_stage(d, 16, num_steps=5, progress=False)
    assert meta["n_sampled"] == 16 and json.loads((d / "samples.smi.json").read_text())["n_sampled"] == 16
    assert pipeline.evaluate_stage(d, "qm9")["metrics"]["n_samples"] == 16


def test_evaluate_without_samples_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the sample stage first"):
        pipeline.evaluate_stage(tmp_path, "qm9")


def test_tables_and_figures(tiny_runs):
    table = figures.metrics_table(tiny_runs)
    assert list(table["seed"]) == [0, 1] and set(figures.METRIC_COLUMNS) <= set(table.columns)
    assert table["validity"].between(0, 100).all()
    summary = figures.summary_table(table)
    assert summary.loc["tiny", "seeds"] == 2 and "±" in summary.loc["tiny", "fcd"]
    one = figures.summary_table(table.iloc[:1])
    assert "±" not in one.loc["tiny", "fcd"]
    fig = figures.loss_curves({d.name: d for d in tiny_runs})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    img = figures.molecule_grid(figures.sample_smiles(tiny_runs[0]), n=4, per_row=2)
    assert img.size[0] > 0
    assert isinstance(table, pd.DataFrame)


def test_compare_flags_only_differences_beyond_the_seed_spread():
    table = pd.DataFrame({"variant": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                          "fcd": [3.0, 3.1, 2.9, 1.0, 1.1, 0.9, 2.95, 3.3, 2.6],
                          "nspdk": [0.01] * 9})
    cmp = figures.compare(table, "a", metrics=("fcd",)).set_index("variant")
    assert cmp.loc["b", "better beyond spread"] and not cmp.loc["c", "better beyond spread"]
    assert cmp.loc["b", "difference"] == pytest.approx(-2.0)
    fig = figures.ablation_figure(table, metrics=("fcd", "nspdk"))
    assert len(fig.axes) == 2


def test_variant_column_strips_the_seed(tiny_runs):
    assert list(figures.metrics_table(tiny_runs)["variant"]) == ["tiny", "tiny"]


def test_first_seed_runs_picks_the_lowest_seed_of_each_variant():
    dirs = ["r/can_s44", "r/gdss_s43", "r/can_s42", "r/gdss_feat_s7", "r/gdss_s42", "r/plain"]
    got = figures.first_seed_runs(dirs)
    assert {k: v.name for k, v in got.items()} == {"can": "can_s42", "gdss": "gdss_s42", "gdss_feat": "gdss_feat_s7",
                                                   "plain": "plain"}
    assert list(got) == ["can", "gdss", "gdss_feat", "plain"]
    assert figures.split_run_name("can_feat_ring_s3") == ("can_feat_ring", 3)
    assert figures.split_run_name("can_feat_ring_sx") == ("can_feat_ring_sx", None)


FEAT = ["data.atom_features=[type, charge, aromatic, hybridization, num_hs, ring]", "data.max_feat_num=23"]


@pytest.mark.parametrize("config, overrides", [
    ("tiny", []),
    ("tiny_feat", []),
    ("tiny_can", ["model.can.ring_features=false"]),
    ("tiny_can", ["model.can.ring_features=false", *FEAT]),
    ("tiny_can", FEAT),
], ids=["gdss", "gdss_feat", "can", "can_feat", "can_feat_ring"])
def test_every_ablation_variant_trains_samples_and_evaluates(tmp_path, config, overrides):
    r = pipeline.run(config, tmp_path / "run", [*overrides, "train.num_epochs=1"], n_samples=8, num_steps=4,
                     progress=False)
    assert r["epochs"] == 1 and r["n_samples"] == 8 and r["fcd"] == r["fcd"]
    sampling = json.loads((tmp_path / "run" / "samples.smi.json").read_text())
    assert ("feature_consistency" in sampling) == (config == "tiny_feat" or FEAT[0] in overrides)


def test_verdict_reads_the_ablation_results():
    rows = [{"variant": v, "fcd": f, "nspdk": n, "epochs": 10}
            for v, f, n in [("gdss", 3.0, 0.010), ("gdss", 3.2, 0.011), ("can", 1.0, 0.002), ("can", 1.1, 0.003),
                            ("can_feat", 2.9, 0.012), ("can_feat", 3.3, 0.009)]]
    text = figures.verdict({"source": "committed", "table": rows})
    assert "`can`" in text and "topology helps" in text and "training time" not in text
    timed = [{**r, "training (min)": 4.0 if r["variant"].startswith("can") else 1.0,
              "sampling (s)": 80.0 if r["variant"].startswith("can") else 10.0} for r in rows]
    assert "4.0x GDSS's training time and 8.0x GDSS's sampling time" in figures.verdict({"table": timed})
    assert "2,000 samples per run" in figures.verdict({"table": [{**r, "samples": 2000} for r in rows]})
    assert "unknown" in figures.verdict({"source": "fresh", "table": rows[::2]})
    assert "no GDSS" in figures.verdict({"table": rows[2:]})


def test_equal_time_comparison_swaps_in_the_timed_runs():
    """At equal training time the wall-time-budget runs replace their variants' epoch-budget runs, and the
    verdict states the epochs and minutes each side had."""
    by_epochs = pd.DataFrame([{"variant": v, "seed": s, "epochs": 15, "fcd": f, "nspdk": 0.01 * f,
                               "training (min)": t, "sampling (s)": 10.0}
                              for v, f, t in [("gdss", 16.0, 2.5), ("can", 6.0, 11.0)] for s in (1, 2)])
    by_time = pd.DataFrame([{"variant": "gdss", "seed": s, "epochs": 70, "fcd": 9.0 + s, "nspdk": 0.09,
                             "training (min)": 11.2, "sampling (s)": 10.0} for s in (1, 2)])
    table = figures.equal_time_table(by_epochs, by_time)
    assert list(table["variant"]) == ["gdss", "gdss", "can", "can"]
    assert list(table.loc[table["variant"] == "gdss", "epochs"]) == [70, 70]
    text = figures.verdict({"source": "committed", "table": table.to_dict(orient="records")}, budget="time")
    assert "equal training time" in text and "GDSS trained 70 epochs in 11.2 min, `can` 15 in 11.0 min" in text
    assert "not equal time" not in text and "topology helps" in text
    by_time["fcd"], by_time["nspdk"] = [2.0, 2.2], [0.001, 0.0012]  # GDSS better beyond the spread
    table = figures.equal_time_table(by_epochs, by_time).to_dict(orient="records")
    assert "GDSS is better on both, beyond the seed spread" in figures.verdict({"table": table}, budget="time")
    cmp = figures.compare(pd.DataFrame(table), "gdss")
    assert cmp["worse beyond spread"].all() and not cmp["better beyond spread"].any()
    with pytest.raises(ValueError, match="budget"):
        figures.verdict({"table": []}, budget="samples")


def test_cost_explanation_relates_the_two_budgets():
    by_epochs = [{"variant": v, "seed": s, "epochs": 15, "fcd": f, "training (min)": t, "sampling (s)": p}
                 for v, f, t, p in [("gdss", 16.0, 3.0, 60.0), ("can", 6.0, 12.0, 300.0), ("can_feat", 9.0, 13.0, 1.0)]
                 for s in (1, 2)]
    by_time = [{"variant": "gdss", "seed": s, "epochs": 60, "fcd": 4.0, "training (min)": 12.0,
                "sampling (s)": 50.0} for s in (1, 2)]
    text = figures.cost_explanation({"table": by_epochs}, {"table": by_time})
    assert "`can` reaches FCD 6.00 against GDSS's 16.00" in text
    assert "costs 4.0x a GDSS epoch (48 s against 12 s)" in text
    assert "GDSS runs 60 epochs and reaches FCD 4.00" in text and "Sampling takes 6.0x" in text
    assert "No gdss run at equal time" in figures.cost_explanation({"table": by_epochs}, {"table": []})
