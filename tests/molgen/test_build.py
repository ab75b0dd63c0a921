"""A config becomes objects in one place: networks and samplers by name, the CPU threads of a run."""
from __future__ import annotations

import typing

import pytest
import torch

from molgen import build
from molgen.config import ModelConfig, load_config
from molgen.nets import SCORE_NETWORKS, kernels
from molgen.nets.gdss import kernel_threads
from molgen.sampling import PCSampler, S4Solver
from molgen.train import Trainer, load_run
from test_train import synthetic_data

CPU = torch.device("cpu")


def test_every_network_the_config_names_is_registered():
    names = set(typing.get_args(ModelConfig.model_fields["x"].annotation))
    names |= set(typing.get_args(ModelConfig.model_fields["adj"].annotation))
    assert names == set(SCORE_NETWORKS)
    for name in ("tiny", "tiny_can"):
        cfg = load_config(name)
        net_x, net_a = build.build_nets(cfg)
        assert (type(net_x).__name__, type(net_a).__name__) == (cfg.model.x, cfg.model.adj)


def test_sampler_from_the_config():
    cfg = load_config("tiny", ["sampler.snr=0.1", "sampler.n_steps=2", "sampler.noise_removal=false"])
    sde_x, sde_a = build.build_sdes(cfg)
    pc = build.build_sampler(cfg, sde_x, sde_a)
    assert isinstance(pc, PCSampler) and (pc.snr, pc.n_steps, pc.denoise, pc.num_steps) == (0.1, 2, False, 20)
    s4 = build.build_sampler(load_config("tiny", ["sampler.predictor=S4"]), sde_x, sde_a, num_steps=5)
    assert isinstance(s4, S4Solver) and s4.num_steps == 5


def test_plain_torch_networks_default_to_one_thread(monkeypatch):
    """Without train.num_threads, plain-torch networks run on one torch thread whatever the core count (two
    beside another job collapse); an explicit train.num_threads wins."""
    monkeypatch.setattr(build, "DEFAULT_THREADS", 3)
    torch.set_num_threads(3)
    cfg = load_config("tiny_can")
    build.configure_threads(cfg, CPU, build.build_nets(cfg))
    assert torch.get_num_threads() == 1
    cfg = load_config("tiny_can", ["train.num_threads=2"])
    build.configure_threads(cfg, CPU, build.build_nets(cfg))
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not kernels.available(), reason=f"no fused kernels: {kernels.unavailable_reason()}")
def test_kernel_networks_get_the_threads_and_torch_one(monkeypatch):
    cfg = load_config("tiny", ["train.num_threads=2"])
    nets = build.build_nets(cfg)
    build.configure_threads(cfg, CPU, nets)
    assert torch.get_num_threads() == 1
    assert all(kernel_threads(m) == 2 for net in nets for m in net.modules())
    monkeypatch.setattr(build, "DEFAULT_THREADS", 3)  # unset: the kernels take torch's count at import
    build.configure_threads(load_config("tiny"), CPU, nets)
    assert all(kernel_threads(m) == 3 for net in nets for m in net.modules())


def test_loading_a_run_leaves_the_threads_alone(tmp_path):
    Trainer(load_config("tiny", ["train.num_epochs=1", "train.num_threads=2", "train.torch_threads=2"]), tmp_path,
            data=synthetic_data(), progress=False).fit()
    torch.set_num_threads(1)
    _, net_x, net_a, _ = load_run(tmp_path)
    assert torch.get_num_threads() == 1 and kernel_threads(net_a) is None


def test_without_the_kernels_a_warning_says_so_and_torch_runs(monkeypatch):
    monkeypatch.setattr(kernels, "available", lambda: False)
    monkeypatch.setattr(kernels, "unavailable_reason", lambda: "RuntimeError: no C++ compiler found")
    cfg = load_config("tiny")
    nets = build.build_nets(cfg)
    with pytest.warns(UserWarning, match=r"kernels are unavailable \(RuntimeError: no C\+\+ compiler found\); the "
                                         "networks run their PyTorch path"):
        build.configure_threads(cfg, CPU, nets)
    assert torch.get_num_threads() == 1 and all(kernel_threads(m) is None for net in nets for m in net.modules())
