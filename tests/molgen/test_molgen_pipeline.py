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
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 4 and len(fig.legends) == 1
    assert not fig.axes[0].get_legend() and not fig.axes[1].get_legend()
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
DERIVED = ["data.atom_features=[type, charge]", "data.max_feat_num=7", "data.derived_features=[num_hs, ring]"]


@pytest.mark.parametrize("config, overrides", [
    ("tiny", []),
    ("tiny_feat", []),
    ("tiny_can", ["model.can.ring_features=false"]),
    ("tiny_can", ["model.can.ring_features=false", *FEAT]),
    ("tiny_can", FEAT),
    ("tiny_can", [*FEAT, "sampler.decoder=valence"]),
    ("tiny", DERIVED),
    ("tiny_can", DERIVED),
], ids=["gdss", "gdss_feat", "can", "can_feat", "can_feat_ring", "can_feat_ring_valence", "gdss_derived",
        "can_derived"])
def test_every_ablation_variant_trains_samples_and_evaluates(tmp_path, config, overrides):
    r = pipeline.run(config, tmp_path / "run", [*overrides, "train.num_epochs=1"], n_samples=8, num_steps=4,
                     progress=False)
    assert r["epochs"] == 1 and r["n_samples"] == 8 and r["fcd"] == r["fcd"]
    assert 0 <= r["seconds_training_cpu"] and figures.metrics_table([tmp_path / "run"])["training CPU (min)"].notna().all()
    sampling = json.loads((tmp_path / "run" / "samples.smi.json").read_text())
    assert ("feature_consistency" in sampling) == (config == "tiny_feat" or FEAT[0] in overrides
                                                   or DERIVED[0] in overrides)
    assert ("decoding" in sampling) == ("sampler.decoder=valence" in overrides)
    assert sampling.get("derived_features", []) == (["num_hs", "ring"] if DERIVED[0] in overrides else [])


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
    assert "not equal time" not in text and "topology helps" in text and "(wall time)" in text
    cpu = table.assign(**{"training CPU (min)": [11.4, 11.4, 11.5, 11.5]}).to_dict(orient="records")
    text = figures.verdict({"table": cpu}, budget="time")
    assert "(CPU time of one thread): GDSS trained 70 epochs in 11.4 min, `can` 15 in 11.5 min" in text
    partial = table.assign(**{"training CPU (min)": [11.4, 11.4, float("nan"), float("nan")]})
    assert "(wall time)" in figures.verdict({"table": partial.to_dict(orient="records")}, budget="time")
    older_gdss = table.assign(**{"training CPU (min)": [float("nan"), float("nan"), 10.5, 10.5]})
    text = figures.verdict({"table": older_gdss.to_dict(orient="records")}, budget="time")
    assert ("GDSS trained 70 epochs in 11.2 min of wall time (its runs recorded no CPU time), `can` 15 in 10.5 min "
            "of CPU time of one thread (11.0 min of wall time") in text
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
    assert "GDSS runs 60 epochs and reaches FCD 4.00" in text and "Sampling takes 5.0x" in text
    assert "No gdss run at equal time" in figures.cost_explanation({"table": by_epochs}, {"table": []})


def _budgets(can_fcd: float, timed_gdss_fcd: float, spread: float = 0.1):
    by_epochs = [{"variant": v, "seed": s, "epochs": 15, "fcd": f + spread * (s - 1.5), "training (min)": t,
                  "sampling (s)": p}
                 for v, f, t, p in [("gdss", 16.0, 3.0, 60.0), ("can", can_fcd, 12.0, 240.0)] for s in (1, 2)]
    by_time = [{"variant": "gdss", "seed": s, "epochs": 60, "fcd": timed_gdss_fcd, "training (min)": 12.0,
                "sampling (s)": 999.0} for s in (1, 2)]
    return {"table": by_epochs}, {"table": by_time}


def test_cost_explanation_states_what_the_numbers_say():
    """The conclusions of the sentence follow its inputs: the per-epoch verdict, the equal-time verdict and the
    sampling ratio (from the equal-epochs runs, as in the verdict, not from the timed runs) all change with them."""
    helps = figures.cost_explanation(*_budgets(can_fcd=6.0, timed_gdss_fcd=4.0))
    assert "per training epoch the complex is worth having" in helps
    assert "lower than `can`'s 6.00: at this budget the extra epochs are worth more than the topology" in helps
    assert "Sampling takes 4.0x" in helps
    timed_worse = figures.cost_explanation(*_budgets(can_fcd=6.0, timed_gdss_fcd=7.5))
    assert "still not below `can`'s 6.00: at this budget the topology is worth its cost" in timed_worse
    within = figures.cost_explanation(*_budgets(can_fcd=15.9, timed_gdss_fcd=4.0, spread=2.0))
    assert "ahead, but by less than the seed spread" in within
    worse = figures.cost_explanation(*_budgets(can_fcd=18.0, timed_gdss_fcd=4.0))
    assert "even per training epoch the complex does not help" in worse
    assert len({helps, timed_worse, within, worse}) == 4


