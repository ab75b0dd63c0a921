"""Speed of the GDSS baseline (molgen) on QM9 at GDSS's model sizes: seconds per training epoch and seconds to
sample 1,000 molecules with 1,000 steps.

    python benchmarks/molgen_speed.py [--threads 2] [--batches 8] [--steps 10] [--data real|random] [--no-ref]

* Training: full steps (denoising score-matching loss of both networks, backward, gradient clipping, two Adam
  updates, two EMA updates) at batch 1024; s/epoch = median s/step x ceil(n_train / 1024), n_train = 120,803
  (GDSS's QM9 split) unless the real data are loaded (the fastest step is printed too: on a shared machine
  the median carries the other jobs' load). The per-epoch EMA test loss is timed separately.
* Sampling: GDSS's QM9 sampler (Reverse-diffusion predictor + Langevin corrector, two score evaluations of both
  networks per step) on 1,000 graphs; s per 1,000 samples x 1,000 steps = median s/step x 1,000, measured on
  ``--steps`` steps (extrapolated, stated in the output).
* ``ref``: the same steps with the networks computed the way the GDSS reference code does (loop over channels,
  full N x N edge MLPs: ``molgen.nets.gdss_reference``), same parameters, same process, interleaved with ours so
  that both see the same machine load; ``--ref-threads`` sets its torch threads (default ``--threads``; GDSS
  runs torch's default, all cores). The GDSS reference code itself measured 94 s/epoch and 586 s/1,000
  samples on this machine (the brief's numbers); both ratios are printed.
* Threads: ours runs the fused kernels on ``--threads`` threads and torch's own (tiny) ops on one thread, as
  ``molgen.train`` does by default (``train.num_threads``, ``train.torch_threads``).

Data: ``--data real`` uses ``molgen.data.load_dataset("qm9")`` (graphs with their real node counts); ``random``
(default when loading fails) draws QM9-shaped graphs: node counts from QM9's distribution, random bonds.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from molgen.build import build_nets, build_optimizer, build_sampler, build_sdes  # noqa: E402
from molgen.config import load_config  # noqa: E402
from molgen.losses import dsm_loss  # noqa: E402
from molgen.nets import kernels  # noqa: E402
from molgen.nets.gdss import set_kernel_threads  # noqa: E402
from molgen.nets.gdss_reference import reference_score_a, reference_score_x  # noqa: E402
from molgen.nets.score import GraphScore  # noqa: E402
from molgen.sampling import sample_flags  # noqa: E402
from molgen.train import EMA  # noqa: E402

GDSS_EPOCH_S = 94.0
GDSS_SAMPLE_S = 586.0
QM9_N_TRAIN = 120_803
# QM9 heavy-atom counts 1..9 (fractions of the dataset)
QM9_NODE_HIST = [0, 0.00004, 0.00011, 0.00028, 0.00106, 0.00453, 0.02048, 0.08775, 0.33208, 0.55367]


def random_graphs(n: int, gen: torch.Generator):
    flags = sample_flags(torch.tensor(QM9_NODE_HIST), n, 9, generator=gen)
    types = torch.randint(0, 4, (n, 9), generator=gen)
    x = torch.nn.functional.one_hot(types, 4).float() * flags.unsqueeze(-1)
    bonds = torch.randint(0, 4, (n, 9, 9), generator=gen).float() * (torch.rand(n, 9, 9, generator=gen) < 0.25)
    a = bonds.triu(1)
    a = (a + a.transpose(1, 2)) * flags.unsqueeze(-1) * flags.unsqueeze(-2)
    return x, a, flags


class RefNet(torch.nn.Module):
    """A network computed with GDSS's loop structure from the parameters of ``net``."""

    def __init__(self, net, fn):
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self, x, adj, flags):
        return self.fn(self.net, x, adj, flags)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=8, help="timed training steps per variant")
    ap.add_argument("--steps", type=int, default=10, help="timed sampling steps per variant")
    ap.add_argument("--data", choices=["real", "random"], default="random")
    ap.add_argument("--no-ref", action="store_true", help="skip the GDSS-structured reference")
    ap.add_argument("--ref-threads", type=int, default=None, help="torch threads of ref (default: --threads)")
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    args = ap.parse_args()
    cfg = load_config("qm9_gdss")
    gen = torch.Generator().manual_seed(0)

    n_train = QM9_N_TRAIN
    source = "random QM9-shaped graphs"
    if args.data == "real":
        try:
            from molgen.data import load_dataset, node_flags

            ds = load_dataset("qm9")
            X, A, Fl = ds.X_train, ds.A_train, node_flags(ds.X_train)
            n_train = ds.n_train
            source = f"QM9 ({n_train} training molecules)"
        except Exception as e:  # noqa: BLE001
            print(f"real data unavailable ({e}); using random graphs", file=sys.stderr)
            args.data = "random"
    if args.data == "random":
        X, A, Fl = random_graphs(8192, gen)
    batches_per_epoch = math.ceil(n_train / cfg.data.batch_size)

    sde_x, sde_a = build_sdes(cfg)
    net_x, net_a = build_nets(cfg)
    set_kernel_threads(net_x, args.threads), set_kernel_threads(net_a, args.threads)
    variants = {"ours": (net_x, net_a)}
    # ours: the fused kernels on args.threads (Python) threads, torch's own ops on one thread (as train.py does);
    # ref: torch on args.threads threads, as the GDSS code runs
    torch_threads = {"ours": 1 if kernels.available() else args.threads, "ref": args.ref_threads or args.threads}
    if not args.no_ref:
        variants["ref"] = (RefNet(net_x, reference_score_x), RefNet(net_a, reference_score_a))
    opt_x, opt_a = build_optimizer(net_x, cfg), build_optimizer(net_a, cfg)
    ema_x, ema_a = EMA(net_x, cfg.train.ema), EMA(net_a, cfg.train.ema)

    def train_step(fx, fa) -> float:
        idx = torch.randint(0, X.shape[0], (cfg.data.batch_size,), generator=gen)
        t0 = time.perf_counter()
        lx, la = dsm_loss(fx, fa, sde_x, sde_a, X[idx], A[idx], Fl[idx], eps=cfg.train.eps,
                          reduce_mean=cfg.train.reduce_mean, generator=gen)
        opt_x.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)
        (lx + la).backward()
        torch.nn.utils.clip_grad_norm_(net_x.parameters(), cfg.train.grad_norm)
        torch.nn.utils.clip_grad_norm_(net_a.parameters(), cfg.train.grad_norm)
        opt_x.step(), opt_a.step()
        ema_x.update(net_x), ema_a.update(net_a)
        return time.perf_counter() - t0

    @torch.no_grad()
    def test_step(fx, fa) -> float:
        idx = torch.randint(0, X.shape[0], (cfg.data.batch_size,), generator=gen)
        t0 = time.perf_counter()
        dsm_loss(fx, fa, sde_x, sde_a, X[idx], A[idx], Fl[idx], eps=cfg.train.eps, generator=gen)
        return time.perf_counter() - t0

    sampler = build_sampler(cfg, sde_x, sde_a, args.steps)
    flags_s = sample_flags(torch.tensor(QM9_NODE_HIST), 1000, 9, generator=gen)

    @torch.inference_mode()
    def sample_run(fx, fa) -> float:
        score = GraphScore(fx, fa, sde_x, sde_a)
        sampler(score, flags_s, 4, generator=gen)  # warm-up (1 step is enough, but keep it simple)
        t0 = time.perf_counter()
        sampler(score, flags_s, 4, generator=gen)
        return (time.perf_counter() - t0) / args.steps

    print(f"molgen speed benchmark: torch {torch.__version__}, {args.threads} threads "
          f"(ours: kernels {args.threads}, torch {torch_threads['ours']}; ref: torch {torch_threads['ref']}), "
          f"fused kernels: {kernels.available() or kernels.unavailable_reason()}, data: {source}")
    res: dict[str, dict] = {k: {"train": [], "test": [], "sample": []} for k in variants}
    for name, (fx, fa) in variants.items():  # warm-up
        torch.set_num_threads(torch_threads[name])
        train_step(fx, fa)
    for _ in range(args.batches):
        for name, (fx, fa) in variants.items():
            torch.set_num_threads(torch_threads[name])
            res[name]["train"].append(train_step(fx, fa))
    for _ in range(3):
        for name, (fx, fa) in variants.items():
            torch.set_num_threads(torch_threads[name])
            res[name]["test"].append(test_step(fx, fa))
    for _ in range(2):
        for name, (fx, fa) in variants.items():
            torch.set_num_threads(torch_threads[name])
            res[name]["sample"].append(sample_run(fx, fa))

    out = {"threads": args.threads, "data": source, "batches_per_epoch": batches_per_epoch,
           "n_test_batches": math.ceil(13_082 / cfg.data.batch_size), "sample_steps_measured": args.steps}
    for name, r in res.items():
        step = statistics.median(r["train"])
        out[name] = {
            "s_per_train_step": round(step, 4),
            "s_per_epoch_train": round(step * batches_per_epoch, 2),
            "s_per_epoch_train_best_step": round(min(r["train"]) * batches_per_epoch, 2),
            "s_per_epoch_test_loss": round(statistics.median(r["test"]) * out["n_test_batches"], 2),
            "s_per_1000_samples_1000_steps": round(min(r["sample"]) * 1000, 1),
        }
    o = out["ours"]
    print(f"ours: {o['s_per_epoch_train']:.1f} s/epoch (median step; fastest step: "
          f"{o['s_per_epoch_train_best_step']:.1f}) (train, {batches_per_epoch} batches of 1024; "
          f"+{o['s_per_epoch_test_loss']:.1f} s EMA test loss); "
          f"{o['s_per_1000_samples_1000_steps']:.1f} s per 1,000 samples x 1,000 steps "
          f"(extrapolated from {args.steps} steps)")
    print(f"  vs GDSS reference code ({GDSS_EPOCH_S:.0f} s/epoch, {GDSS_SAMPLE_S:.0f} s/sampling): "
          f"{GDSS_EPOCH_S / o['s_per_epoch_train']:.1f}x per epoch "
          f"({GDSS_EPOCH_S / (o['s_per_epoch_train'] + o['s_per_epoch_test_loss']):.1f}x with the test loss), "
          f"{GDSS_SAMPLE_S / o['s_per_1000_samples_1000_steps']:.1f}x sampling")
    if "ref" in out:
        r = out["ref"]
        print(f"ref (GDSS-structured networks, same run): {r['s_per_epoch_train']:.1f} s/epoch, "
              f"{r['s_per_1000_samples_1000_steps']:.1f} s/sampling -> ours is "
              f"{r['s_per_epoch_train'] / o['s_per_epoch_train']:.1f}x (train), "
              f"{r['s_per_1000_samples_1000_steps'] / o['s_per_1000_samples_1000_steps']:.1f}x (sampling) faster")
    try:
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"machine load average during the run: {load} (2 cores; other jobs slow every number)")
        out["loadavg"] = float(load)
    except OSError:
        pass
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
