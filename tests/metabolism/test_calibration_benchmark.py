"""The calibration benchmark's diagnostics (``benchmarks/metabolism_calibration.py``): ``start=truth`` hands
the refinement the true k in place of the integral fit's, and only while the block runs."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import metabolism_calibration as cal  # noqa: E402
from metabolism import fit as fit_module  # noqa: E402


def test_start_truth_replaces_the_refinements_start_k_and_restores_it(monkeypatch):
    seen = []
    monkeypatch.setattr(fit_module, "_refine", lambda stoich, data, cfg, segment, k, *rest: seen.append(k))
    original = fit_module._refine
    net = SimpleNamespace(k=np.array([0.5, 2.0, 3.0]))
    with cal.true_function(net, "start"):
        fit_module._refine("stoich", "data", "cfg", 10, np.ones(3), "functions")
    np.testing.assert_array_equal(seen[0], net.k)
    assert fit_module._refine is original
    fit_module._refine("stoich", "data", "cfg", 10, np.ones(3), "functions")
    np.testing.assert_array_equal(seen[1], np.ones(3))
