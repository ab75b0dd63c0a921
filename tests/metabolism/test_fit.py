"""Fits to measured data: recovery on an imported network, the outputs, resuming, the command line."""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metabolism.cli import main
from metabolism.config import load_fit_config
from metabolism.evaluate import r2_identity
from metabolism.fit import fit, fit_data, resolve_gauge
from metabolism.importers import load_network
from metabolism.measurements import write_measurements
from metabolism.synthetic import draw_kinetics, make_problem

TOY = Path(__file__).parent / "fixtures" / "toy_network.csv"
FAST = ["training.steps=1000", "model.hidden=16", "uncertainty.bootstrap=8",
        "uncertainty.refit_steps=0", "refine.enabled=false"]


@pytest.fixture(scope="module")
def problem():
    stoich, report = load_network(TOY)
    net = draw_kinetics(stoich, seed=1)
    return stoich, report, net, make_problem(net, n_experiments=3, t_end=30, dt=0.1, seed=2)


@pytest.mark.integration
def test_gnn_recovers_k_from_clean_concentrations_of_an_imported_network(problem):
    stoich, report, net, pb = problem
    res = fit_data(stoich, pb.data, load_fit_config(overrides=FAST), progress=False, import_report=report)
    lt, ll = np.log10(net.k), np.log10(res.k)
    assert r2_identity(lt, ll) > 0.99
    assert np.abs(ll - lt).max() < 0.1
    assert (res.intervals.lo <= res.k).all() and (res.k <= res.intervals.hi).all()
    f = res.functions
    first = list(f["orders"]).index(1.0)
    inner = slice(20, -20)  # the grid spans the 1st-99th percentile; its ends are barely sampled
    np.testing.assert_allclose(f["substrate"][first][inner], f["grid"][inner], rtol=0.05)  # MLP_sub(c, 1) ~ c


