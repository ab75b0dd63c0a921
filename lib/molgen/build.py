"""Where a run's config becomes objects: its SDEs, its score networks (by name, from ``nets.SCORE_NETWORKS``),
its sampler (by name, ``sampling.make_sampler``), its optimisers, and the CPU threads they run on.

Training (``train.Trainer``), loading a trained run (``train.load_run``), sampling (``pipeline.sample_run``)
and the benchmarks build through these functions, so that a config field is read in one place.

CPU threads (``configure_threads``): networks whose CPU work runs in the fused kernels (``kernel_bound``,
GDSS's) split each batch over ``train.num_threads`` kernel threads (unset: torch's thread count when this
module was imported, which follows ``OMP_NUM_THREADS``) while torch's own intra-op pool gets
``train.torch_threads`` (default 1: its ops here are tiny); other networks (CAN) run on ``train.num_threads``
torch threads, unset 1. Why (``benchmarks/threads.py``, 2-core machine, beside one competing one-thread job):
torch's OpenMP threads collapse when they outnumber the free cores (CAN training 7.5 steps/s on one thread,
1.0 on two; alone, two threads gave 1.27x), the kernels' threads do not (GDSS 12.2 on one, 10.9 on two;
alone 1.5x).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from .config import RunConfig
from .derived import DerivedAtomFeatures, WithDerivedInput
from .nets import SCORE_NETWORKS, kernels
from .nets.gdss import set_kernel_threads
from .sampling import make_sampler
from .sde import SDE, make_sde

DEFAULT_THREADS = torch.get_num_threads()
"""torch's thread count at import (it follows OMP_NUM_THREADS), before ``configure_threads`` changes it."""


def build_sdes(cfg: RunConfig) -> tuple[SDE, SDE]:
    """The forward SDEs of X and A (``sde.x``, ``sde.adj``)."""
    s = cfg.sde
    return (make_sde(s.x.type, s.x.beta_min, s.x.beta_max, s.x.num_scales),
            make_sde(s.adj.type, s.adj.beta_min, s.adj.beta_max, s.adj.num_scales))


def build_nets(cfg: RunConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The score networks named by ``model.x`` and ``model.adj``, freshly initialised (X's first); with
    ``data.derived_features`` those of ``data.derived_networks`` see them appended to X_t
    (``derived.WithDerivedInput``)."""
    nets = SCORE_NETWORKS[cfg.model.x].from_config(cfg), SCORE_NETWORKS[cfg.model.adj].from_config(cfg)
    d = cfg.data
    if not d.derived_features:
        return nets
    derive = DerivedAtomFeatures(d.derived_features, d.feature_spec, d.bond_unit)
    return tuple(WithDerivedInput(net, derive) if name in d.derived_networks else net
                 for name, net in zip(("x", "adj"), nets))


def build_sampler(cfg: RunConfig, sde_x: SDE, sde_a: SDE, num_steps: int | None = None):
    """The sampler of the ``sampler`` section on ``num_steps`` time steps (default: the SDE's ``num_scales``)."""
    s = cfg.sampler
    return make_sampler(sde_x, sde_a, predictor=s.predictor, corrector=s.corrector, snr=s.snr,
                        scale_eps=s.scale_eps, n_steps=s.n_steps, probability_flow=s.probability_flow,
                        denoise=s.noise_removal, eps=s.eps, num_steps=num_steps)


def build_optimizer(net: torch.nn.Module, cfg: RunConfig) -> torch.optim.Adam:
    """GDSS's Adam (lr, weight decay as L2 in the gradient); the fused implementation (one kernel for all
    parameters, the same update) on CPU and CUDA."""
    dev = next(net.parameters()).device.type
    return torch.optim.Adam(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            fused=dev in ("cpu", "cuda"))


def configure_threads(cfg: RunConfig, device: torch.device, nets: Sequence[torch.nn.Module]) -> None:
    """Give ``nets`` and torch the CPU threads of ``cfg`` (see the module docstring) and flush denormals to
    zero in torch's ops (trained GDSS weights produce denormals, whose slow path made a step three times
    slower). Nothing on a GPU. Without the fused kernels (no C++ compiler, ``MOLGEN_KERNELS=0``) the networks
    run their PyTorch path, and a warning says so once."""
    if device.type != "cpu":
        return
    torch.set_flush_denormal(True)
    if not kernels.available():
        warnings.warn(f"molgen: the fused CPU kernels are unavailable ({kernels.unavailable_reason()}); the "
                      "networks run their PyTorch path (a GDSS training step 4.1x slower: "
                      "benchmarks/molgen_kernels.py)", stacklevel=2)
    if kernels.available() and all(getattr(net, "kernel_bound", False) for net in nets):
        for net in nets:
            set_kernel_threads(net, cfg.train.num_threads or DEFAULT_THREADS)
        if cfg.train.torch_threads:
            torch.set_num_threads(cfg.train.torch_threads)
    else:
        for net in nets:
            set_kernel_threads(net, None)
        torch.set_num_threads(cfg.train.num_threads or 1)
