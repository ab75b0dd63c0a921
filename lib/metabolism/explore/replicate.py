"""Replicates of an exploration: the default configuration (iteration 0) and the best one re-run over other
seeds, through the exploration's own executor, to measure the spread between replicates against the gain.

* `replicate(out, seeds)`   runs them (or reuses finished run directories of the same config) and writes
                            `out/replicates.json`: per config its scores, mean, std, n, and their `compare`;
* `compare(default, best)`  the improvement of the best over the default against the replicate spread.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common.io import write_json
from .executor import Job, score_of
from .settings import SETTINGS, ExploreSettings
from .summary import summarize

REPLICATES = "replicates"


def _stats(scores: Sequence[float | None]) -> dict[str, Any]:
    ok = [float(s) for s in scores if s is not None and math.isfinite(s)]
    return {"mean": float(np.mean(ok)) if ok else None,
            "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else None,
            "n": len(ok), "n_failed": len(scores) - len(ok)}


def compare(default: dict, best: dict, maximize: bool = True) -> dict[str, Any]:
    """Improvement of the best config over the default, against the spread between replicates.

    improvement = mean(best) - mean(default) (sign-flipped when minimising); it exceeds the spread when it is
    larger than the larger of the two replicate standard deviations (None when a std is undefined, n < 2).
    The paired view uses the seeds where both ran: the per-seed improvements, their mean and std, and on how
    many seeds the best config did better.
    """
    sign = 1.0 if maximize else -1.0
    out: dict[str, Any] = {"improvement": None, "spread": None, "exceeds_spread": None,
                           "criterion": "improvement of the mean > max(std of best, std of default) over seeds"}
    if default["mean"] is not None and best["mean"] is not None:
        out["improvement"] = sign * (best["mean"] - default["mean"])
        if default["std"] is not None and best["std"] is not None:
            out["spread"] = max(default["std"], best["std"])
            out["exceeds_spread"] = bool(out["improvement"] > out["spread"])
    paired = [sign * (b - d) for b, d in zip(best["scores"], default["scores"]) if b is not None and d is not None]
    out["paired"] = {"differences": paired, **{k: v for k, v in _stats(paired).items() if k != "n_failed"},
                     "wins": sum(1 for d in paired if d > 0)}
    return out


def replicate(out: str | Path, seeds: Sequence[int], executor=None, report=print) -> dict[str, Any]:
    """Run the default config (it 0) and the best config of the exploration in `out` once per seed.

    The runs go to `out/replicates/<name>_seed<seed>/` through the exploration's own executor (its process
    pool or Dask cluster); with the default as the best, it is run once and reported for both. The result
    (also written to `out/replicates.json`) has, per config: iteration, params, overrides, seeds, scores,
    mean, std, n, n_failed and the score it had in the exploration; plus the `compare` of the two.
    """
    from .loop import make_executor

    out = Path(out)
    settings = ExploreSettings.model_validate_json((out / SETTINGS).read_text())
    summ = summarize(out)
    configs = {"default": summ["default"], "best": summ["best"]}
    if configs["default"] is None or configs["best"] is None:
        raise ValueError(f"{out}: the exploration has no evaluated default or best configuration")
    names = ["default"] if configs["best"]["iteration"] == 0 else ["default", "best"]
    jobs, name_of = [], []
    for name in names:
        for seed in seeds:
            jobs.append(Job.of(settings, len(jobs), configs[name]["overrides"], out / REPLICATES / f"{name}_seed{seed}",
                               seed=seed))
            name_of.append(name)
    results: dict[int, dict] = {j.iteration: done for j in jobs if (done := _finished(j)) is not None}
    todo = [j for j in jobs if j.iteration not in results]
    own = executor is None and bool(todo)
    if own:
        executor = make_executor(settings.model_copy(update={"slots": len(todo)}))
    try:
        for res in executor.run(todo) if todo else ():
            results[res["iteration"]] = res
            job = jobs[res["iteration"]]
            score = "failed" if res["status"] != "ok" else f"{res['score']:.4g}"
            if report:
                report(f"replicate {name_of[job.iteration]:<7} seed {job.seed:>4}: score {score}")
    finally:
        if own:
            executor.close()
    if report and len(todo) < len(jobs):
        report(f"{len(jobs) - len(todo)} replicate run(s) reused from finished run directories")
    rep: dict[str, Any] = {"score_key": settings.score_key, "maximize": settings.maximize, "seeds": list(seeds),
                           "exploration_seed": settings.seed}
    for name in ("default", "best"):
        src = name if name in names else "default"
        mine = [j for j, n in zip(jobs, name_of) if n == src]
        scores = [results[j.iteration]["score"] if results[j.iteration]["status"] == "ok" else None
                  for j in mine]
        metrics = [results[j.iteration].get("metrics") or {} for j in mine]
        rep[name] = {"iteration": configs[name]["iteration"], "params": configs[name]["params"],
                     "overrides": configs[name]["overrides"], "exploration_score": configs[name]["score"],
                     "seeds": [j.seed for j in mine], "scores": scores, **_stats(scores),
                     "errors": [results[j.iteration].get("error") for j in mine if
                                results[j.iteration]["status"] != "ok"],
                     "device": sorted({str(m["device"]) for m in metrics if m.get("device")}),
                     "commit": sorted({str(m["commit"]) for m in metrics if m.get("commit")})}
    rep["comparison"] = compare(rep["default"], rep["best"], settings.maximize)
    write_json(out / f"{REPLICATES}.json", rep)
    return rep


def _finished(job: Job) -> dict | None:
    """The result of a replicate job whose run directory already holds the metrics of the same config (a
    committed or earlier replicate), so that it is not run again; None otherwise."""
    from .space import build_config

    path = Path(job.run_dir) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    if metrics.get("config_digest") != build_config(job.base_data, list(job.overrides), job.seed).digest():
        return None
    score = score_of(metrics, job.score_key)
    return {"iteration": job.iteration, "status": "ok" if score is not None else "failed", "metrics": metrics,
            "score": score, "error": None if score is not None else f"score {job.score_key!r} missing",
            "wall_time": None, "reused": True}