def test_mass_action_fit_writes_its_outputs_keyed_by_the_networks_ids(problem, tmp_path):
    stoich, _, net, pb = problem
    data = tmp_path / "series.csv"
    write_measurements(data, pb.data)
    out = tmp_path / "fit"
    res = fit(TOY, data, out, overrides=["estimator=mass-action", "uncertainty.bootstrap=10", "refine.enabled=false"],
              progress=False)
    with open(out / "rate_constants.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["reaction"] for r in rows] == list(stoich.reactions)
    assert {r["direction"] for r in rows} == {"forward", "reverse"}
    by_id = {r["reaction"]: r for r in rows}
    assert by_id["R1__rev"]["source_reactions"] == "R1"
    for r in rows:
        assert float(r["k_low"]) <= float(r["k"]) <= float(r["k_high"])
    np.testing.assert_allclose([float(r["k"]) for r in rows], net.k, rtol=1e-3)
    report = json.loads((out / "report.json").read_text())
    assert report["network"]["counts"]["fixed_species"] == 1
    assert report["intervals"]["method"].startswith("residual bootstrap, 10 replicates")
    assert report["data"]["unit"].startswith("not stated")
    assert (out / "rate_constants.png").stat().st_size > 1000
    assert res.report["commit"]


def test_a_killed_fit_resumes_to_the_same_result(problem, tmp_path, monkeypatch):
    stoich, _, _, pb = problem
    cfg = load_fit_config(overrides=["training.steps=40", "training.lbfgs_steps=5", "training.checkpoint_every=10",
                                     "model.hidden=8", "uncertainty.bootstrap=0", "refine.enabled=false"])
    whole = fit_data(stoich, pb.data, cfg, out=tmp_path / "whole", progress=False)
    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        fit_data(stoich, pb.data, cfg, out=tmp_path / "killed", progress=False)
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    assert not (tmp_path / "killed" / "rate_constants.csv").exists()
    monkeypatch.setattr(torch.optim.AdamW, "step", original)
    first = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["cpu_seconds"]
    resumed = fit_data(stoich, pb.data, cfg, out=tmp_path / "killed", progress=False)
    np.testing.assert_allclose(resumed.k, whole.k, rtol=1e-10)
    assert resumed.report["training"]["cpu_seconds"] > first > 0  # the cost counts both processes
    assert resumed.report["gauge"] == {"c_ref": resolve_gauge(cfg, pb.data), "from": "geometric mean of the data"}


def test_command_line_fit_and_its_errors(problem, tmp_path, capsys):
    _, _, _, pb = problem
    data = tmp_path / "series.csv"
    write_measurements(data, pb.data)
    out = tmp_path / "cli"
    code = main(["fit", "--network", str(TOY), "--data", str(data), "--out", str(out), "--estimator",
                 "mass-action", "--set", "uncertainty.bootstrap=4", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reactions"] == 7 and summary["determined"] + summary["flagged"] == 7
    bad = tmp_path / "bad.csv"
    bad.write_text(data.read_text().replace("\nexp0,0.1,A,", "\nexp0,0.1,NADH,", 1))
    code = main(["fit", "--network", str(TOY), "--data", str(bad), "--out", str(tmp_path / "never"), "--quiet"])
    assert code == 2
    assert "field metabolite: 'NADH'" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    code = main(["fit", "--network", str(TOY), "--data", str(data), "--out", str(tmp_path / "x"),
                 "--set", "weakform.windw=3", "--quiet"])
    assert code == 2 and "weakform.windw: unknown key" in capsys.readouterr().err


def test_the_default_fit_refines_on_segments_of_four_time_scales(problem):
    from metabolism.fit import resolve_segment, time_scale

    _, _, _, pb = problem
    cfg = load_fit_config()
    assert cfg.refine.enabled and cfg.refine.functions and cfg.refine.segment == "auto"
    tau = time_scale(pb.data)
    assert resolve_segment(cfg, pb.data, tau) == round(4 * tau / 0.1)
    assert resolve_segment(cfg, pb.data, 1e6) == pb.data.experiments[0].t.size - 1  # at most one experiment
    assert resolve_segment(cfg, pb.data, 1e-6) == 4
    assert resolve_segment(load_fit_config(overrides=["refine.segment=7"]), pb.data, tau) == 7


def test_the_first_stage_is_20_intervals_or_a_quarter_of_a_shorter_segment():
    from metabolism.fit import resolve_first_segment

    auto = load_fit_config().refine
    assert auto.first_segment == "auto"
    assert [resolve_first_segment(auto, s) for s in (4, 10, 11, 20, 21, 263)] == [2, 3, 3, 5, 20, 20]
    assert resolve_first_segment(auto, 2) is None  # no shorter first stage: one stage
    fixed = load_fit_config(overrides=["refine.first_segment=20"]).refine
    assert [resolve_first_segment(fixed, s) for s in (10, 20, 21)] == [None, None, 20]
    assert resolve_first_segment(load_fit_config(overrides=["refine.first_segment=null"]).refine, 263) is None


def test_the_figures_draw_an_interval_the_data_leave_open(problem, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from metabolism.fit import FitResult
    from metabolism.fit_figures import fit_figures
    from metabolism.uncertainty import Intervals

    stoich, _, net, _ = problem
    k = net.k.copy()
    lo, hi = k / 2, k * 2
    lo[0], hi[0], hi[1] = 0.0, np.inf, np.nan  # a curvature with a near-null direction: exp(big) overflows
    flagged = np.zeros(k.size, bool)
    flagged[:2] = True
    I = Intervals(k=k, se=k, lo=lo, hi=hi, flagged=flagged, vif=np.ones(k.size), level=0.95, threshold=10.0)
    fig = fit_figures(FitResult(stoich=stoich, k=k, intervals=I, report={}))["rate_constants"]
    FigureCanvasAgg(fig).print_png(tmp_path / "k.png")  # raised OverflowError in the tick formatter before
    bottom, top = fig.axes[0].get_ylim()
    assert bottom == pytest.approx(k.min() / 1e3) and top == pytest.approx(k.max() * 1e3)


def test_the_gnns_gauge_sits_in_the_data_unless_set(problem):
    """auto: the geometric mean of the positive measured values (missing and zero values ignored), inside the
    data's range; a configured value is kept."""
    stoich, report, net, pb = problem
    data = copy.deepcopy(pb.data)
    data.experiments[0].c[0, 0] = np.nan
    data.experiments[0].c[1, 0] = 0.0
    values = np.concatenate([e.c.ravel() for e in data.experiments])
    values = values[np.isfinite(values) & (values > 0)]
    gauge = resolve_gauge(load_fit_config(), data)
    assert gauge == pytest.approx(np.exp(np.log(values).mean()), rel=1e-12)
    assert np.percentile(values, 5) < gauge < np.percentile(values, 95) and abs(gauge - 1.0) > 0.1
    assert resolve_gauge(load_fit_config(overrides=["model.c_ref=1"]), data) == 1.0
