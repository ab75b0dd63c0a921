"""Speed of the cell-attention score networks with the fused attention aggregate (``molgen.nets.kernels.
can_attend``, forward and backward) and with the torch ops a CPU without the kernel runs (pair lists through
torch_geometric's softmax and scatter): sampling and training. (``molgen_can_cost.py`` sets them against GDSS.)

    python benchmarks/molgen_can_speed.py [--run DIR] [--n 1000] [--steps 20] [--repeats 2] [--train-steps 5]
        [--json OUT]

The networks of a trained run (default: the committed ``can_feat_ring`` run of seed 42) sample ``--n`` QM9
graphs with the run's sampler (Reverse-diffusion predictor + Langevin corrector) on ``--steps`` steps spread
over the whole time grid (early steps lift noisier, denser graphs than late ones, so the work per step
follows the trajectory), one torch thread; the two paths alternate, and the fastest of ``--repeats`` timings
of each is extrapolated to 1,000 samples x 1,000 steps. Training: one step (denoising score-matching loss of
both networks and its backward, no optimiser) at the config's batch size on QM9-shaped random graphs (node
counts from QM9, random bonds, one-hot atom types in the first four feature columns); the fastest of
``--train-steps`` per path.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from common.io import write_json  # noqa: E402
from molgen.build import build_sampler, build_sdes  # noqa: E402
from molgen.losses import dsm_loss  # noqa: E402
from molgen.nets import kernels  # noqa: E402
from molgen.nets.gdss import set_kernel_threads, set_use_kernels  # noqa: E402
from molgen.nets.score import GraphScore  # noqa: E402
from molgen.sampling import sample_flags  # noqa: E402
from molgen.train import load_run  # noqa: E402
from molgen_speed import random_graphs  # noqa: E402

DEFAULT_RUN = Path(__file__).resolve().parents[1] / "data/runs/molgen/ablation_equal_epochs/can_feat_ring_s42"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=DEFAULT_RUN)
    ap.add_argument("--n", type=int, default=1000, help="graphs sampled at once")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps timed (spread over the time grid)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=5, help="timed training steps per path (0: none)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not kernels.available():
        print(f"fused kernels unavailable: {kernels.unavailable_reason()}", file=sys.stderr)
        return 1
    cfg, net_x, net_a, ckpt = load_run(args.run)
    set_kernel_threads(net_x, 1), set_kernel_threads(net_a, 1)
    sde_x, sde_a = build_sdes(cfg)
    sampler = build_sampler(cfg, sde_x, sde_a, args.steps)
    flags = sample_flags(ckpt["n_atoms_counts"], args.n, cfg.data.max_node_num,
                         generator=torch.Generator().manual_seed(0))
    score = GraphScore(net_x, net_a, sde_x, sde_a)

    @torch.inference_mode()
    def timed(fused: bool) -> float:
        set_use_kernels(net_x, fused), set_use_kernels(net_a, fused)
        t0 = time.perf_counter()
        sampler(score, flags, cfg.data.max_feat_num, generator=torch.Generator().manual_seed(1))
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"fused": [], "torch": []}
    for name in times:  # warm-up: loading the kernels, first allocations
        timed(name == "fused")
    for _ in range(args.repeats):
        for name in times:
            times[name].append(timed(name == "fused"))
    gen = torch.Generator().manual_seed(2)
    x4, adj_t, flags_t = random_graphs(cfg.data.batch_size, gen)
    x_t = torch.nn.functional.pad(x4, (0, cfg.data.max_feat_num - x4.shape[-1]))

    def train_step(fused: bool) -> float:
        set_use_kernels(net_x, fused), set_use_kernels(net_a, fused)
        net_x.zero_grad(), net_a.zero_grad()
        t0 = time.perf_counter()
        lx, la = dsm_loss(net_x, net_a, sde_x, sde_a, x_t, adj_t, flags_t, eps=cfg.train.eps,
                          reduce_mean=cfg.train.reduce_mean, generator=gen)
        (lx + la).backward()
        return time.perf_counter() - t0

    train: dict[str, list[float]] = {"fused": [], "torch": []}
    if args.train_steps:
        for name in train:
            train_step(name == "fused")
        for _ in range(args.train_steps):
            for name in train:
                train[name].append(train_step(name == "fused"))
    scale = (1000 / args.n) * (1000 / args.steps)
    out = {"run": str(args.run), "config": cfg.name, "n": args.n, "steps_timed": args.steps,
           "torch": torch.__version__, "threads": 1}
    for name, ts in times.items():
        out[f"s_per_1000_samples_1000_steps_{name}"] = round(min(ts) * scale, 1)
    out["speedup"] = round(min(times["torch"]) / min(times["fused"]), 2)
    if args.train_steps:
        for name, ts in train.items():
            out[f"s_per_train_step_{name}"] = round(min(ts), 4)
        out["train_speedup"] = round(min(train["torch"]) / min(train["fused"]), 2)
    try:
        out["loadavg"] = float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        pass
    print(f"CAN sampling ({cfg.name}, {args.n} graphs, {args.steps} steps, 1 thread): "
          f"fused aggregate {out['s_per_1000_samples_1000_steps_fused']:.1f} s, torch_geometric ops "
          f"{out['s_per_1000_samples_1000_steps_torch']:.1f} s per 1,000 samples x 1,000 steps "
          f"(extrapolated): {out['speedup']:.2f}x; load average {out.get('loadavg', '?')} on 2 cores")
    if args.train_steps:
        print(f"CAN training step (batch {cfg.data.batch_size}, loss and backward of both networks): fused "
              f"{out['s_per_train_step_fused']:.3f} s, torch_geometric ops {out['s_per_train_step_torch']:.3f} s: "
              f"{out['train_speedup']:.2f}x")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
