"""Command line: ``python -m molgen train | sample | evaluate``.

    python -m molgen train --config qm9_gdss --out RUN [--set key=value ...]
    python -m molgen sample --run RUN --n 10000 --out RUN/samples.smi [--set sampler.key=value ...]
    python -m molgen evaluate --dataset qm9 --samples FILE --out FILE.json
    python -m molgen ablation [--variants gdss can ...] [--seeds 42 43 44] [--epochs E] [--minutes M] [--n 10000]

``train`` resumes when RUN already holds a checkpoint of the same config. ``sample`` writes one SMILES per
line (the valid molecules after GDSS's valency correction) and ``<out>.json`` beside it with the number of
graphs sampled, the validity without correction, the sampler settings and the time; with extra atom features
(``data.atom_features``) also how often the generated features agree with the decoded molecules.
"""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_train(args) -> int:
    from .config import load_config
    from .train import Trainer

    cfg = load_config(args.config, args.set)
    trainer = Trainer(cfg, args.out, progress=not args.quiet)
    if trainer.epoch:
        print(f"resuming {args.out} at epoch {trainer.epoch}/{cfg.train.num_epochs}", file=sys.stderr)
    last = trainer.fit()
    print(json.dumps({"run": str(args.out), "epochs": trainer.epoch, **last}))
    return 0


def _cmd_sample(args) -> int:
    from .pipeline import sample_to_file

    meta = sample_to_file(args.run, args.n, args.out, seed=args.seed, overrides=args.set,
                          num_steps=args.num_steps, progress=not args.quiet)
    print(json.dumps({k: meta[k] for k in ("n_sampled", "n_smiles", "validity_wo_correction", "seconds_sampling")}))
    return 0


def _cmd_evaluate(args) -> int:
    from common.io import write_json

    from .pipeline import evaluate_file

    result = evaluate_file(args.samples, args.dataset)
    write_json(args.out, result)
    print(json.dumps(result))
    return 0


def _cmd_ablation(args) -> int:
    from .ablation import run_ablation

    run_ablation(args.root, args.variants, args.seeds, epochs=args.epochs, minutes=args.minutes,
                 n_samples=args.n, overrides=args.set, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m molgen", description="GDSS baseline: train, sample, evaluate")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a run")
    t.add_argument("--config", required=True, help="shipped config name (qm9_gdss, zinc250k_gdss, tiny) or YAML path")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.num_epochs=10")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="sample molecules from a trained run")
    s.add_argument("--run", required=True)
    s.add_argument("--n", type=int, default=10000)
    s.add_argument("--out", required=True, help="SMILES file to write")
    s.add_argument("--seed", type=int, default=None, help="default: the config's sampler.seed")
    s.add_argument("--num-steps", type=int, default=None,
                   help="time steps (default: the SDE's num_scales; fewer make the Reverse predictor, which steps "
                        "between adjacent noise levels, inexact: for timing and smoke tests)")
    s.add_argument("--set", action="append", default=[], metavar="sampler.KEY=VALUE")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser("evaluate", help="metrics of a SMILES file against a dataset")
    e.add_argument("--dataset", required=True)
    e.add_argument("--samples", required=True)
    e.add_argument("--out", required=True)
    e.set_defaults(func=_cmd_evaluate)

    from .ablation import VARIANTS

    a = sub.add_parser("ablation", help="train, sample and evaluate the cell-complex ablation (resumable)")
    a.add_argument("--root", default="data/runs/molgen/ablation", help="one run directory per variant and seed")
    a.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    a.add_argument("--epochs", type=int, default=None, help="training budget of every run (default: the configs')")
    a.add_argument("--minutes", type=float, default=None,
                   help="training-time budget of every run (train.max_minutes, on train.budget_clock: wall time unless "
                        "--set train.budget_clock=cpu; --epochs stays a cap)")
    a.add_argument("--n", type=int, default=10000, help="molecules sampled per run")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=_cmd_ablation)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .train import CheckpointMismatch

    try:
        return args.func(args)
    except (ConfigError, CheckpointMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
