"""One molecule-generation run end to end, resumable stage by stage: train -> sample -> evaluate.

    run_dir/
      config.yaml, checkpoint.pt, log.jsonl     train (``molgen.train``; resumes from the checkpoint)
      sessions.jsonl                             one line per training session: epochs, device, commit, seconds
      samples.smi, samples.smi.json              sample: valid SMILES after correction, and what produced them
      metrics.json                               evaluate: the metrics, timings and provenance

A stage is skipped when its output exists and was made from the same inputs (the checkpoint's epoch, the
number of samples, the sampler settings and seed); otherwise it reruns. ``results(run_dir)`` reads what a
run produced, for notebooks and benchmarks.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from common.io import write_json, write_text
from common.provenance import device_name, git_commit

from .config import RunConfig, load_config
from .train import SESSIONS, read_log

SAMPLES = "samples.smi"
METRICS = "metrics.json"


def train_stage(cfg: RunConfig, run_dir: str | Path, progress: bool = True) -> dict:
    """Train (or resume, or do nothing when ``train.num_epochs`` are done); the last epoch's log record."""
    from .train import Trainer

    trainer = Trainer(cfg, run_dir, progress=progress)
    last = trainer.fit()
    log = read_log(run_dir)
    return last or (log[-1] if log else {})


def sample_run(run: str | Path, n: int, overrides: list[str] | None = None, seed: int | None = None,
               device=None, progress: bool = True, num_steps: int | None = None) -> dict:
    """Sample ``n`` graphs from a trained run on the run's CPU threads: X, A (raw bond-order scale), flags and
    the settings used."""
    import torch

    from .build import build_sampler, build_sdes, configure_threads
    from .config import ConfigError
    from .data import unscale_adjacency
    from .nets.score import GraphScore
    from .sampling import sample_graphs
    from .train import load_run

    if overrides:
        bad = [o for o in overrides if not o.split("=", 1)[0].startswith("sampler.")]
        if bad:
            raise ConfigError(f"sample accepts only sampler.* overrides, got {bad}")
    cfg, net_x, net_a, ckpt = load_run(run, device=device, sampler_overrides=overrides)
    s = cfg.sampler
    dev = next(net_a.parameters()).device
    configure_threads(cfg, dev, (net_x, net_a))
    sde_x, sde_a = build_sdes(cfg)
    sampler = build_sampler(cfg, sde_x, sde_a, num_steps)
    gen = torch.Generator(device=dev).manual_seed(s.seed if seed is None else seed)
    torch.manual_seed(s.seed if seed is None else seed)
    t0 = time.perf_counter()
    x, adj, flags = sample_graphs(GraphScore(net_x, net_a, sde_x, sde_a), sampler, n, ckpt["n_atoms_counts"],
                                  cfg.data.max_node_num, cfg.data.max_feat_num, batch_size=s.batch_size,
                                  device=dev, generator=gen, progress=progress)
    seconds = time.perf_counter() - t0
    return {"x": x, "adj": unscale_adjacency(adj, cfg.data.adj_scale), "flags": flags, "config": cfg,
            "vocab": ckpt["vocab"], "seconds": seconds, "epoch": ckpt["epoch"]}


def sample_to_file(run_dir: str | Path, n: int, out: str | Path, seed: int | None = None,
                   overrides: Sequence[str] = (), num_steps: int | None = None, progress: bool = True) -> dict:
    """Sample ``n`` graphs, decode them with ``sampler.decoder`` (GDSS's by default) and GDSS's valency
    correction, write the valid SMILES to ``out`` and the metadata (counts, validity without correction,
    timings, sampler, device, commit; with the ``valence`` decoder how many graphs took their bond orders from
    the features and how many bonds that changed; with richer atom features, how often the generated features
    agree with the decoded molecules) to ``out.json``."""
    from .decode import decode_graphs, feature_consistency, mols_to_smiles

    res = sample_run(run_dir, n, list(overrides), seed=seed, progress=progress, num_steps=num_steps)
    cfg = res["config"]
    features = cfg.data.atom_features
    t0 = time.perf_counter()
    decoded = decode_graphs(res["x"], res["adj"], res["flags"], dataset=cfg.data.dataset, decoder=cfg.sampler.decoder,
                            vocab=res["vocab"], atom_features=features)
    smiles = [s for s in mols_to_smiles([d.mol for d in decoded if d.mol is not None]) if s]
    n_valid_wo = int(sum(d.valid_wo_correction for d in decoded))
    meta = {"run": str(run_dir), "epoch": res["epoch"], "n_sampled": int(n), "seed": seed,
            "overrides": list(overrides), "num_steps": num_steps, "n_smiles": len(smiles),
            "n_valid_wo_correction": n_valid_wo, "validity_wo_correction": n_valid_wo / max(n, 1),
            "seconds_sampling": round(res["seconds"], 2), "seconds_decoding": round(time.perf_counter() - t0, 2),
            "sampler": cfg.sampler.model_dump(mode="json"), "steps": num_steps or cfg.sde.adj.num_scales,
            "device": device_name(res["x"].device), "commit": git_commit()}
    if cfg.sampler.decoder != "gdss":
        from_features = [d for d in decoded if d.from_features]
        meta["decoding"] = {"decoder": cfg.sampler.decoder, "n_from_features": len(from_features),
                            "bonds_changed": int(sum(d.bonds_changed for d in from_features))}
    if cfg.data.derived_features:
        meta["derived_features"] = list(cfg.data.derived_features)
    if len(features) > 1:
        meta["atom_features"] = list(features)
        meta["feature_consistency"] = feature_consistency(res["x"], res["adj"], res["flags"], cfg.data.dataset,
                                                          atom_features=features, vocab=res["vocab"])
    write_text(out, "".join(s + "\n" for s in smiles))
    write_json(str(out) + ".json", meta)
    return meta


