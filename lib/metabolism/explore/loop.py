"""The closed loop: propose a round, run it, record it, update the tree and the memory; repeat until the budget.

Files in the exploration directory:

* ``explore.json``  the settings (identity fields fixed for the directory's lifetime);
* ``log.jsonl``     the append-only log (see `record`), the single source of truth;
* ``memory.md``     the readable memory; ``tree.json`` the UCB tree; ``summary.json`` see `summary`;
* ``runs/itNNNN/``  one run directory per iteration.

Resume is read from the log alone: finished iterations are never re-run; an iteration with a "started" but
no "finished" record is re-run exactly once (its second "started" record has attempt=2); if that re-run is
interrupted as well, it is recorded as failed and not tried again.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from common.io import write_json
from .executor import DaskExecutor, Executor, Job, JobFn, LocalExecutor, SerialExecutor, run_job
from .memory import offline_memory, write_memory
from .proposers import OfflineProposer, Proposer, RoundContext
from .record import ExplorationLog, LogState
from .settings import (IDENTITY, LOG, MEMORY, RUNS, SETTINGS, SUMMARY, TREE, ExploreSettings, resolve_settings,
                       tree_from)
from .space import SearchSpace, build_config
from .summary import summarize
from .tree import Node

__all__ = ["IDENTITY", "LOG", "MEMORY", "RUNS", "SETTINGS", "SUMMARY", "TREE", "ExploreSettings", "Explorer",
           "explore", "resolve_settings", "tree_from"]

def make_proposer(settings: ExploreSettings) -> Proposer:
    """The offline proposer, or an LLM proposer configured from the environment."""
    if settings.proposer == "offline":
        return OfflineProposer()
    from .llm import make_llm_proposer

    return make_llm_proposer(settings.proposer, max_retries=settings.llm_retries)


def make_executor(settings: ExploreSettings, job_fn: JobFn = run_job) -> Executor:
    """The executor named by the settings (local process pool by default)."""
    if settings.executor == "serial":
        return SerialExecutor(job_fn)
    if settings.executor == "dask":
        return DaskExecutor(settings.dask_address, settings.dask_cluster, settings.jobqueue, job_fn)
    workers = settings.workers or max(1, min(settings.slots, os.cpu_count() or 1))
    return LocalExecutor(workers, settings.mp_context, job_fn)


class Explorer:
    """One exploration directory: `run()` proposes, runs and records rounds until the budget is spent."""

    def __init__(self, out: str | Path, settings: ExploreSettings | None = None, updates: dict | None = None,
                 proposer: Proposer | None = None, executor: Executor | None = None,
                 report: Callable[[str], None] | None = print):
        self.out = Path(out)
        self.settings = resolve_settings(self.out, settings, updates)
        self.space = SearchSpace.from_specs(self.settings.space)
        s = self.settings
        self.base_values = self.space.values_of(build_config(s.base_data, s.base_overrides, s.seed))
        self.log = ExplorationLog(self.out / LOG)
        self.proposer = proposer
        self.executor = executor
        self.report = report or (lambda line: None)
        self.state = LogState.from_records(self.log.records())
        self.tree = tree_from(self.state, s)

    # ---- records -------------------------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        self.report(line)

    def _append(self, record: dict) -> dict:
        """Append to the log (fsynced) and refresh the state."""
        rec = self.log.append(record)
        self.state.apply(rec)
        return rec

    def _job(self, item: dict) -> Job:
        return Job.of(self.settings, item["iteration"], item["overrides"], self.out / item["run_dir"])

    def _dispatch(self, items: list[dict], executor: Executor) -> None:
        """Log every item as started (fsynced), run them, log each result as it finishes."""
        for item in items:
            self._append({"event": "started", **item})
            if item["iteration"] not in self.tree.nodes:
                self.tree.add(Node(item["iteration"], item["parent"], dict(item["params"]), dict(item["mutation"]),
                                   item["role"], item["round"]))
        by_id = {item["iteration"]: item for item in items}
        for res in executor.run([self._job(item) for item in items]):
            item = by_id[res["iteration"]]
            self._append({"event": "finished", **item, "status": res["status"], "score": res["score"],
                          "wall_time": res.get("wall_time"), "error": res.get("error"),
                          "metrics": res.get("metrics")})
            self.tree.finish(item["iteration"], res["status"], res["score"])
            self._progress(item, res)
            self._write_tree()

    def _progress(self, item: dict, res: dict) -> None:
        best = self.tree.best()
        score = "failed" if res["status"] != "ok" else f"{res['score']:.4g}"
        best_txt = f"{best.score:.4g} (it {best.id})" if best else "n/a"
        wall = f"{res['wall_time']:.1f}s" if res.get("wall_time") is not None else "-"
        change = ", ".join(f"{k}={v}" for k, v in item["mutation"].items()) or "default"
        self._say(f"it {item['iteration']:>4}  round {item['round']:>3}  {item['role']:<16} score {score:<10} "
                  f"best {best_txt:<18} {wall:>8}  [{change}]")
        if res["status"] != "ok" and res.get("error"):
            self._say(f"         error: {res['error'].splitlines()[0][:200]}")

    # ---- memory, tree, summary -----------------------------------------------------------------------------
    def memory_text(self) -> str:
        """The LLM's latest memory when an LLM proposes and has written one, else the offline statistics."""
        if self.settings.proposer != "offline" and self.state.memory:
            return self.state.memory
        s = self.settings
        return offline_memory(list(self.state.iterations.values()), self.tree, self.space, self.base_values,
                              s.score_key, s.maximize)

    def _write_tree(self) -> None:
        write_json(self.out / TREE, self.tree.to_dict())

    def _write_all(self) -> None:
        write_memory(self.out / MEMORY, self.memory_text())
        self._write_tree()
        write_json(self.out / SUMMARY, summarize(self.out))

    # ---- the loop ------------------------------------------------------------------------------------------
    def _resume(self, executor: Executor) -> None:
        rerun = []
        for it in self.state.unfinished():
            i = it["iteration"]
            base = {k: v for k, v in it.items() if k not in ("finished", "attempt")}
            if self.state.n_started.get(i, 0) >= 2:
                self._append({"event": "finished", **base, "status": "failed", "score": None, "wall_time": None,
                              "metrics": None, "error": "interrupted twice; not re-run again"})
                self.tree.finish(i, "failed", None)
                self._say(f"it {i:>4}  interrupted twice: recorded as failed")
            else:
                rerun.append({**base, "attempt": 2})
        if rerun:
            self._say(f"resuming: re-running {len(rerun)} interrupted iteration(s): "
                      f"{', '.join(str(r['iteration']) for r in rerun)}")
            self._dispatch(rerun, executor)

    def _round(self, rnd: int, n: int, proposer: Proposer) -> list[dict]:
        """The items (not yet started) of round `rnd` with at most n slots."""
        s = self.settings
        items: list[dict] = []
        next_id = self.state.next_id()
        if 0 not in self.state.iterations:
            items.append({"iteration": 0, "round": rnd, "slot": 0, "role": "baseline", "parent": None,
                          "mutation": {}, "params": {}, "overrides": list(s.base_overrides), "proposer": "loop",
                          "reasoning": "the default configuration (root of the tree)", "hypothesis": None})
            next_id = max(next_id, 1)
        first = len(items)
        roles = [s.roles[(rnd * s.slots + j) % len(s.roles)] for j in range(first, n)]
        if roles:
            ctx = RoundContext(
                round=rnd, roles=roles, tree=self.tree, iterations=list(self.state.iterations.values()),
                space=self.space, base_data=s.base_data, base_overrides=s.base_overrides,
                base_values=self.base_values, seed=s.seed, memory=self.memory_text(), score_key=s.score_key,
                maximize=s.maximize, ucb_c=s.ucb_c, explore_factor=s.explore_factor, explore_seed=s.explore_seed,
                recent=s.recent, log=self._append, proposer_name=proposer.name, virtual=Counter())
            candidates, memory = proposer.propose(ctx)
            if memory:
                self._append({"event": "memory", "round": rnd, "proposer": proposer.name, "text": memory})
            for j, cand in enumerate(candidates[: len(roles)]):
                p = cand.proposal
                items.append({"iteration": next_id, "round": rnd, "slot": first + j, "role": p.role,
                              "parent": p.parent, "mutation": p.mutation, "params": cand.params,
                              "overrides": cand.overrides, "proposer": proposer.name, "reasoning": p.reasoning,
                              "hypothesis": p.hypothesis})
                next_id += 1
        for item in items:
            item["attempt"] = 1
            item["run_dir"] = f"{RUNS}/it{item['iteration']:04d}"
        return items

    def run(self) -> dict:
        """Run until the budget; returns the summary. Ctrl-C leaves a log that `run()` resumes from."""
        s = self.settings
        t0 = time.monotonic()
        proposer = self.proposer or make_proposer(s)
        self._append({"event": "session", "pid": os.getpid(), "finished": len(self.state.finished()),
                      "unfinished": len(self.state.unfinished()), "settings": s.model_dump(mode="json")})
        executor = self.executor or make_executor(s)
        rnd, empty = self.state.last_round + 1, 0
        try:
            self._resume(executor)
            while True:
                n_total = len(self.state.iterations)
                if n_total >= s.budget:
                    self._say(f"budget of {s.budget} iterations reached")
                    break
                if s.budget_seconds is not None and time.monotonic() - t0 >= s.budget_seconds:
                    self._say(f"wall-time budget of {s.budget_seconds:.0f}s reached")
                    break
                rnd = max(rnd, self.state.last_round + 1)
                items = self._round(rnd, min(s.slots, s.budget - n_total), proposer)
                rnd += 1
                if not items:
                    empty += 1
                    self._say(f"round {rnd - 1}: no runnable proposal ({empty}/{s.max_empty_rounds})")
                    if empty >= s.max_empty_rounds:
                        self._say("stopping: too many empty rounds")
                        break
                    continue
                empty = 0
                self._dispatch(items, executor)
                write_memory(self.out / MEMORY, self.memory_text())
        except BaseException:
            if self.executor is None:
                executor.close(cancel=True)
            try:
                self._write_all()
            except Exception:  # never mask the interruption itself
                pass
            raise
        if self.executor is None:
            executor.close()
        self._write_all()
        return summarize(self.out)


def explore(out: str | Path, settings: ExploreSettings | None = None, **kw: Any) -> dict:
    """Run (or resume) the exploration in `out`; returns its summary."""
    return Explorer(out, settings, **kw).run()
