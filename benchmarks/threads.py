"""Training speed against CPU threads, on an idle machine and beside a competing job: what each study's
``threads`` default rests on.

Workloads (each in its own process, so that its thread settings are its own):

    metabolism   Adam steps of the GNN on the ``oscillatory`` regime (``train.fit_model``, the training of
                 ``python -m metabolism run``; threads: torch's intra-op threads, the CLI's ``--threads``)
    gdss         one GDSS training step on QM9-shaped graphs (denoising loss of both networks and its
                 backward; threads: the fused kernels' threads, ``train.num_threads``; torch at 1)
    can          the same for the cell-attention networks (``can``; threads: torch's, ``train.num_threads``)

Conditions: ``idle`` (the workload alone) and ``loaded`` (beside one competing job: the same workload on
one thread, started first and running throughout). Every (workload, threads, condition) is timed for about
``--seconds`` after a warm-up; the score is steps per second. On a 2-core machine ``loaded`` with 2 threads
oversubscribes the cores, which is how a study's run meets a background job.

    python benchmarks/threads.py [--workloads metabolism gdss can] [--threads 1 2] [--seconds 15]

The machine must be otherwise idle for the ``idle`` numbers to mean that: the JSON records the load average
before each measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "benchmarks"))

OUT = ROOT / "benchmarks" / "results" / "threads.json"
WORKLOADS = ("metabolism", "gdss", "can")


def _metabolism_step(threads: int):
    """A callable running one Adam step of the metabolism GNN on the oscillatory regime."""
    import numpy as np
    import torch

    from metabolism.config import load_config
    from metabolism.network import generate_network
    from metabolism.pipeline import build_model
    from metabolism.simulate import initial_conditions, simulate
    from metabolism.train import TrainingData, fit_model

    torch.set_num_threads(threads)
    cfg = load_config("oscillatory", seed=0)
    net = generate_network(cfg.network, cfg.seed)
    sc = cfg.simulation
    rng = np.random.default_rng(0)
    c0 = initial_conditions(rng, 1, net.n_metabolites, sc.c_min, sc.c_max)
    tr = simulate(net, c0, 400, sc.dt, sc.integrator, sc.substeps, sc.negative_tolerance, 0.0, rng)
    data = TrainingData.from_arrays(tr.c[0], tr.dcdt[0], sc.dt, torch.device("cpu"))
    model = build_model(cfg, net, tr.c[0])
    tc = cfg.training.model_copy(update={"steps": 25, "lbfgs_steps": 0, "log_every": 10**9,
                                         "checkpoint_every": 10**9})

    def step() -> int:
        fit_model(model, data, tc, 0, "benchmark", progress=False)
        return tc.steps

    return step


def _molgen_step(config: str, threads: int):
    """A callable running one training step (loss of both networks and backward) of a molgen config."""
    import torch

    from molgen.build import build_nets, build_sdes, configure_threads
    from molgen.config import load_config
    from molgen.losses import dsm_loss
    from molgen_speed import random_graphs

    cfg = load_config(config, overrides=[f"train.num_threads={threads}"])
    net_x, net_a = build_nets(cfg)
    configure_threads(cfg, torch.device("cpu"), [net_x, net_a])
    sde_x, sde_a = build_sdes(cfg)
    gen = torch.Generator().manual_seed(0)
    x4, adj, flags = random_graphs(cfg.data.batch_size, gen)
    x = torch.nn.functional.pad(x4, (0, cfg.data.max_feat_num - x4.shape[-1]))

    def step() -> int:
        net_x.zero_grad(), net_a.zero_grad()
        lx, la = dsm_loss(net_x, net_a, sde_x, sde_a, x, adj, flags, eps=cfg.train.eps,
                          reduce_mean=cfg.train.reduce_mean, generator=gen)
        (lx + la).backward()
        return 1

    return step


def make_step(workload: str, threads: int):
    if workload == "metabolism":
        return _metabolism_step(threads)
    return _molgen_step({"gdss": "qm9_gdss", "can": "qm9_can"}[workload], threads)


def worker(workload: str, threads: int, seconds: float) -> dict:
    """Steps per second of ``workload`` on ``threads`` over about ``seconds`` (after one warm-up call);
    ``seconds`` <= 0: run until killed (the competing job)."""
    step = make_step(workload, threads)
    step()
    steps, t0 = 0, time.perf_counter()
    while seconds <= 0 or time.perf_counter() - t0 < seconds:
        steps += step()
    elapsed = time.perf_counter() - t0
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed}


def _spawn(workload: str, threads: int, seconds: float, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, "--worker", workload, "--threads", str(threads),
                             "--seconds", str(seconds)], env=env, text=True, **kw)


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def measure(workload: str, threads: int, loaded: bool, seconds: float) -> dict:
    """One measurement in a fresh process; with ``loaded``, beside a competing one-thread job of the same
    workload, started (and past its warm-up) before the measured one starts."""
    load = _loadavg()
    rival = None
    if loaded:
        rival = _spawn(workload, 1, 0, stdout=subprocess.DEVNULL)
        time.sleep(8.0)
    try:
        proc = _spawn(workload, threads, seconds, stdout=subprocess.PIPE)
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"the {workload} worker on {threads} threads failed (exit {proc.returncode})")
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()
    return {"workload": workload, "threads": threads, "condition": "loaded" if loaded else "idle",
            "loadavg_before": load, **json.loads(out.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads[0], args.seconds)), flush=True)
        return 0
    from common.io import write_json
    from common.provenance import git_commit

    rows = []
    for workload in args.workloads:
        for loaded in (False, True):
            for threads in args.threads:
                row = measure(workload, threads, loaded, args.seconds)
                rows.append(row)
                print(f"{workload:10s} {row['condition']:6s} threads {threads}: {row['steps_per_s']:8.2f} steps/s "
                      f"(load before {row['loadavg_before']})", flush=True)
    for row in rows:
        base = next(r for r in rows if r["workload"] == row["workload"] and r["condition"] == "idle"
                    and r["threads"] == 1)
        row["relative_to_idle_1"] = row["steps_per_s"] / base["steps_per_s"]
    write_json(args.out, {"benchmark": "threads", "cores": os.cpu_count(), "seconds": args.seconds,
                          "commit": git_commit(short=True), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
