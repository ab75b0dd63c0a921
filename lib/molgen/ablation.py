"""The ablation of the cell-complex study: does topology help GDSS?

Five variants, each a shipped config, trained with the same budget (the same number of epochs, ``epochs``, or
the same training time, ``minutes``), sampled and evaluated by ``molgen.pipeline`` for every seed, in
``root/<variant>_s<seed>``:

    gdss              GDSS's networks on atom types (the baseline)
    gdss_feat         GDSS's networks, richer atom features diffused with the types
    can               cell-attention score networks on the lifted complex, atom types
    can_feat          cell attention, richer atom features
    can_feat_ring     cell attention, richer atom features and ring (2-cell) attributes

Every run resumes where it stopped, so the ablation can be spread over sessions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from . import pipeline

VARIANTS: dict[str, str] = {
    "gdss": "qm9_gdss",
    "gdss_feat": "qm9_gdss_feat",
    "can": "qm9_can",
    "can_feat": "qm9_can_feat",
    "can_feat_ring": "qm9_can_feat_ring",
}
"""Variant name -> shipped config."""


def run_dir(root: str | Path, variant: str, seed: int) -> Path:
    return Path(root) / f"{variant}_s{seed}"


def run_ablation(root: str | Path, variants: Sequence[str] = tuple(VARIANTS), seeds: Sequence[int] = (42, 43, 44),
                 epochs: int | None = None, n_samples: int = 10_000, overrides: Sequence[str] = (),
                 progress: bool = True, log: Callable[[str], None] = print,
                 minutes: float | None = None) -> list[Path]:
    """Train, sample and evaluate every (variant, seed), seed-major (one seed of every variant first, so that
    a partial ablation compares all variants); returns the run directories. ``minutes`` gives every run the
    same training time (``train.max_minutes``), ``epochs`` the same number of epochs (with ``minutes``: a cap)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; known: {', '.join(VARIANTS)}")
    budget = [f"train.num_epochs={epochs}"] if epochs is not None else []
    budget += [f"train.max_minutes={minutes}"] if minutes is not None else []
    dirs = []
    for seed in seeds:
        for variant in variants:
            d = run_dir(root, variant, seed)
            log(f"ablation: {variant} seed {seed} -> {d}")
            pipeline.run(VARIANTS[variant], d, [*budget, *overrides, f"seed={seed}"], n_samples=n_samples,
                         progress=progress)
            dirs.append(d)
    return dirs


def finished_runs(root: str | Path) -> list[Path]:
    """Run directories under ``root`` that have metrics, in variant order then seed."""
    order = {v: i for i, v in enumerate(VARIANTS)}
    found = [d for d in Path(root).glob("*_s*") if (d / pipeline.METRICS).is_file()]

    def key(d: Path):
        variant, _, seed = d.name.rpartition("_s")
        return order.get(variant, len(order)), int(seed) if seed.isdigit() else 0
    return sorted(found, key=key)
