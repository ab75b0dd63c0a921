"""Training: resume continues exactly, mismatching checkpoints are refused, EMA, atomic checkpoints, logs."""
from __future__ import annotations

import json

import pytest
import torch

from molgen.config import dump_config, load_config
from molgen.train import EMA, CheckpointMismatch, Trainer, TrainData, load_checkpoint, load_run


def synthetic_data(n_train=48, n_test=16, seed=0) -> TrainData:
    g = torch.Generator().manual_seed(seed)

    def graphs(b):
        k = torch.randint(3, 10, (b,), generator=g)
        flags = (torch.arange(9)[None] < k[:, None]).float()
        x = torch.nn.functional.one_hot(torch.randint(0, 4, (b, 9), generator=g), 4).float() * flags[..., None]
        bonds = torch.randint(1, 4, (b, 9, 9), generator=g).float() * (torch.rand(b, 9, 9, generator=g) < 0.3)
        a = bonds.triu(1)
        return x, (a + a.transpose(1, 2)) * flags[:, :, None] * flags[:, None, :], flags

    xtr, atr, ftr = graphs(n_train)
    xte, ate, fte = graphs(n_test)
    return TrainData(xtr, atr, ftr, xte, ate, fte, ["C", "N", "O", "F"], {"summary": "synthetic"})


def tiny_cfg(*overrides):
    return load_config("tiny", ["data.batch_size=16", "train.num_epochs=2", *overrides])


def test_resume_continues_identically(tmp_path):
    data = synthetic_data()
    straight = Trainer(tiny_cfg(), tmp_path / "a", data=data, progress=False)
    straight.fit()
    first = Trainer(tiny_cfg("train.num_epochs=1"), tmp_path / "b", data=data, progress=False)
    first.fit()
    assert load_checkpoint(tmp_path / "b")["epoch"] == 1
    resumed = Trainer(tiny_cfg(), tmp_path / "b", data=data, progress=False)
    assert resumed.epoch == 1
    resumed.fit()
    for net in ("net_x", "net_a"):
        for (k, v), (k2, v2) in zip(getattr(straight, net).state_dict().items(),
                                    getattr(resumed, net).state_dict().items()):
            assert k == k2 and torch.equal(v, v2), k
    for s, r in zip(straight.ema_a.shadow, resumed.ema_a.shadow):
        assert torch.equal(s, r)
    log_a = [json.loads(ln) for ln in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(ln) for ln in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log_b] == [1, 2]
    for ra, rb in zip(log_a, log_b):
        for key in ("train_x", "train_adj", "test_x", "test_adj", "lr"):
            assert ra[key] == rb[key], key
    assert straight.sched_a.get_last_lr() == resumed.sched_a.get_last_lr()
    assert not list((tmp_path / "b").glob("*.tmp")), "temporary checkpoint files left behind"


def test_checkpoint_of_another_config_is_refused(tmp_path):
    data = synthetic_data()
    Trainer(tiny_cfg("train.num_epochs=1"), tmp_path, data=data, progress=False).fit()
    with pytest.raises(CheckpointMismatch, match=r"model\.nhid: 8 -> 16"):
        Trainer(tiny_cfg("model.nhid=16"), tmp_path, data=data, progress=False)
    # epochs, threads and sampler settings may change on resume
    Trainer(tiny_cfg("train.num_epochs=3", "sampler.snr=0.1", "train.num_threads=1"), tmp_path, data=data,
            progress=False)


def test_data_shape_must_match_config(tmp_path):
    with pytest.raises(ValueError, match="max_feat_num"):
        TrainData.from_dataset(type("DS", (), {"X_train": torch.zeros(2, 9, 5), "name": "x"})(), tiny_cfg())


