"""Cost of the cell-attention (CAN) score networks against GDSS's, before and after a change of the CAN code,
in one run: CPU seconds per training epoch and per 1,000 samples x 1,000 sampler steps, one torch thread.

    python benchmarks/molgen_can_cost.py [--before REV] [--rounds 5] [--n 1000] [--steps 20]
        [--cache-dir data/cache] [--json OUT]

Each (code, run) pair is a worker process importing ``molgen`` from its own copy of ``lib/`` (``--before``: a git
revision, extracted with ``git archive``; after: this checkout), with the weights of a committed run
(``data/runs/molgen/ablation``: ``gdss_s42``, ``can_s42``, ``can_feat_ring_s42``). The workers take turns, one
measurement at a time, so that every one sees the same machine load (a shared 2-core machine: the numbers move
with the other jobs, the ratios measured side by side much less):

- training: one full step of ``molgen.train`` (denoising score-matching loss of both networks, backward, gradient
  clipping, two Adam updates, two EMA updates) on a batch of the config's size drawn from QM9's training split
  (random QM9-shaped graphs if the dataset cannot be loaded); seconds per epoch = median step x batches;
- sampling: the run's sampler (Reverse-diffusion predictor + Langevin corrector, two score evaluations per step)
  on ``--n`` graphs with ``--steps`` steps spread over the whole time grid (early steps see noisier, denser
  graphs than late ones), extrapolated to 1,000 samples x 1,000 steps.

Times are CPU seconds of the worker (``time.process_time``), the median over ``--rounds`` turns; the GDSS worker
runs this checkout's code (its networks are not part of the change).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "data/runs/molgen/ablation"
BEFORE = "1a87dd3"  # the last commit computing CAN on pair lists (lift_graphs complex per call, CSR kernel)
VARIANTS = {"gdss": "gdss_s42", "can": "can_s42", "can_feat_ring": "can_feat_ring_s42"}


# ----------------------------------------------------------------------------------------- worker
def worker(run: str, n: int, steps: int, cache_dir: str) -> None:
    """Serve timings on stdin commands ``train`` / ``sample`` (one JSON line each) for the run ``run``."""
    import torch

    torch.set_num_threads(1)
    from molgen.losses import dsm_loss
    from molgen.nets import kernels
    from molgen.sampling import sample_flags
    from molgen.train import EMA, load_run

    try:  # this checkout
        from molgen.build import build_optimizer, build_sampler, build_sdes
        from molgen.nets.score import GraphScore
    except ImportError:  # a revision from before molgen.build (--before)
        from molgen.losses import GraphScore
        from molgen.sampling import make_sampler
        from molgen.train import build_sdes
        from molgen.train import make_optimizer as build_optimizer

        def build_sampler(cfg, sde_x, sde_a, num_steps):
            s = cfg.sampler
            return make_sampler(sde_x, sde_a, predictor=s.predictor, corrector=s.corrector, snr=s.snr,
                                scale_eps=s.scale_eps, n_steps=s.n_steps, probability_flow=s.probability_flow,
                                denoise=s.noise_removal, eps=s.eps, num_steps=num_steps)

    cfg, net_x, net_a, ckpt = load_run(run)
    torch.set_num_threads(1)  # the kernels too: their threads follow torch's (OMP_NUM_THREADS=1 in the worker)
    sde_x, sde_a = build_sdes(cfg)
    gen = torch.Generator().manual_seed(0)
    try:
        from molgen.data import load_dataset, node_flags

        ds = load_dataset(cfg.data.dataset, cache_dir=cache_dir, atom_features=cfg.data.atom_features,
                          download=False)
        x_all, a_all, f_all = ds.X_train.float(), ds.A_train.float(), node_flags(ds.X_train)
        n_train, data = ds.n_train, "qm9"
    except Exception:  # noqa: BLE001 - no dataset here: QM9-shaped random graphs
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from molgen_speed import QM9_N_TRAIN, random_graphs

        x4, a_all, f_all = random_graphs(8192, gen)
        x_all = torch.nn.functional.pad(x4, (0, cfg.data.max_feat_num - x4.shape[-1]))
        n_train, data = QM9_N_TRAIN, "random"
    opt_x, opt_a = build_optimizer(net_x, cfg), build_optimizer(net_a, cfg)
    ema_x, ema_a = EMA(net_x, cfg.train.ema), EMA(net_a, cfg.train.ema)
    sampler = build_sampler(cfg, sde_x, sde_a, steps)
    flags = sample_flags(ckpt["n_atoms_counts"], n, cfg.data.max_node_num, generator=gen)
    score = GraphScore(net_x, net_a, sde_x, sde_a)

    def train_step() -> float:
        net_x.train(), net_a.train()
        idx = torch.randint(0, x_all.shape[0], (cfg.data.batch_size,), generator=gen)
        t0 = time.process_time()
        lx, la = dsm_loss(net_x, net_a, sde_x, sde_a, x_all[idx], a_all[idx], f_all[idx], eps=cfg.train.eps,
                          reduce_mean=cfg.train.reduce_mean, generator=gen)
        opt_x.zero_grad(set_to_none=True), opt_a.zero_grad(set_to_none=True)
        (lx + la).backward()
        torch.nn.utils.clip_grad_norm_(net_x.parameters(), cfg.train.grad_norm)
        torch.nn.utils.clip_grad_norm_(net_a.parameters(), cfg.train.grad_norm)
        opt_x.step(), opt_a.step()
        ema_x.update(net_x), ema_a.update(net_a)
        return time.process_time() - t0

    @torch.inference_mode()
    def sample() -> float:
        net_x.eval(), net_a.eval()
        t0 = time.process_time()
        sampler(score, flags, cfg.data.max_feat_num, generator=torch.Generator().manual_seed(1))
        return time.process_time() - t0

    batches = -(-n_train // cfg.data.batch_size)
    print(json.dumps({"ready": True, "batches_per_epoch": batches, "data": data,
                      "kernels": kernels.available()}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "train":
            print(json.dumps({"train": train_step()}), flush=True)
        elif cmd == "sample":
            print(json.dumps({"sample": sample()}), flush=True)
        elif cmd == "quit":
            break


# ----------------------------------------------------------------------------------------- driver
class Worker:
    def __init__(self, lib: Path, run: Path, args):
        env = dict(os.environ, PYTHONPATH=str(lib), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(run), "--n", str(args.n), "--steps",
             str(args.steps), "--cache-dir", str(args.cache_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, cmd: str) -> float:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()[cmd]

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait()


def extract_lib(rev: str, dest: Path) -> str:
    """``lib/`` of git revision ``rev`` under ``dest``; returns the full commit hash."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = dest / "lib.tar"
    subprocess.run(["git", "archive", "-o", str(archive), commit, "lib"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return commit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--before", type=str, default=BEFORE, help="git revision of the CAN code before the change")
    ap.add_argument("--rounds", type=int, default=5, help="measurements per worker and kind (medians reported)")
    ap.add_argument("--n", type=int, default=1000, help="graphs sampled at once")
    ap.add_argument("--steps", type=int, default=20, help="sampler steps timed (spread over the time grid)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "data/cache", help="molgen's dataset cache")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.steps, str(args.cache_dir))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        before = extract_lib(args.before, Path(tmp))
        after = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "lib"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip())
        workers = {"gdss": Worker(ROOT / "lib", RUNS / VARIANTS["gdss"], args)}
        for v in ("can", "can_feat_ring"):
            workers[f"{v}_before"] = Worker(Path(tmp) / "lib", RUNS / VARIANTS[v], args)
            workers[f"{v}_after"] = Worker(ROOT / "lib", RUNS / VARIANTS[v], args)
        times: dict[str, dict[str, list[float]]] = {k: {"train": [], "sample": []} for k in workers}
        load = [os.getloadavg()[0]]
        for w in workers.values():  # warm-up: kernels, first allocations
            w.ask("train"), w.ask("sample")
        for _ in range(args.rounds):
            for kind in ("train", "sample"):
                for name, w in workers.items():
                    times[name][kind].append(w.ask(kind))
            load.append(os.getloadavg()[0])
        info = {k: w.info for k, w in workers.items()}
        for w in workers.values():
            w.close()

    batches = info["gdss"]["batches_per_epoch"]
    scale = (1000 / args.n) * (1000 / args.steps)
    res: dict[str, dict] = {}
    for name, t in times.items():
        res[name] = {"s_per_epoch_train": round(statistics.median(t["train"]) * batches, 1),
                     "s_per_1000_samples_1000_steps": round(statistics.median(t["sample"]) * scale, 1),
                     "train_steps_s": [round(v, 4) for v in t["train"]],
                     "sample_runs_s": [round(v, 3) for v in t["sample"]]}
    g = res["gdss"]
    for name, r in res.items():
        r["train_vs_gdss"] = round(r["s_per_epoch_train"] / g["s_per_epoch_train"], 2)
        r["sample_vs_gdss"] = round(r["s_per_1000_samples_1000_steps"] / g["s_per_1000_samples_1000_steps"], 2)
    out = {"benchmark": "molgen_can_cost", "before": before,
           "after": after + (" (uncommitted changes)" if dirty else ""),
           "threads": 1, "clock": "process CPU time", "rounds": args.rounds, "data": info["gdss"]["data"],
           "batches_per_epoch": batches, "n": args.n, "steps_timed": args.steps,
           "kernels": info["gdss"]["kernels"], "loadavg": [round(v, 2) for v in load], "results": res}
    for v in ("can", "can_feat_ring"):
        b, a = res[f"{v}_before"], res[f"{v}_after"]
        out[f"{v}_speedup"] = {"train": round(b["s_per_epoch_train"] / a["s_per_epoch_train"], 2),
                               "sample": round(b["s_per_1000_samples_1000_steps"]
                                               / a["s_per_1000_samples_1000_steps"], 2)}
    print(f"molgen CAN cost (1 thread, CPU seconds, median of {args.rounds}; load average "
          f"{min(load):.1f}-{max(load):.1f} on {os.cpu_count()} cores); before = {before[:10]}")
    print(f"{'':22s} {'s/epoch':>9s} {'x GDSS':>7s} {'s/1000 samples':>15s} {'x GDSS':>7s}")
    for name, r in res.items():
        print(f"{name:22s} {r['s_per_epoch_train']:9.1f} {r['train_vs_gdss']:7.2f} "
              f"{r['s_per_1000_samples_1000_steps']:15.1f} {r['sample_vs_gdss']:7.2f}")
    for v in ("can", "can_feat_ring"):
        sp = out[f"{v}_speedup"]
        print(f"{v}: after / before speedup: training {sp['train']:.2f}x, sampling {sp['sample']:.2f}x")
    if args.json:
        sys.path.insert(0, str(ROOT / "lib"))
        from common.io import write_json

        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