def test_verdict_follows_its_numbers():
    def rows(can_fcd: float, can_nspdk: float):
        return [{"variant": v, "seed": s, "fcd": f + 0.1 * (s - 1.5), "nspdk": n + 0.0002 * (s - 1.5), "epochs": 10,
                 "training (min)": t, "sampling (s)": 10.0 * t}
                for v, f, n, t in [("gdss", 3.0, 0.010, 1.0), ("can", can_fcd, can_nspdk, 3.0)] for s in (1, 2)]
    helps = figures.verdict({"table": rows(1.0, 0.002)})
    assert "FCD 1.00 against 3.00 (lower)" in helps and "topology helps" in helps and "3.0x GDSS's training" in helps
    assert "GDSS is better on both" in figures.verdict({"table": rows(5.0, 0.02)})
    assert "evidence is mixed" in figures.verdict({"table": rows(1.0, 0.02)})


def test_tables_for_reading():
    table = pd.DataFrame({"run": ["gdss_s1", "gdss_s2", "can_s1", "can_s2"], "variant": ["gdss", "gdss", "can", "can"],
                          "epochs": [15] * 4, "samples": [10000] * 4, "fcd": [16.61, 16.75, 6.1, 6.3],
                          "nspdk": [0.0602, 0.0611, 0.018, 0.0178], "validity": [100.0] * 4,
                          "training (min)": [2.5, 2.4, 11.0, 11.8], "sampling (s)": [404.0, 410.0, 1530.0, 1600.0],
                          "device": ["cpu"] * 4, "commit": ["abc"] * 4})
    summary = figures.summary_display(table).set_index("quantity")
    assert list(summary.columns) == ["gdss", "can"] and summary.loc["seeds", "can"] == "2"
    assert summary.loc["FCD (lower is better)", "gdss"] == "16.680 ± 0.099"
    assert summary.loc["samples per run", "can"] == "10,000" and summary.loc["validity after correction (%)", "can"] == "100"
    shown = figures.compare_display(figures.compare(table, "gdss")).set_index("metric")
    assert shown.loc["FCD", "beyond the spread"] == "better" and shown.loc["FCD", "difference"] == "−10.48"
    runs = figures.runs_display(table).set_index("quantity")
    assert list(runs.columns) == list(table["run"]) and runs.loc["NSPDK MMD (lower is better)", "can_s2"] == "0.0178"
    prov = figures.runs_provenance({"equal epochs": table})
    assert list(prov["budget"].unique()) == ["equal epochs"] and prov.loc[0, "run"] == "`gdss_s1`"
    stacked = figures.budgets_display({"short": table, "long": table[table["variant"] == "gdss"]})
    long = stacked[stacked["budget"] == "long"].set_index("quantity")
    assert (long["can"] == "–").all() and long.loc["seeds", "gdss"] == "2"  # not run at that budget: the mark
    assert stacked.notna().all().all()


def test_budget_answers_name_where_the_answer_changes():
    def runs(gdss: float, can: float) -> dict:
        return {"table": [{"variant": v, "seed": s, "epochs": 10, "fcd": f + 0.1 * s, "nspdk": 0.01}
                          for v, f in (("gdss", gdss), ("can", can)) for s in (1, 2, 3)]}

    text = figures.budget_answers({"11.4 CPU min": runs(4.0, 8.0), "60 CPU min": runs(3.0, 2.0)})
    assert "at 11.4 CPU min, `can` FCD 8.20 against GDSS's 4.20 (worse; 3 seeds)" in text
    assert "changes between 11.4 CPU min (worse) and 60 CPU min (better)" in text
    same = figures.budget_answers({"a": runs(4.0, 8.0), "b": runs(3.0, 6.0)})
    assert "the same at every budget" in same
    assert "not measured yet" in figures.budget_answers({"a": runs(4.0, 8.0), "b": {"table": []}})
    assert "No budget" in figures.budget_answers({})
    fewer = runs(4.0, 8.0)
    fewer["table"] += [{"variant": "can_feat", "seed": 1, "epochs": 10, "fcd": 20.0, "nspdk": 0.02}]
    assert "(worse; 3 seeds)" in figures.budget_answers({"a": fewer})  # the pair's seeds, not the fewest
    one = {"table": [r for r in runs(4.0, 8.0)["table"] if r["seed"] == 1]}
    flipped = {"table": [r for r in runs(3.0, 2.0)["table"] if r["seed"] == 1]}
    text = figures.budget_answers({"a": one, "b": flipped})
    assert "(worse on one seed)" in text
    assert "changes between a (worse on one seed) and b (better on one seed)" in text
