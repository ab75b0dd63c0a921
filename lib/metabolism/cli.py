"""Command line: `python -m metabolism run|simulate|train|evaluate|regimes`."""
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
    args = parser.parse_args(argv)
    if args.command == "regimes":
        print("\n".join(regime_names()))
        return 0
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