def sample_stage(run_dir: str | Path, n: int, seed: int | None = None, overrides: Sequence[str] = (),
                 num_steps: int | None = None, progress: bool = True, force: bool = False) -> dict:
    """``sample_to_file`` into ``run_dir/samples.smi``, skipped when it exists for the same checkpoint epoch,
    number of samples, seed, overrides and steps."""
    from .train import load_checkpoint

    run_dir = Path(run_dir)
    out = run_dir / SAMPLES
    meta_path = Path(str(out) + ".json")
    want = {"epoch": int(load_checkpoint(run_dir)["epoch"]), "n_sampled": int(n), "seed": seed,
            "overrides": list(overrides), "num_steps": num_steps}
    if not force and out.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want:
            return meta
    return sample_to_file(run_dir, n, out, seed=seed, overrides=overrides, num_steps=num_steps, progress=progress)


def evaluate_file(samples: str | Path, dataset: str) -> dict:
    """The metrics of a SMILES file against the dataset (``molgen.metrics.evaluate_samples``); with its
    ``.json`` metadata (from ``sample_to_file``) validity without correction counts all sampled graphs."""
    from .metrics import evaluate_samples

    samples = Path(samples)
    if not samples.is_file():
        raise FileNotFoundError(f"{samples} not found: run the sample stage first")
    meta_path = Path(str(samples) + ".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    smiles = [ln.strip() for ln in samples.read_text().splitlines() if ln.strip()]
    kwargs = {}
    if "n_sampled" in meta:
        kwargs = {"n_generated": meta["n_sampled"], "n_valid_wo_correction": meta["n_valid_wo_correction"]}
    return evaluate_samples(smiles, dataset=dataset, **kwargs)


def evaluate_stage(run_dir: str | Path, dataset: str, force: bool = False) -> dict:
    """``evaluate_file`` on the run's samples, written to ``metrics.json`` with the sampling metadata, the
    seconds it took and the commit; skipped if up to date."""
    run_dir = Path(run_dir)
    samples = run_dir / SAMPLES
    meta_path = Path(str(samples) + ".json")
    if not samples.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"{samples} (and its .json) not found: run the sample stage first")
    meta = json.loads(meta_path.read_text())
    out = run_dir / METRICS
    if not force and out.is_file():
        old = json.loads(out.read_text())
        if old.get("sampling") == meta:
            return old
    t0 = time.perf_counter()
    metrics = evaluate_file(samples, dataset)
    result = {"metrics": metrics, "sampling": meta, "seconds_metrics": round(time.perf_counter() - t0, 1),
              "evaluated_with_commit": git_commit()}
    write_json(out, result)
    return result


def run(config: str | Path, run_dir: str | Path, overrides: Sequence[str] = (), n_samples: int = 10_000,
        sample_seed: int | None = None, num_steps: int | None = None, progress: bool = True) -> dict:
    """Train, sample and evaluate one run (each stage resumes or is skipped when done); ``results(run_dir)``."""
    cfg = load_config(config, list(overrides))
    train_stage(cfg, run_dir, progress=progress)
    sample_stage(run_dir, n_samples, seed=sample_seed, num_steps=num_steps, progress=progress)
    evaluate_stage(run_dir, cfg.data.dataset)
    return results(run_dir)


def results(run_dir: str | Path) -> dict[str, Any]:
    """What a run produced: config name and seed, epochs, training seconds, sampling metadata and metrics
    (missing stages are absent)."""
    from .config import read_config_dict

    run_dir = Path(run_dir)
    cfg, _ = read_config_dict(run_dir / "config.yaml")
    log = read_log(run_dir)
    out: dict[str, Any] = {"run": run_dir.name, "config": cfg.get("name"), "seed": cfg.get("seed"),
                           "epochs": log[-1]["epoch"] if log else 0,
                           "seconds_training": round(sum(r.get("seconds", 0.0) for r in log), 1)}
    if log and all("seconds_cpu" in r for r in log):  # CPU time: logged since train.budget_clock
        out["seconds_training_cpu"] = round(sum(r["seconds_cpu"] for r in log), 1)
    prov = run_dir / SESSIONS
    if prov.is_file():
        out["training_sessions"] = [json.loads(ln) for ln in prov.read_text().splitlines() if ln.strip()]
    if (run_dir / METRICS).is_file():
        m = json.loads((run_dir / METRICS).read_text())
        out.update(m["metrics"])
        out["sampling"] = m["sampling"]
    return out