def test_wall_time_budget_stops_training_and_counts_earlier_sessions(tmp_path, monkeypatch):
    """``train.max_minutes``: training stops after the epoch that reaches the budget, resumed sessions count
    what the earlier ones spent, and ``num_epochs`` stays a cap."""
    import molgen.train as train_mod

    clock = iter(range(0, 10_000, 30))  # every perf_counter call advances 30 s: an epoch costs whole minutes
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: float(next(clock)))
    data = synthetic_data()
    Trainer(tiny_cfg("train.num_epochs=50", "train.max_minutes=3"), tmp_path, data=data, progress=False).fit()
    log = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    spent = [sum(r["seconds"] for r in log[:i]) for i in range(len(log) + 1)]
    assert 0 < len(log) < 50 and spent[-1] >= 180 > spent[-2]
    Trainer(tiny_cfg("train.num_epochs=50", "train.max_minutes=3"), tmp_path, data=data, progress=False).fit()
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == len(log), "a spent budget trained again"
    Trainer(tiny_cfg(f"train.num_epochs={len(log) + 1}", "train.max_minutes=100"), tmp_path, data=data,
            progress=False).fit()
    assert load_checkpoint(tmp_path)["epoch"] == len(log) + 1


def test_cpu_clock_budget_counts_process_time_not_wall_time(tmp_path, monkeypatch):
    """``train.budget_clock=cpu``: the budget counts this process's CPU time, so a machine loaded by other
    jobs (wall time running fast here) does not cut the run short; a log without CPU seconds is refused."""
    import molgen.train as train_mod

    cpu = iter(range(0, 10_000, 30))  # every process_time call advances 30 s
    wall = iter(range(0, 100_000, 300))  # wall time runs ten times faster: a loaded machine
    monkeypatch.setattr(train_mod.time, "process_time", lambda: float(next(cpu)))
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: float(next(wall)))
    data = synthetic_data()
    cfg = tiny_cfg("train.num_epochs=50", "train.max_minutes=3", "train.budget_clock=cpu")
    Trainer(cfg, tmp_path, data=data, progress=False).fit()
    log = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    spent = [sum(r["seconds_cpu"] for r in log[:i]) for i in range(len(log) + 1)]
    assert 0 < len(log) < 50 and spent[-1] >= 180 > spent[-2]
    assert all(r["seconds"] >= 10 * r["seconds_cpu"] > 0 for r in log), "the wall clock counted"
    assert "budget_clock" in dump_config(cfg) and "budget_clock" not in dump_config(tiny_cfg())
    old = [{k: v for k, v in r.items() if k != "seconds_cpu"} for r in log]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    with pytest.raises(ValueError, match="seconds_cpu"):
        Trainer(tiny_cfg("train.num_epochs=50", "train.max_minutes=30", "train.budget_clock=cpu"), tmp_path,
                data=data, progress=False).fit()


def test_log_lines_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    data = synthetic_data()
    Trainer(tiny_cfg("train.num_epochs=1"), tmp_path, data=data, progress=False).fit()
    with open(tmp_path / "log.jsonl", "a") as f:  # as if the run died between the log and the checkpoint
        f.write(json.dumps({"epoch": 2, "train_x": 0.0}) + "\n")
    Trainer(tiny_cfg(), tmp_path, data=data, progress=False)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1]


def test_ema_warmup_and_swap():
    lin = torch.nn.Linear(2, 1)
    ema = EMA(lin, decay=0.999)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)  # decay = min(0.999, 2/11)
    expected = ema.shadow[0]
    assert ema.num_updates == 1
    with ema.swapped(lin):
        assert torch.equal(lin.weight, expected)
    assert torch.all(lin.weight == 1.0)
    state = ema.state_dict()
    other = EMA(lin, 0.5)
    other.load_state_dict(state)
    assert other.decay == 0.999 and torch.equal(other.shadow[0], expected)


def test_load_run_builds_eval_networks(tmp_path):
    data = synthetic_data()
    Trainer(tiny_cfg("train.num_epochs=1"), tmp_path, data=data, progress=False).fit()
    cfg, net_x, net_a, ckpt = load_run(tmp_path, use_ema=True)
    assert not net_x.training and not net_a.training
    assert cfg.model.nhid == 8 and ckpt["n_atoms_counts"].sum() == 48
    ema = EMA(net_a, 0.99)
    ema.load_state_dict(ckpt["ema_a"])
    assert all(torch.equal(p, s) for p, s in zip(net_a.parameters(), ema.shadow))

