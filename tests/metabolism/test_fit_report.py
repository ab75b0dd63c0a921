"""The measurements section's sentences and tables follow the benchmark's numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd

from metabolism import fit_report as fr


def _rows(gnn_r2: float, coverage: float, oracle_r2: float = 0.999, fd_r2: float = 0.95,
          gnn: str = fr.DEFAULT, oracle: str = fr.ORACLE) -> pd.DataFrame:
    rows = []
    for seed in (1, 2):
        for dt, flagged in ((0.1, 1), (1.0, 4)):
            for est, r2 in ((gnn, gnn_r2), (oracle, oracle_r2), ("fd-ls", fd_r2), ("spline-ls", 0.5)):
                rows.append({"network": "ecoli_core", "seed": seed, "dt": dt, "noise": 0.01, "estimator": est,
                             "r2_determined": r2, "r2_all": r2, "flagged": flagged, "outliers_determined": 0,
                             "coverage_determined": coverage, "median_abs_error": 0.01, "seconds": 10.0,
                             "n_reactions": 110, "error": None})
    return pd.DataFrame(rows)


def test_sentences_are_computed_from_the_results():
    good = fr.sentences(_rows(0.995, 0.94))
    assert good[0].startswith("The GNN (the default fit: integral objective, then trajectory matching) meets the "
                              "accuracy target") and "in 2 of 2 conditions." in good[0]
    assert "within 0.02 of the mass-action oracle, refined by trajectory matching, in 2 of 2" in good[1]
    assert "94% to 94%" in good[2] and "met in 2 of 2" in good[2]
    assert "in 1 of 1 network and noise conditions" in good[3]
    bad = fr.sentences(_rows(0.90, 0.5))
    assert "in 0 of 2 conditions; it falls short in ecoli core sampled every 0.1 at 1% noise (R² 0.900)" in bad[0]
    assert "in 0 of 2" in bad[1] and "better derivative-based least squares in 0 of 2" in bad[1]
    assert "met in 0 of 2" in bad[2]


def test_targets_and_recovery_table_use_every_seed():
    rows = _rows(0.995, 0.94)
    rows.loc[(rows["seed"] == 2) & (rows["estimator"] == fr.DEFAULT), "r2_determined"] = 0.985
    t = fr.targets(rows)
    assert list(t["seeds"]) == [2, 2]
    assert abs(t["r2"].iloc[0] - 0.99) < 1e-12
    rows = _rows(0.995, 0.94, gnn="gnn", oracle="mass-action")
    rows.loc[(rows["seed"] == 2) & (rows["estimator"] == "gnn"), "r2_determined"] = 0.985
    table = fr.recovery_table(rows)
    assert table["GNN"].iloc[0].startswith("0.990 ± 0.007")
    assert fr.sentences(pd.DataFrame(columns=rows.columns)) == ["No benchmark results are committed yet."]


def test_the_speed_ratio_is_of_whole_cpu_costs_on_the_same_data():
    rows = _rows(0.99, 0.9)
    cond = {"network": "ecoli_core", "seed": 1, "dt": 0.1, "noise": 0.01, "error": None, "flagged": 0,
            "outliers_determined": 0, "n_reactions": 110}
    pypesto = {**cond, "estimator": "pypesto", "r2_all": 0.8, "r2_determined": 0.8, "seconds": 900.0,
               "cpu_seconds": 800.0, "starts": 3, "starts_asked": 10}
    rows["cpu_seconds"], rows["resumed"] = 100.0, False
    mask = (rows["seed"] == 1) & (rows["dt"] == 0.1) & (rows["estimator"] == fr.DEFAULT)
    with_peer = pd.concat([rows, pd.DataFrame([pypesto])], ignore_index=True)
    c = fr.speed_ratio(with_peer)["conditions"][0]
    assert c["ratio"] == 8.0 and c["starts"] == 3
    assert "3 multi-start local fits of the 10 asked" in fr.speed_sentence(with_peer)
    rows.loc[mask, "resumed"] = True  # a fit resumed across processes has no whole cost: no ratio from it
    assert fr.speed_ratio(pd.concat([rows, pd.DataFrame([pypesto])], ignore_index=True)) is None
    rows["cpu_whole"] = True  # unless the benchmark added the earlier processes' CPU seconds
    assert fr.speed_ratio(pd.concat([rows, pd.DataFrame([pypesto])], ignore_index=True))["conditions"][0]["ratio"] \
        == 8.0


def test_reading_no_result_file_is_an_error_that_names_them(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="none.json"):
        fr.load_rows(tmp_path / "none.json")


def test_targets_compare_on_the_seeds_the_gnn_ran():
    rows = _rows(0.995, 0.94)
    rows = rows[~((rows["seed"] == 2) & (rows["estimator"] == fr.DEFAULT))].copy()
    rows.loc[(rows["seed"] == 2) & (rows["estimator"] == fr.ORACLE), "r2_determined"] = 0.5
    t = fr.targets(rows)
    assert list(t["seeds"]) == [1, 1] and list(t["oracle_r2"]) == [0.999, 0.999]


def test_the_scale_sentence_counts_in_integers_and_names_each_power_law():
    frame = pd.DataFrame([{"n_metabolites": 1799, "n_reactions": 2817, "gnn_step_s": 2.5, "mass_action_s": 80.0,
                           "gnn_fit_s_extrapolated": 8000.0, "peak_mb": 2900.0}])
    laws = {k: {"exponent": e} for k, e in (("gnn_step_s", 1.3), ("mass_action_s", 2.5), ("peak_mb", 0.2))}
    text = fr.scale_sentence(frame, laws)
    assert "(1,799 metabolites, 2,817 reactions)" in text and "least squares as (reactions)^2.50" in text


def test_the_refinement_is_compared_on_the_seeds_it_ran():
    plain = _rows(0.98, 0.5, oracle_r2=0.98, gnn="gnn", oracle="mass-action")
    plain["cpu_seconds"], plain["resumed"] = 2.0, False
    refined = plain[plain["seed"] == 1].copy()
    refined = refined[refined["estimator"].isin(["gnn", "mass-action"])]
    refined["estimator"] = refined["estimator"].map({"gnn": fr.DEFAULT, "mass-action": fr.ORACLE})
    refined["cpu_seconds"], refined["cpu_whole"] = 200.0, True
    refined["r2_determined"] = [0.995, 0.97, 0.99, 0.999]  # seed 1: GNN and oracle at dt 0.1, then at 1.0
    refined["coverage_determined"] = 0.95
    both = pd.concat([plain, refined], ignore_index=True)
    t = fr.refinement_table(both)
    assert list(t["seeds"]) == ["1", "1"] and list(t["gnn_seeds"]) == [1, 1]
    assert list(t["gnn_r2_integral"]) == [0.98, 0.98] and list(t["gnn_r2"]) == [0.995, 0.99]
    assert list(t["mass-action_r2"]) == [0.97, 0.999] and list(t["gnn_cpu_s"]) == [200.0, 200.0]
    shown = fr.refinement_display(t)
    assert list(shown["gnn R²"]) == ["0.980 → 0.995", "0.980 → 0.990"] and list(shown["seeds"]) == ["1", "1"]
    assert list(shown["mass-action coverage"]) == ["50% → 95%"] * 2 and list(shown["GNN CPU (s)"]) == ["200"] * 2
    layout = fr.refinement_layout()
    assert layout["spanners"] == {"GNN": ["gnn R²", "gnn coverage"], "oracle": ["mass-action R²", "mass-action coverage"]}
    assert set(layout["labels"]) | {"network", "every", "noise (%)", "seeds", "GNN CPU (s)"} == set(shown.columns)
    s = fr.refinement_sentence(both)
    assert s == ("Refined by trajectory matching, the GNN is more accurate than on the integral objective alone in 2 "
                 "of 2 conditions, and its intervals cover the true k at 90–98% in 2 of 2 (on the integral objective "
                 "alone: 0). Refined by trajectory matching, the mass-action oracle is more accurate than on the "
                 "integral objective alone in 1 of 2 conditions, and its intervals cover the true k at 90–98% in 2 "
                 "of 2 (on the integral objective alone: 0).")
    assert fr.refinement_sentence(plain) == "No trajectory refinement has been run yet."


def test_the_example_figure_fits_the_text_column_whatever_the_number_of_estimators():
    rng = np.random.default_rng(0)
    k = 10 ** rng.uniform(-2, 1, 20)
    fit = {"k": k * 1.1, "lo": k, "hi": k * 1.2, "flagged": np.arange(20) == 3}
    for n, shown in ((1, 1), (3, 3), (4, 4)):
        fig = fr.example_figure({"k_true": k, "fits": {e: fit for e in ["gnn", "mass-action", fr.DEFAULT,
                                                                            fr.ORACLE][:n]}})
        assert fig.get_figwidth() <= 5.4 and sum(ax.get_visible() for ax in fig.axes) == shown


def test_coverage_is_judged_on_noisy_data_only():
    noisy = _rows(0.995, 0.94)
    clean = noisy.copy()
    clean["noise"], clean["coverage_determined"] = 0.0, 0.3  # intervals at the fit's numerical error
    t = fr.targets(pd.concat([noisy, clean], ignore_index=True))
    assert t.loc[t["noise"] == 0, "coverage_met"].isna().all() and t.loc[t["noise"] > 0, "coverage_met"].all()
    text = fr.sentences(pd.concat([noisy, clean], ignore_index=True))[2]
    assert text.startswith("With noise, its 95% intervals cover the true k in 94% to 94%") and "met in 2 of 2" in text


def test_the_gauges_are_compared_on_the_data_sets_where_both_ran():
    old = _rows(0.95, 0.5)  # rows from before the gauge was recorded: c_ref 1
    new = _rows(0.99, 0.93)
    new["c_ref"] = 3.4
    new = new[~((new["seed"] == 2) & (new["dt"] == 1.0))]  # one data set fitted at the old gauge only
    fixed_again = _rows(0.96, 0.6).assign(c_ref=1.0)  # the same data sets refitted at c_ref 1: not counted twice
    t = fr.gauge_table(pd.concat([old, new, fixed_again], ignore_index=True))
    assert len(t) == 3 and set(t["c_ref"]) == {3.4}
    assert (t["r2_determined_1"] == 0.95).all() and (t["r2_determined_data"] == 0.99).all()
    s = fr.gauge_sentence(t)
    assert "more accurate on 3 of the 3 data sets" in s and "mean 0.950 at c_ref = 1 and 0.990" in s
    assert "(c_ref 3.4)" in s  # one value is named once, not as a range from it to itself
    spread = t.assign(c_ref=[2.0, 3.4, 5.0])
    assert "(c_ref from 2 to 5)" in fr.gauge_sentence(spread)
    assert "90–98% in 3 of 3 (at c_ref = 1: 0)" in s
    new["r2_determined"] = 0.9
    assert "more accurate on 0 of the 3" in fr.gauge_sentence(fr.gauge_table(pd.concat([old, new])))
    assert fr.gauge_table(old).empty and "not yet been run at both gauges" in fr.gauge_sentence(fr.gauge_table(old))
    assert list(fr.gauge_display(t)["R²"])[0] == "0.9500 → 0.9900"


def test_the_gauge_and_node_degree_of_the_benchmarks_gnn_fits_are_counted():
    rows = _rows(0.99, 0.93)
    assert "4 GNN fits in the benchmark tables above, 4 were made at c_ref = 1 and 0 at" in fr.fit_count(rows)
    rows["c_ref"] = np.where(rows["seed"] == 2, 3.4, np.nan)
    assert "4 GNN fits in the benchmark tables above, 2 were made at c_ref = 1 and 2 at" in fr.fit_count(rows)
    curved = (rows["seed"] == 2) & (rows["dt"] == 1.0)
    rows["node_degree"] = np.where(curved, 3, np.nan)  # recorded by the benchmark; absent on older rows
    s = fr.fit_count(rows)
    assert ("2 were made at c_ref = 1, 1 at the data's scale with node corrections α + β c and 1 at the data's "
            "scale with the node terms' curvature up to degree 3") in s
    assert f"fits at the data's scale with {'node' if fr.default_node_degree() == 1 else 'the curvature'}" in s


def test_the_tables_score_each_data_set_at_the_default_gauge_where_it_was_fitted_there():
    old = _rows(0.95, 0.5)  # before the gauge was recorded: c_ref 1
    new = _rows(0.99, 0.93, gnn="gnn+refine-functions")
    new = new[(new["estimator"] == fr.DEFAULT) & (new["seed"] == 1)].assign(c_ref=3.4)
    failed = new.iloc[:1].assign(error="RuntimeError: diverged", r2_determined=np.nan)
    rows = fr.at_default(pd.concat([old, failed, new], ignore_index=True))
    assert len(rows) == len(old)  # one row per data set and estimator
    gnn = rows[rows["estimator"] == fr.DEFAULT].set_index("seed")
    assert (gnn.loc[1, "r2_determined"] == 0.99).all() and (gnn.loc[2, "r2_determined"] == 0.95).all()
    assert rows["error"].isna().all()  # a failed refit does not hide a fit that succeeded
    assert (rows.loc[rows["estimator"] == "fd-ls", "r2_determined"] == 0.95).all()
    assert "4 GNN fits in the benchmark tables above, 2 were made at c_ref = 1 and 2 at" in fr.fit_count(rows)


def test_the_tables_score_the_default_fit_at_its_default_node_degree_where_it_was_fitted_with_it():
    line = _rows(0.95, 0.6, gnn="gnn+refine-functions").assign(c_ref=3.4)
    curved = line[line["estimator"] == fr.DEFAULT].assign(r2_determined=0.98, node_degree=3)
    for first, second in ((line, curved), (curved, line)):  # whichever file comes first
        rows = fr.at_default(pd.concat([first, second], ignore_index=True))
        assert len(rows) == len(line)
        gnn = rows[rows["estimator"] == fr.DEFAULT]
        assert (gnn["r2_determined"] == (0.98 if fr.default_node_degree() == 3 else 0.95)).all()
    only_curved = fr.at_default(pd.concat([line[line["estimator"] != fr.DEFAULT], curved]))
    assert (only_curved.loc[only_curved["estimator"] == fr.DEFAULT, "r2_determined"] == 0.98).all()


def test_the_tables_score_a_refined_fit_at_its_default_first_stage_where_it_was_fitted_with_it():
    """Sparse samples (segment 10): the default first stage is 3 intervals, one stage the fit before it; dense
    ones (segment 104): 20 intervals."""
    sparse = _rows(0.6, 0.9, gnn="gnn+refine-functions").assign(c_ref=3.4, segment=10, first_segment=None)
    sparse.loc[sparse["dt"] == 0.1, ["segment", "first_segment"]] = (104, 20)
    refined = sparse["estimator"].isin([fr.DEFAULT, fr.ORACLE])
    staged = sparse[refined].assign(r2_determined=0.99, first_segment=3)
    staged.loc[staged["dt"] == 0.1, "first_segment"] = None
    rows = fr.at_default(pd.concat([sparse, staged], ignore_index=True))
    assert len(rows) == len(sparse)
    got = rows[rows["estimator"].isin([fr.DEFAULT, fr.ORACLE])]
    assert (got.loc[got["dt"] == 1.0, "r2_determined"] == 0.99).all()
    assert (got.loc[got["dt"] == 0.1, "first_segment"] == 20).all()
    assert (rows.loc[~rows["estimator"].isin([fr.DEFAULT, fr.ORACLE]), "r2_determined"] != 0.99).all()


def test_the_first_stage_is_compared_with_one_stage_on_sparse_samples_only():
    """Pairs of the same data set and refined estimator, one stage against the short first stage, where the
    segment is at most 20 intervals; dense data (segment 104) and the integral-only fits do not enter."""
    one = _rows(0.6, 0.5, gnn="gnn+refine-functions").assign(c_ref=3.4, node_degree=fr.default_node_degree(),
                                                           segment=10, first_segment=None)
    one.loc[one["dt"] == 0.1, ["segment", "first_segment"]] = (104, 20)
    two = one[one["estimator"].isin([fr.DEFAULT, fr.ORACLE])].assign(r2_determined=0.99, coverage_determined=0.95,
                                                                      flagged=2, first_segment=3)
    two.loc[two["estimator"] == fr.ORACLE, "r2_determined"] = 0.5
    table = fr.first_stage_table(pd.concat([one, two], ignore_index=True))
    assert len(table) == 4 and set(table["dt"]) == {1.0} and set(table["first_segment"]) == {3}
    assert sorted(table["estimator"]) == sorted([fr.DEFAULT, fr.DEFAULT, fr.ORACLE, fr.ORACLE])
    text = fr.first_stage_sentence(table)
    assert text.startswith("Where the samples are sparse (ecoli core sampled every 1: segments of 10 intervals), "
                           "a first stage on 3-interval segments")
    assert "the refined GNN is more accurate on 2 of 2 data sets" in text and "in 2 of 2 (in one stage: 0)" in text
    assert "the refined oracle is more accurate on 0 of 2 data sets (median R² 0.999 in one stage and 0.500" in text
    shown = fr.first_stage_display(table)
    assert list(shown["segments"]) == ["3, 10"] * 4 and shown["R²"].iloc[0] == "0.6000 → 0.9900"
    assert fr.first_stage_sentence(fr.first_stage_table(one)).startswith("No refinement has yet been run")
    assert fr.first_stage_count(one) == ("Of the refined fits on sparse samples in the tables above, 2 of the 2 GNN "
                                         "fits and 2 of the 2 oracle fits were made in one stage, before the first "
                                         "stage followed the segment.")
    assert fr.first_stage_count(fr.at_default(pd.concat([one, two]))) == (
        "All the refined fits on sparse samples in the tables above (2 GNN and 2 oracle) ran the first stage.")


def test_the_node_curvature_is_compared_with_the_default_fit_on_the_same_data_sets():
    line = _rows(0.95, 0.6).assign(c_ref=3.4, overrides=[["model.c_ref=auto"]] * 16)
    curved = _rows(0.98, 0.91)
    curved = curved[(curved["estimator"] == fr.DEFAULT) & (curved["seed"] == 1)].assign(
        c_ref=3.4, overrides=[["model.c_ref=auto", "refine.node_degree=3"]] * 2)
    t = fr.curvature_table(pd.concat([curved, line, line], ignore_index=True))  # a data set's first row of each
    assert len(t) == 2 and set(t["degree"]) == {3} and set(t["seed"]) == {1}
    assert (t["r2_determined_line"] == 0.95).all() and (t["r2_determined_curved"] == 0.98).all()
    s = fr.curvature_sentence(t)
    assert "up to degree 3" in s and "more accurate on 2 of the 2 data sets" in s
    assert "median 0.950 with the line and 0.980 with the curvature" in s and "90–98% in 2 of 2 (with the line: 0)" in s
    failed = pd.concat([t, t.iloc[:1].assign(seed=9, r2_determined_line=-50.0, r2_determined_curved=-60.0)])
    assert "median 0.950 with the line and 0.980 with the curvature" in fr.curvature_sentence(failed)
    assert list(fr.curvature_display(t)["coverage"]) == ["60% → 91%"] * 2
    recorded = curved.assign(overrides=[["model.c_ref=auto"]] * 2, node_degree=3)  # the degree as recorded
    assert fr.curvature_table(pd.concat([recorded, line])).equals(t)
    assert "not yet been run" in fr.curvature_sentence(fr.curvature_table(line))
    at_one = line.assign(c_ref=1.0)  # the line fitted at another gauge only: no comparison
    assert fr.curvature_table(pd.concat([at_one, curved])).empty
