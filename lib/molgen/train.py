"""Training GDSS: two Adam optimisers (X and A networks), EMA, gradient clipping, ExponentialLR, checkpoints
every epoch (atomic: temp file then ``os.replace``) and resume from the last one, a JSONL loss log.

A run directory holds ``config.yaml`` (the resolved config), ``checkpoint.pt`` (the last completed epoch) and
``log.jsonl`` (one line per epoch) and ``sessions.jsonl`` (what trained it: device, commit). Training into a directory that has a checkpoint resumes it; a checkpoint
made with a different config (apart from ``config.RESUMABLE_KEYS``) is refused with the list of differences.

Determinism: all randomness of training (batch order, t, noise) comes from generators seeded by ``seed`` and
saved in the checkpoint, so a resumed run continues exactly as an uninterrupted one would (same machine, same
thread count).

The SDEs, networks, optimisers and CPU threads of a run are built from its config by ``molgen.build``.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from common.io import CheckpointMismatch, save_torch, write_text
from common.provenance import device_name, git_commit

from .build import build_nets, build_optimizer, build_sdes, configure_threads
from .config import RunConfig, config_differences, dump_config
from .device import get_device, seed_everything
from .losses import dsm_loss
from .sampling import node_count_histogram

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
SESSIONS = "sessions.jsonl"
"""One line per training session (epochs from-to, device, commit, seconds), rewritten every epoch."""
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of parameters with GDSS's warm-up: decay_n = min(decay, (1+n)/(10+n))."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in module.parameters() if p.requires_grad]

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        params = [p.detach() for p in module.parameters() if p.requires_grad]
        torch._foreach_lerp_(self.shadow, params, 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        for s, p in zip(self.shadow, [p for p in module.parameters() if p.requires_grad]):
            p.copy_(s)

    @contextmanager
    def swapped(self, module: torch.nn.Module):
        """Temporarily load the averaged parameters into ``module``."""
        saved = [p.detach().clone() for p in module.parameters()]
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                for p, s in zip(module.parameters(), saved):
                    p.copy_(s)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.num_updates = state["decay"], state["num_updates"]
        self.shadow = [s.clone().to(p.device) for s, p in zip(state["shadow"], self.shadow)]


def load_checkpoint(run_dir: str | Path, map_location="cpu") -> dict:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {path})")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatch(f"{path}: checkpoint format {ckpt.get('format_version')} is not {FORMAT_VERSION}")
    return ckpt


def check_compatible(ckpt: dict, cfg: RunConfig, source: str) -> None:
    diffs = config_differences(ckpt["config"], cfg)
    if diffs:
        raise CheckpointMismatch(
            f"the checkpoint in {source} was made with a different config; differences (checkpoint -> asked):\n  "
            + "\n  ".join(diffs)
            + "\nuse a new --out directory, or the same settings to resume")


# ----------------------------------------------------------------------------------------- data
@dataclass
class TrainData:
    X_train: torch.Tensor
    A_train: torch.Tensor
    F_train: torch.Tensor
    X_test: torch.Tensor
    A_test: torch.Tensor
    F_test: torch.Tensor
    vocab: list
    info: dict

    @classmethod
    def from_dataset(cls, ds, cfg: RunConfig) -> "TrainData":
        from .data import node_flags, scale_adjacency

        n, f = ds.X_train.shape[1], ds.X_train.shape[2]
        if n != cfg.data.max_node_num or f != cfg.data.max_feat_num:
            raise ValueError(f"dataset {ds.name} has N={n}, F={f} but the config says data.max_node_num="
                             f"{cfg.data.max_node_num}, data.max_feat_num={cfg.data.max_feat_num}")
        mode = cfg.data.adj_scale
        return cls(ds.X_train.float(), scale_adjacency(ds.A_train.float(), mode), node_flags(ds.X_train),
                   ds.X_test.float(), scale_adjacency(ds.A_test.float(), mode), node_flags(ds.X_test),
                   list(ds.vocab), {"summary": ds.summary(), "n_train": ds.n_train, "n_test": ds.n_test})


def load_train_data(cfg: RunConfig) -> TrainData:
    from .data import load_dataset

    ds = load_dataset(cfg.data.dataset, split_path=cfg.data.split_path, seed=cfg.data.split_seed,
                      limit=cfg.data.limit, atom_features=cfg.data.atom_features)
    return TrainData.from_dataset(ds, cfg)


# ----------------------------------------------------------------------------------------- trainer
class Trainer:
    """Builds everything from a config, resumes from ``out_dir`` if it holds a checkpoint, trains."""

    def __init__(self, cfg: RunConfig, out_dir: str | Path, data: TrainData | None = None,
                 progress: bool = True, device: torch.device | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.progress = progress
        self.device = device or get_device(cfg.device)
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt_path = self.out / CHECKPOINT
        ckpt = load_checkpoint(self.out) if ckpt_path.is_file() else None
        if ckpt is not None:
            check_compatible(ckpt, cfg, str(self.out))

        seed_everything(cfg.seed)
        self.data = data if data is not None else load_train_data(cfg)
        self.sde_x, self.sde_a = build_sdes(cfg)
        self.net_x, self.net_a = build_nets(cfg)
        configure_threads(cfg, self.device, (self.net_x, self.net_a))
        self.net_x.to(self.device), self.net_a.to(self.device)
        t = cfg.train
        self.opt_x = build_optimizer(self.net_x, cfg)
        self.opt_a = build_optimizer(self.net_a, cfg)
        self.sched_x = torch.optim.lr_scheduler.ExponentialLR(self.opt_x, gamma=t.lr_decay)
        self.sched_a = torch.optim.lr_scheduler.ExponentialLR(self.opt_a, gamma=t.lr_decay)
        self.ema_x, self.ema_a = EMA(self.net_x, t.ema), EMA(self.net_a, t.ema)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.gen_perm = torch.Generator().manual_seed(cfg.seed + 1)
        self.epoch = 0
        self.n_atoms_counts = node_count_histogram(self.data.F_train, cfg.data.max_node_num)
        if ckpt is not None:
            self._restore(ckpt)
        self.fwd_x, self.fwd_a = self.net_x, self.net_a
        if t.compile:
            self.fwd_x, self.fwd_a = torch.compile(self.net_x), torch.compile(self.net_a)
        if ckpt is None:
            (self.out / "config.yaml").write_text(dump_config(cfg))
            (self.out / LOG).write_text("")

    # --------------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "config": self.cfg.model_dump(mode="json"),
            "epoch": self.epoch,
            "net_x": self.net_x.state_dict(), "net_a": self.net_a.state_dict(),
            "opt_x": self.opt_x.state_dict(), "opt_a": self.opt_a.state_dict(),
            "sched_x": self.sched_x.state_dict(), "sched_a": self.sched_a.state_dict(),
            "ema_x": self.ema_x.state_dict(), "ema_a": self.ema_a.state_dict(),
            "rng": {"gen": self.gen.get_state(), "gen_perm": self.gen_perm.get_state(),
                    "torch": torch.get_rng_state()},
            "n_atoms_counts": self.n_atoms_counts.clone(),
            "vocab": self.data.vocab,
            "data_info": self.data.info,
        }

    def _restore(self, ckpt: dict) -> None:
        self.net_x.load_state_dict(ckpt["net_x"]), self.net_a.load_state_dict(ckpt["net_a"])
        self.opt_x.load_state_dict(ckpt["opt_x"]), self.opt_a.load_state_dict(ckpt["opt_a"])
        self.sched_x.load_state_dict(ckpt["sched_x"]), self.sched_a.load_state_dict(ckpt["sched_a"])
        self.ema_x.load_state_dict(ckpt["ema_x"]), self.ema_a.load_state_dict(ckpt["ema_a"])
        self.gen.set_state(ckpt["rng"]["gen"]), self.gen_perm.set_state(ckpt["rng"]["gen_perm"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.epoch = int(ckpt["epoch"])
        # drop log lines of epochs after the checkpoint (a crash between the two writes)
        log = self.out / LOG
        if log.is_file():
            lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
            keep = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= self.epoch]
            log.write_text("".join(ln + "\n" for ln in keep))

    def save(self) -> None:
        save_torch(self.state(), self.out / CHECKPOINT)

    # --------------------------------------------------------------------- epochs
    def _loss(self, x0, a0, flags, generator):
        t = self.cfg.train
        return dsm_loss(self.fwd_x, self.fwd_a, self.sde_x, self.sde_a, x0, a0, flags, eps=t.eps,
                        reduce_mean=t.reduce_mean, generator=generator)

    def train_epoch(self) -> dict:
        t = self.cfg.train
        d = self.data
        self.net_x.train(), self.net_a.train()
        perm = torch.randperm(d.X_train.shape[0], generator=self.gen_perm)
        batches = list(perm.split(self.cfg.data.batch_size))
        if t.max_batches:
            batches = batches[: t.max_batches]
        sum_x = sum_a = 0.0
        for idx in tqdm(batches, desc=f"epoch {self.epoch + 1}", leave=False, disable=not self.progress):
            x0 = d.X_train[idx].to(self.device, non_blocking=True)
            a0 = d.A_train[idx].to(self.device, non_blocking=True)
            fl = d.F_train[idx].to(self.device, non_blocking=True)
            loss_x, loss_a = self._loss(x0, a0, fl, self.gen)
            self.opt_x.zero_grad(set_to_none=True)
            self.opt_a.zero_grad(set_to_none=True)
            (loss_x + loss_a).backward()  # the two losses touch disjoint parameters
            torch.nn.utils.clip_grad_norm_(self.net_x.parameters(), t.grad_norm)
            torch.nn.utils.clip_grad_norm_(self.net_a.parameters(), t.grad_norm)
            self.opt_x.step(), self.opt_a.step()
            self.ema_x.update(self.net_x), self.ema_a.update(self.net_a)
            sum_x += loss_x.item()
            sum_a += loss_a.item()
        lr = self.opt_x.param_groups[0]["lr"]
        if t.lr_schedule:
            self.sched_x.step(), self.sched_a.step()
        return {"train_x": sum_x / len(batches), "train_adj": sum_a / len(batches), "lr": lr,
                "batches": len(batches)}

    @torch.no_grad()
    def test_loss(self) -> dict:
        """The test loss with the EMA weights (GDSS's per-epoch evaluation), with its own seeded noise."""
        d, t = self.data, self.cfg.train
        if d.X_test.shape[0] == 0:
            return {}
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 100003 + self.epoch)
        self.net_x.eval(), self.net_a.eval()
        sum_x = sum_a = 0.0
        batches = list(torch.arange(d.X_test.shape[0]).split(self.cfg.data.batch_size))
        if t.max_batches:
            batches = batches[: t.max_batches]
        with self.ema_x.swapped(self.net_x), self.ema_a.swapped(self.net_a):
            for idx in batches:
                lx, la = self._loss(d.X_test[idx].to(self.device), d.A_test[idx].to(self.device),
                                    d.F_test[idx].to(self.device), gen)
                sum_x += lx.item()
                sum_a += la.item()
        return {"test_x": sum_x / len(batches), "test_adj": sum_a / len(batches)}

    def fit(self) -> dict:
        """Train until ``train.num_epochs`` epochs are done (from wherever the run directory was), or until the
        run's training time reaches ``train.max_minutes`` on ``train.budget_clock`` (wall or process CPU time)."""
        total = self.cfg.train.num_epochs
        budget = self.cfg.train.max_minutes
        clock = "seconds_cpu" if self.cfg.train.budget_clock == "cpu" else "seconds"
        earlier = read_log(self.out)[:self.epoch]
        if budget and any(clock not in r for r in earlier):
            raise ValueError(f"{self.out / LOG}: epochs logged without '{clock}' cannot count towards a "
                             f"train.budget_clock={self.cfg.train.budget_clock!r} budget")
        spent = sum(r[clock] for r in earlier) if budget else 0.0
        session = {"epochs": [self.epoch, self.epoch], "device": device_name(self.device), "commit": git_commit(),
                   "seconds": 0.0}
        sessions_path = self.out / SESSIONS
        previous = sessions_path.read_text() if sessions_path.is_file() else ""
        t_start = time.perf_counter()
        bar = tqdm(total=total, initial=self.epoch, desc="epochs", disable=not self.progress)
        last = {}
        while self.epoch < total and (budget is None or spent < 60.0 * budget):
            t0, c0 = time.perf_counter(), time.process_time()
            rec = self.train_epoch()
            t_train = time.perf_counter() - t0
            if self.cfg.train.test_loss:
                rec.update(self.test_loss())
            self.epoch += 1
            rec = {"epoch": self.epoch, **rec, "seconds_train": round(t_train, 3),
                   "seconds": round(time.perf_counter() - t0, 3),
                   "seconds_cpu": round(time.process_time() - c0, 3)}
            spent += rec[clock]
            self.save()
            with open(self.out / LOG, "a") as f:
                f.write(json.dumps(rec) + "\n")
            session.update(epochs=[session["epochs"][0], self.epoch], seconds=round(time.perf_counter() - t_start, 1))
            write_text(sessions_path, previous + json.dumps(session) + "\n")
            bar.update(1)
            bar.set_postfix(x=f"{rec['train_x']:.3g}", adj=f"{rec['train_adj']:.3g}")
            last = rec
        bar.close()
        return last


