"""Why intervals miss: per-reaction errors and intervals of one refined fit, and where they go wrong.

``fit`` fits one data set of ``metabolism_measurements`` (same networks, design and noise) with the default
estimator plus config overrides, starting from the GNN that the measurements benchmark trained on the same
data when its work directory holds it (so every variant refines the same GNN), and writes k, the true k,
the standard errors, the flags and the refinement's record to ``benchmarks/results/metabolism_calibration/``.
``report`` prints, per written fit: R^2 of log10 k over the determined reactions, the median |delta log10 k|,
z = (ln k_hat - ln k_true) / sd (mean and sd: a calibrated fit has about 0 and 1), coverage of the 95%
intervals, z per reaction order, the correlation of z with the substrates' median log concentration, and
the final trajectory objective (a model that contains the truth reaches at most the oracle's).

A written fit that a later one with the same overrides would replace is kept by renaming its file with a
suffix (``NAME_both-stages.json``: the node curvature fitted in both refinement stages, before fdadc79); the
report shows the suffix.

``truth=node`` or ``truth=substrate`` among the overrides (not a config key: a diagnostic) hands the refinement
the GNN's tables with that function replaced by the true one (the homeostasis -lambda (c - baseline), or
log c^s), the other as learned: which of the two learned functions biases k. ``start=truth`` starts the
refinement at the true k instead of the integral fit's: a fit that stays there at a lower objective than
the default's was stopped short by its optimiser; one that drifts back to the default's k prefers it.

    python benchmarks/metabolism_calibration.py fit ecoli_core 901 0.1 0.1 [KEY=VALUE ...] [truth=node]
    python benchmarks/metabolism_calibration.py report
"""
from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from common.io import write_json  # noqa: E402
from common.provenance import device_name, git_commit  # noqa: E402
from metabolism.config import load_fit_config  # noqa: E402
from metabolism.evaluate import r2_identity  # noqa: E402
from metabolism import trajectory as tj  # noqa: E402
from metabolism import fit as fit_module  # noqa: E402
from metabolism.fit import fit_data  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "metabolism_calibration"
_spec = importlib.util.spec_from_file_location("measurements", ROOT / "benchmarks" / "metabolism_measurements.py")
mm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mm)


def problem(network: str, seed: int, dt: float, noise: float):
    net = mm.network(network, seed)
    d = mm.DESIGN[network]
    return net, mm.make_problem(net, d["n_experiments"], d["t_end"], dt, noise, seed=seed)


@contextmanager
def true_function(net, which: str | None) -> Iterator[None]:
    """While the block runs, the refinement's ``TabulatedGNN`` gets tables whose ``which`` function ("node" or
    "substrate") is the truth of ``net``, or ("start") the refinement starts at the true k; None: untouched."""
    if which is None:
        yield
        return
    if which == "start":
        refine = fit_module._refine

        def from_truth(stoich, data, cfg, segment, k, *args, **kwargs):
            return refine(stoich, data, cfg, segment, np.asarray(net.k, float), *args, **kwargs)

        fit_module._refine = from_truth
        try:
            yield
        finally:
            fit_module._refine = refine
        return
    if which not in ("node", "substrate"):
        raise SystemExit(f"truth={which}: node or substrate")
    build = tj.TabulatedGNN.__init__

    def init(self, tables, *args, **kwargs):
        tables = copy.copy(tables)
        if which == "node":
            c = np.linspace(0.0, tables.hi, tables.node.shape[-1])
            tables.node = -net.lam[:, None] * (c[None, :] - net.baseline[:, None])
        else:
            orders = np.unique(net.substrate_edges()[2])
            tables.sub = orders[:, None] * np.linspace(tables.log_lo, tables.log_hi, tables.sub.shape[-1])[None, :]
        build(self, tables, *args, **kwargs)

    tj.TabulatedGNN.__init__ = init
    try:
        yield
    finally:
        tj.TabulatedGNN.__init__ = build


