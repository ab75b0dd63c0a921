"""The measurements benchmark's scoring (``benchmarks/metabolism_measurements.py``): a bias shared by every k,
which the absolute error and R^2 barely show, is reported with its sign over the determined reactions."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import metabolism_measurements as mm  # noqa: E402


def test_score_reports_a_shared_bias_with_its_sign_and_the_coverage():
    rng = np.random.default_rng(0)
    k_true = 10 ** rng.uniform(-2, 1, 50)
    k = k_true * 10 ** 0.04  # every k 10% too large
    flagged = np.zeros(50, bool)
    flagged[:5] = True
    k[:5] = k_true[:5] * 100  # flagged reactions are outside the determined scores
    s = mm.score(k_true, k, flagged, lo=k / 1.05, hi=k * 1.05)
    assert s["median_error_determined"] == pytest.approx(0.04)
    assert s["outliers_determined"] == 0 and s["outliers_all"] == 5 and s["flagged"] == 5
    assert s["coverage_determined"] == 0.0  # intervals around a biased k miss the truth
    low = mm.score(k_true, k_true / 2, np.zeros(50, bool))
    assert low["median_error_determined"] == pytest.approx(-np.log10(2))
    assert "coverage_determined" not in low
