"""Command line: ``python -m molgen train | sample | evaluate``.

    python -m molgen train --config qm9_gdss --out RUN [--set key=value ...]
    python -m molgen sample --run RUN --n 10000 --out RUN/samples.smi [--set sampler.key=value ...]
    python -m molgen evaluate --dataset qm9 --samples FILE --out FILE.json

``train`` resumes when RUN already holds a checkpoint of the same config. ``sample`` writes one SMILES per
line (the valid molecules after GDSS's valency correction) and ``<out>.json`` beside it with the number of
graphs sampled, the validity without correction, the sampler settings and the time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


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


def sample_run(run: str | Path, n: int, overrides: list[str] | None = None, seed: int | None = None,
               device=None, progress: bool = True, num_steps: int | None = None) -> dict:
    """Sample ``n`` graphs from a trained run: X, A (raw bond-order scale), flags and the settings used."""
    import torch

    from .config import ConfigError
    from .data import unscale_adjacency
    from .losses import GraphScore
    from .sampling import make_sampler, sample_graphs
    from .train import build_sdes, load_run

    if overrides:
        bad = [o for o in overrides if not o.split("=", 1)[0].startswith("sampler.")]
        if bad:
            raise ConfigError(f"sample accepts only sampler.* overrides, got {bad}")
    cfg, net_x, net_a, ckpt = load_run(run, device=device, sampler_overrides=overrides)
    s = cfg.sampler
    dev = next(net_a.parameters()).device
    sde_x, sde_a = build_sdes(cfg)
    sampler = make_sampler(sde_x, sde_a, predictor=s.predictor, corrector=s.corrector, snr=s.snr,
                           scale_eps=s.scale_eps, n_steps=s.n_steps, probability_flow=s.probability_flow,
                           denoise=s.noise_removal, eps=s.eps, num_steps=num_steps)
    gen = torch.Generator(device=dev).manual_seed(s.seed if seed is None else seed)
    torch.manual_seed(s.seed if seed is None else seed)
    t0 = time.perf_counter()
    x, adj, flags = sample_graphs(GraphScore(net_x, net_a, sde_x, sde_a), sampler, n, ckpt["n_atoms_counts"],
                                  cfg.data.max_node_num, cfg.data.max_feat_num, batch_size=s.batch_size,
                                  device=dev, generator=gen, progress=progress)
    seconds = time.perf_counter() - t0
    return {"x": x, "adj": unscale_adjacency(adj, cfg.data.adj_scale), "flags": flags, "config": cfg,
            "vocab": ckpt["vocab"], "seconds": seconds, "epoch": ckpt["epoch"]}


def _cmd_sample(args) -> int:
    from .decode import graphs_to_mols, mols_to_smiles

    out = Path(args.out)
    res = sample_run(args.run, args.n, args.set, seed=args.seed, progress=not args.quiet,
                     num_steps=args.num_steps)
    cfg = res["config"]
    mols, valid_wo_corr = graphs_to_mols(res["x"], res["adj"], res["flags"], dataset=cfg.data.dataset,
                                         vocab=res["vocab"])
    smiles = [s for s in mols_to_smiles([m for m in mols if m is not None]) if s]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(s + "\n" for s in smiles))
    n_valid_wo = int(sum(bool(v) for v in valid_wo_corr))
    meta = {"run": str(args.run), "epoch": res["epoch"], "n_sampled": args.n, "n_smiles": len(smiles),
            "n_valid_wo_correction": n_valid_wo, "validity_wo_correction": n_valid_wo / max(args.n, 1),
            "seconds": round(res["seconds"], 2), "sampler": cfg.sampler.model_dump(mode="json"),
            "num_steps": args.num_steps or cfg.sde.adj.num_scales}
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({k: meta[k] for k in ("n_sampled", "n_smiles", "validity_wo_correction", "seconds")}))
    return 0


def _cmd_evaluate(args) -> int:
    from .metrics import evaluate_samples

    samples = Path(args.samples)
    smiles = [ln.strip() for ln in samples.read_text().splitlines() if ln.strip()]
    meta_path = Path(str(samples) + ".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    kwargs = {}
    if "n_sampled" in meta:
        kwargs["n_generated"] = meta["n_sampled"]
        kwargs["n_valid_wo_correction"] = meta["n_valid_wo_correction"]
    result = evaluate_samples(smiles, dataset=args.dataset, **kwargs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
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
