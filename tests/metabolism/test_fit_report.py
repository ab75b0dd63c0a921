"""The measurements section's sentences and tables follow the benchmark's numbers."""
from __future__ import annotations

import pandas as pd

from metabolism import fit_report as fr


def _rows(gnn_r2: float, coverage: float, oracle_r2: float = 0.999, fd_r2: float = 0.95) -> pd.DataFrame:
    rows = []
    for seed in (1, 2):
        for dt, flagged in ((0.1, 1), (1.0, 4)):
            for est, r2 in (("gnn", gnn_r2), ("mass-action", oracle_r2), ("fd-ls", fd_r2), ("spline-ls", 0.5)):
                rows.append({"network": "ecoli_core", "seed": seed, "dt": dt, "noise": 0.01, "estimator": est,
                             "r2_determined": r2, "r2_all": r2, "flagged": flagged, "outliers_determined": 0,
                             "coverage_determined": coverage, "median_abs_error": 0.01, "seconds": 10.0,
                             "n_reactions": 110, "error": None})
    return pd.DataFrame(rows)


def test_sentences_are_computed_from_the_results():
    good = fr.sentences(_rows(0.995, 0.94))
    assert good[0].startswith("The GNN meets the accuracy target") and "in 2 of 2 conditions." in good[0]
    assert "within 0.02 of the mass-action oracle on the same objective in 2 of 2" in good[1]
    assert "94% to 94%" in good[2] and "met in 2 of 2" in good[2]
    assert "in 1 of 1 network and noise conditions" in good[3]
    bad = fr.sentences(_rows(0.90, 0.5))
    assert "in 0 of 2 conditions; it falls short in ecoli_core sampled every 0.1 at 1% noise (R² 0.900)" in bad[0]
    assert "in 0 of 2" in bad[1] and "better derivative-based least squares in 0 of 2" in bad[1]
    assert "met in 0 of 2" in bad[2]


def test_targets_and_recovery_table_use_every_seed():
    rows = _rows(0.995, 0.94)
    rows.loc[(rows["seed"] == 2) & (rows["estimator"] == "gnn"), "r2_determined"] = 0.985
    t = fr.targets(rows)
    assert list(t["seeds"]) == [2, 2]
    assert abs(t["r2"].iloc[0] - 0.99) < 1e-12
    table = fr.recovery_table(rows)
    assert table["GNN"].iloc[0].startswith("0.990 ± 0.007")
    assert fr.sentences(pd.DataFrame(columns=rows.columns)) == ["No benchmark results are committed yet."]
