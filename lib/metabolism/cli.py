"""Command line: `python -m metabolism run|simulate|train|evaluate|regimes|explore|fit`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, RunConfig, load_config, regime_names
from .network import NetworkError
from .simulate import SimulationError
from .train import CheckpointMismatch


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regime", help=f"a shipped regime: {', '.join(regime_names())}")
    p.add_argument("--config", type=Path, help="a YAML config file (layered on --regime if both are given)")
    p.add_argument("--seed", type=int, help="random seed (network, data, training)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value; repeatable")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_threads(p)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: beside another job on a 2-core machine two threads ran "
                   "training 10x slower than one, alone 1.6x faster; benchmarks/threads.py)")


def _set_threads(args: argparse.Namespace) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def _config(args: argparse.Namespace, phase: str) -> RunConfig:
    from .pipeline import config_of

    if args.regime is None and args.config is None:
        if phase != "simulate" and (args.out / "config.yaml").exists():
            return load_config(path=args.out / "config.yaml", overrides=args.overrides, seed=args.seed)
        raise ConfigError("give --regime NAME or --config FILE")
    cfg = load_config(args.regime, args.config, args.overrides, args.seed)
    if phase in ("train", "evaluate") and (args.out / "config.yaml").exists():
        saved = config_of(args.out)
        if saved.digest("network", "simulation") != cfg.digest("network", "simulation") or saved.seed != cfg.seed:
            raise ConfigError(f"{args.out} was simulated with another network/simulation config or seed; "
                              "re-run simulate or use a new --out")
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metabolism", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [("run", "simulate, train and evaluate"), ("simulate", "draw the network and simulate"),
                        ("train", "train the GNN on DIR/system.npz (resumes)"),
                        ("evaluate", "score DIR's trained model")]:
        _add_config_args(sub.add_parser(name, help=help_))
    sub.add_parser("regimes", help="list the shipped regimes")
    _add_explore_args(sub.add_parser("explore", help="closed-loop exploration of training settings (resumes)"))
    _add_fit_args(sub.add_parser("fit", help="rate constants from a network and measured concentrations (resumes)"))
    args = parser.parse_args(argv)
    _set_threads(args)
    if args.command == "fit":
        return _fit(args)
    if args.command == "regimes":
        print("\n".join(regime_names()))
        return 0
    if args.command == "explore":
        return _explore(args)
    from . import pipeline

    try:
        cfg = _config(args, args.command)
        progress = not args.quiet
        if args.command == "simulate":
            result = pipeline.simulate_run(cfg, args.out)
        elif args.command == "train":
            result = pipeline.train_run(cfg, args.out, progress=progress)
        elif args.command == "evaluate":
            result = pipeline.evaluate_run(cfg, args.out)
        else:
            result = pipeline.run(cfg, args.out, progress=progress)
    except (ConfigError, NetworkError, SimulationError, CheckpointMismatch, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(_summary(result), indent=2))
    return 0


def _summary(result: dict) -> dict:
    if "rate_constants" not in result:
        return result
    rc, ro = result["rate_constants"], result["rollout"]
    return {"r2_log_k": rc["r2_log_k"], "n_outliers": rc["n_outliers"], "rollout_r2": ro.get("r2"),
            "horizon_steps": ro["horizon_steps"], "homeostasis": result["homeostasis"]["lambda_rel_error"],
            "timing": result["timing"], "device": result["device"]}


def _add_explore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regime", help="base regime (omit to resume DIR with its stored settings)")
    p.add_argument("--config", type=Path, help="a YAML config file layered on --regime")
    p.add_argument("--seed", type=int, help="seed of every run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="base override applied to every run; repeatable")
    p.add_argument("--out", type=Path, required=True, help="exploration directory")
    p.add_argument("--budget", type=int, help="iterations in total, the default config included (default 20)")
    p.add_argument("--budget-seconds", type=float, help="start no new round after this many seconds")
    p.add_argument("--slots", type=int, help="configurations per round (default 4)")
    p.add_argument("--proposer", choices=["offline", "openai", "anthropic"],
                   help="offline = Optuna TPE + UCB tree (default); openai/anthropic read their settings from env")
    p.add_argument("--executor", choices=["local", "dask", "serial"], help="local process pool (default), Dask, "
                   "or serial in-process (debugging)")
    p.add_argument("--workers", type=int, help="local pool size (default: min(slots, cores))")
    p.add_argument("--dask-address", help="scheduler address (default with --executor dask: a LocalCluster)")
    p.add_argument("--jobqueue", type=Path, help="YAML {kind: SLURMCluster, kwargs: {...}, jobs: N} for "
                   "--executor dask with dask-jobqueue installed")
    p.add_argument("--threads-per-job", type=int, help="torch threads of each run (default 1)")
    p.add_argument("--job-timeout", type=float, help="seconds after which a run is stopped and recorded as failed")
    p.add_argument("--score", dest="score_key", help="dotted metrics key to optimise (default rate_constants.r2_log_k)")
    p.add_argument("--minimize", action="store_true", default=None, help="lower score is better")
    p.add_argument("--ucb-c", type=float, help="UCB exploration constant (default 0.5)")
    p.add_argument("--space", type=Path, help="YAML list of whitelist entries {key, kind, low, high, log, choices}")
    p.add_argument("--explore-seed", type=int, help="seed of the offline proposer")
    p.add_argument("--summary", action="store_true", help="print the summary of DIR as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no per-iteration lines")


def _explore(args: argparse.Namespace) -> int:
    import yaml

    from .explore import ExploreSettings, Explorer, summarize

    if args.summary:
        print(json.dumps(summarize(args.out), indent=2, default=str))
        return 0
    updates = {k: v for k, v in {
        "budget": args.budget, "budget_seconds": args.budget_seconds, "slots": args.slots,
        "proposer": args.proposer, "executor": args.executor, "workers": args.workers,
        "dask_address": args.dask_address, "ucb_c": args.ucb_c, "explore_seed": args.explore_seed,
        "threads_per_job": args.threads_per_job, "job_timeout": args.job_timeout}.items()
        if v is not None}
    identity = {k: v for k, v in {"score_key": args.score_key,
                                   "maximize": False if args.minimize else None}.items() if v is not None}
    try:
        if args.jobqueue is not None:
            updates["jobqueue"] = yaml.safe_load(args.jobqueue.read_text())
        if args.space is not None:
            specs = yaml.safe_load(args.space.read_text())
            identity["space"] = specs.get("params") if isinstance(specs, dict) else specs
        if args.regime is None and args.config is None:
            if args.overrides or args.seed is not None or identity:
                raise ConfigError("--set/--seed/--score/--minimize/--space need --regime or --config "
                                  "(they fix a new exploration)")
            settings = None
        else:
            settings = ExploreSettings.for_regime(args.regime, args.config, args.overrides, args.seed,
                                                  **identity, **updates)
        explorer = Explorer(args.out, settings, updates=updates, report=None if args.quiet else print)
        result = explorer.run()
    except KeyboardInterrupt:
        print(f"interrupted: run the same command (or --out {args.out} alone) to resume", file=sys.stderr)
        return 130
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    best, default = result["best"], result["default"]
    print(json.dumps({"out": str(args.out), "counts": result["counts"],
                      "default_score": default and default["score"], "best_iteration": best and best["iteration"],
                      "best_score": best and best["score"], "best_changes": best and best["changes_vs_default"]},
                     indent=2, default=str))
    return 0


def _add_fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", required=True,
                   help="SBML (.xml), COBRA JSON (.json), a table (.csv: reaction,metabolite,coefficient) or "
                   "cobra:NAME for a model shipped with cobra (e.g. cobra:textbook, the E. coli core model)")
    p.add_argument("--data", type=Path, required=True,
                   help="tidy CSV/TSV/Parquet with columns experiment,time,metabolite,value (optionally unit)")
    p.add_argument("--out", type=Path, required=True, help="results directory (a killed fit resumes there)")
    p.add_argument("--fixed-species", nargs="+", default=[], metavar="ID",
                   help="species held constant (dropped from the network, absorbed into k), added to the defaults")
    p.add_argument("--no-default-fixed", action="store_true",
                   help="do not fix water, protons and boundary species by default")
    p.add_argument("--estimator", choices=["gnn", "mass-action"], help="default gnn (form-free)")
    p.add_argument("--config", type=Path, help="a YAML fit config (sections: model, training, weakform, uncertainty)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one fit-config value; repeatable")
    p.add_argument("--unit", help="concentration unit, when the data do not state it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(p)


def _fit(args: argparse.Namespace) -> int:
    from .fit import fit
    from .importers import NetworkImportError
    from .measurements import MeasurementError

    overrides = list(args.overrides)
    if args.estimator:
        overrides.append(f"estimator={args.estimator}")
    if args.unit:
        overrides.append(f"unit={args.unit}")
    try:
        result = fit(args.network, args.data, args.out, fixed_species=[] if args.no_default_fixed else None,
                     extra_fixed=args.fixed_species, config=args.config, overrides=overrides,
                     progress=not args.quiet)
    except (ConfigError, NetworkError, NetworkImportError, MeasurementError, CheckpointMismatch,
            FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rep = result.report
    print(json.dumps({"out": str(args.out), "reactions": len(result.k), **rep["intervals"],
                      "network": rep["network"].get("counts", rep["network"]), "timing": rep["timing"],
                      "device": rep["device"]}, indent=2))
    return 0