def read_log(run_dir: str | Path) -> list[dict]:
    """The per-epoch training records of a run (``log.jsonl``)."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def train(cfg: RunConfig, out_dir: str | Path, data: TrainData | None = None, progress: bool = True) -> dict:
    return Trainer(cfg, out_dir, data=data, progress=progress).fit()


# ----------------------------------------------------------------------------------------- loading a run
def load_run(run_dir: str | Path, use_ema: bool | None = None, device=None, sampler_overrides=None):
    """(cfg, net_x, net_a, ckpt) of a trained run, the networks in eval mode on ``device`` with the raw or
    the EMA weights (``use_ema``: None = the config's ``sampler.use_ema``); ``sampler_overrides``
    (``sampler.key=value``) change the returned config's sampler section. The process's threads are left as
    they are (``build.configure_threads`` sets the run's)."""
    from .config import apply_overrides, validate

    ckpt = load_checkpoint(run_dir)
    data = ckpt["config"]
    if sampler_overrides:
        data = apply_overrides(json.loads(json.dumps(data)), list(sampler_overrides))
    cfg = validate(data, f"(checkpoint of {run_dir})")
    device = device or get_device(cfg.device)
    net_x, net_a = build_nets(cfg)
    net_x.load_state_dict(ckpt["net_x"]), net_a.load_state_dict(ckpt["net_a"])
    if cfg.sampler.use_ema if use_ema is None else use_ema:
        for net, key in ((net_x, "ema_x"), (net_a, "ema_a")):
            ema = EMA(net, cfg.train.ema)
            ema.load_state_dict(ckpt[key])
            ema.copy_to(net)
    net_x.to(device).eval(), net_a.to(device).eval()
    return cfg, net_x, net_a, ckpt
