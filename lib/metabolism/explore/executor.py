"""Where iterations run: a local process pool (default), a Dask cluster, or serially in-process (debugging).

A job is a `Job` (picklable: it travels to process pools and Dask workers); `run_job` builds its RunConfig, calls
`metabolism.pipeline.run(cfg, run_dir, progress=False)` and returns metrics, score, wall time and status.
Errors inside a run are caught and returned as status "failed" with the error text; so is a run that exceeds
the job's `timeout` (seconds), stopped by a SIGALRM timer where the job runs in a process's main thread (the
local pool and the serial executor; Dask workers run jobs in threads, where no timer can interrupt them).
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

if TYPE_CHECKING:
    from .settings import ExploreSettings


@dataclass(frozen=True)
class Job:
    """One training run: its configuration (the exploration's base data, ``overrides``, ``seed``), where it
    runs, how it is scored, its torch threads and time limit (seconds; None: none)."""

    iteration: int
    base_data: dict
    overrides: tuple[str, ...]
    seed: int | None
    run_dir: str
    score_key: str
    threads: int | None = None
    timeout: float | None = None

    @classmethod
    def of(cls, settings: "ExploreSettings", iteration: int, overrides: Sequence[str], run_dir: str | Path,
           seed: int | None = None) -> "Job":
        """A job of the exploration ``settings`` (its base data, score, threads and time limit); ``seed``
        defaults to the exploration's."""
        return cls(iteration=iteration, base_data=settings.base_data, overrides=tuple(overrides),
                   seed=settings.seed if seed is None else int(seed), run_dir=str(run_dir),
                   score_key=settings.score_key, threads=settings.threads_per_job, timeout=settings.job_timeout)


JobFn = Callable[[Job], dict]


def score_of(metrics: dict, key: str) -> float | None:
    """The value at a dotted key of the metrics (None if missing or not a finite number)."""
    node: Any = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return float(node)


class JobTimeout(Exception):
    """A job ran longer than its timeout."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise JobTimeout in this thread after `seconds` (no limit when None, or outside the main thread)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):
        raise JobTimeout(f"the run exceeded its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_job(job: Job) -> dict:
    """Run one iteration: metrics, score, status, error and wall time."""
    t0 = time.perf_counter()
    result: dict = {"iteration": job.iteration, "status": "failed", "metrics": None, "score": None,
                    "error": None}
    try:
        with time_limit(job.timeout):
            _run_job_body(job, result)
    except Exception as err:  # a failed run is a result, not a crash of the loop
        tb = traceback.format_exc(limit=6)
        result["error"] = f"{type(err).__name__}: {err}\n{tb[-2000:]}"
    result["wall_time"] = time.perf_counter() - t0
    return result


def _run_job_body(job: Job, result: dict) -> None:
    import torch

    from ..pipeline import run
    from .space import build_config

    if job.threads:
        torch.set_num_threads(int(job.threads))
    cfg = build_config(job.base_data, list(job.overrides), job.seed)
    metrics = run(cfg, Path(job.run_dir), progress=False)
    result["metrics"] = metrics
    result["score"] = score_of(metrics, job.score_key)
    if result["score"] is None:
        result["error"] = f"score {job.score_key!r} missing or not finite in the metrics"
    else:
        result["status"] = "ok"


def _failure(job: Job, err: BaseException) -> dict:
    return {"iteration": job.iteration, "status": "failed", "metrics": None, "score": None, "wall_time": None,
            "error": f"{type(err).__name__}: {err}"}


class Executor(Protocol):
    def run(self, jobs: list[Job]) -> Iterator[dict]:
        """Yield one result per job, in completion order."""

    def close(self, cancel: bool = False) -> None:
        """Release the workers (cancel=True: drop queued and running jobs)."""


class SerialExecutor:
    """Runs jobs one after the other in this process (debugging and tests)."""

    def __init__(self, job_fn: JobFn = run_job):
        self.job_fn = job_fn

    def run(self, jobs: list[Job]) -> Iterator[dict]:
        for job in jobs:
            yield self.job_fn(job)

    def close(self, cancel: bool = False) -> None:
        pass


class LocalExecutor:
    """A concurrent.futures ProcessPoolExecutor kept for the whole exploration ("spawn" workers by default)."""

    def __init__(self, workers: int = 2, mp_context: str = "spawn", job_fn: JobFn = run_job):
        self.workers, self.mp_context, self.job_fn = workers, mp_context, job_fn
        self._pool = None

    def _ensure(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(self.mp_context))
        return self._pool

    def run(self, jobs: list[Job]) -> Iterator[dict]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        pool = self._ensure()
        futures = {pool.submit(self.job_fn, job): job for job in jobs}
        broken = False
        try:
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except BrokenProcessPool as err:
                    broken = True
                    yield _failure(futures[fut], RuntimeError(f"a worker process died ({err}); it may have been "
                                                              "another job of the same batch"))
                except Exception as err:
                    yield _failure(futures[fut], err)
        except BaseException:
            self.close(cancel=True)
            raise
        if broken:
            self.close(cancel=True)

    def close(self, cancel: bool = False) -> None:
        """Shut the pool down; cancel=True also terminates the workers (their running jobs are lost)."""
        if self._pool is not None:
            procs = list((getattr(self._pool, "_processes", None) or {}).values()) if cancel else []
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            for proc in procs:
                proc.join(timeout=10)
            self._pool = None


class DaskExecutor:
    """Jobs as Dask futures on a `distributed` cluster.

    Given `address`, connects to that scheduler; given `jobqueue` = {"kind": "SLURMCluster", "kwargs": {...},
    "jobs": n} and dask-jobqueue installed, starts that cluster; otherwise starts a LocalCluster with
    `cluster_kwargs` (e.g. n_workers=1, processes=False for tests).
    """

    def __init__(self, address: str | None = None, cluster_kwargs: dict | None = None,
                 jobqueue: dict | None = None, job_fn: JobFn = run_job):
        from distributed import Client, LocalCluster

        self.job_fn = job_fn
        self._cluster = None
        if address:
            self.client = Client(address)
        elif jobqueue:
            try:
                import dask_jobqueue
            except ImportError:
                raise RuntimeError("dask-jobqueue is not installed; pip install dask-jobqueue or give an address")
            self._cluster = getattr(dask_jobqueue, jobqueue["kind"])(**jobqueue.get("kwargs", {}))
            self._cluster.scale(jobs=int(jobqueue.get("jobs", 1)))
            self.client = Client(self._cluster)
        else:
            kw = {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": None, **(cluster_kwargs or {})}
            self._cluster = LocalCluster(**kw)
            self.client = Client(self._cluster)

    def run(self, jobs: list[Job]) -> Iterator[dict]:
        from distributed import as_completed

        futures = {self.client.submit(self.job_fn, job, pure=False, key=f"explore-it{job.iteration}-"
                                      f"{time.time_ns()}"): job for job in jobs}
        try:
            for fut in as_completed(list(futures)):
                try:
                    yield fut.result()
                except Exception as err:
                    yield _failure(futures[fut], err)
        except BaseException:
            self.client.cancel(list(futures))
            raise

    def close(self, cancel: bool = False) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