def fit(network: str, seed: int, dt: float, noise: float, overrides: list[str]) -> Path:
    net, pb = problem(network, seed, dt, noise)
    truth = next((o.partition("=")[2] for o in overrides if o.startswith("truth=")), None)
    if "start=truth" in overrides:
        truth = "start"
    name = "-".join([network, str(seed), str(dt), str(noise), "_".join(overrides).replace("=", "-") or "default"])
    work = Path("/tmp/metabolism_calibration") / name
    trained = Path("/tmp/metabolism_measurements") / f"{network}-{seed}-{dt}-{noise}-gnn-model.c_ref=auto"
    work.mkdir(parents=True, exist_ok=True)
    if (trained / "checkpoint.pt").exists() and not (work / "checkpoint.pt").exists():
        shutil.copy(trained / "checkpoint.pt", work / "checkpoint.pt")
    base = ["estimator=gnn", "refine.enabled=true", "refine.functions=true", "model.c_ref=auto"]
    config = load_fit_config(overrides=[*base, *(o for o in overrides if not o.startswith(("truth=", "start=")))])
    with true_function(net, truth):
        res = fit_data(net, pb.data, config, out=work, progress=False)
    refine = res.report["refine"]
    out = OUT / f"{name}.json"
    write_json(out, {"network": network, "seed": seed, "dt": dt, "noise": noise, "overrides": overrides,
                     "k_true": net.k.tolist(), "k": res.k.tolist(), "se": res.intervals.se.tolist(),
                     "lo": res.intervals.lo.tolist(), "hi": res.intervals.hi.tolist(),
                     "flagged": res.intervals.flagged.tolist(),
                     "report_refine": {k: v for k, v in refine.items() if not isinstance(v, list)},
                     "device": device_name("cpu"), "commit": git_commit(short=True)})
    return out


def report() -> None:
    for path in sorted(OUT.glob("*.json")):
        d = json.loads(path.read_text())
        net, pb = problem(d["network"], d["seed"], d["dt"], d["noise"])
        kt, k, se, fl = (np.asarray(d[key], float) for key in ("k_true", "k", "se", "flagged"))
        det = ~fl.astype(bool)
        z = (np.log(np.maximum(k, 1e-300)) - np.log(kt)) / (se / k)
        R = np.asarray(net.R)
        logc = np.log(np.clip(np.concatenate([e.c for e in pb.data.experiments]), 1e-12, None))
        sub = np.array([np.nanmedian(logc[:, R[:, j] > 0]) if (R[:, j] > 0).any() else np.nan
                        for j in range(kt.size)])
        order = R.sum(0)
        lt, lk = np.log10(kt), np.log10(np.maximum(k, 1e-12))
        by_order = ", ".join(f"{o:g}: {z[det & (order == o)].mean():+.2f}" for o in np.unique(order[det]))
        r = d["report_refine"]
        expected = "-".join([d["network"], str(d["seed"]), str(d["dt"]), str(d["noise"]),
                             "_".join(d["overrides"]).replace("=", "-") or "default"])
        label = f"{d['network']} {d['seed']} every {d['dt']:g} at {d['noise']:.0%}: " \
            + (" ".join(d["overrides"]) or "default")
        if path.stem != expected:  # a fit kept under its own name beside a later one with the same overrides
            label += f" ({path.stem[len(expected) + 1:]})"
        print(f"{label:70s} R2det {r2_identity(lt[det], lk[det]):.4f}  "
              f"median|err| {np.median(np.abs(lk - lt)):.3f}  z {z[det].mean():+.2f} / {z[det].std():.2f}  "
              f"coverage {np.mean(np.abs(z[det]) < 1.96):.1%}  objective {r['loss_end']:.7f} "
              f"({r['iterations']} it.)  corr(z, substrate log c) {np.corrcoef(z[det], sub[det])[0, 1]:+.2f}  "
              f"z by order {by_order}  [{d['commit']}]")


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "fit":
        print(fit(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6:]))
    elif sys.argv[1:] == ["report"]:
        report()
    else:
        raise SystemExit(__doc__)
