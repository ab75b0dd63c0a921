"""Configs (validation, overrides, GDSS values) and the command line (train, sample, evaluate)."""
from __future__ import annotations

import json

import pytest

from molgen import cli
from molgen.config import ConfigError, config_differences, config_names, load_config


def test_unknown_key_is_an_error_naming_the_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  nhidd: 16\n")
    with pytest.raises(ConfigError, match=r"model\.nhidd: unknown key"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"train\.lrr: unknown key"):
        load_config("qm9_gdss", ["train.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"sde\.x\.type"):
        load_config("qm9_gdss", ["sde.x.type=XX"])
    with pytest.raises(ConfigError, match="unknown config"):
        load_config("no_such_config")


def test_overrides_are_parsed_as_yaml():
    cfg = load_config("qm9_gdss", ["train.num_epochs=3", "sampler.predictor=S4", "data.limit=100"])
    assert cfg.train.num_epochs == 3 and cfg.sampler.predictor == "S4" and cfg.data.limit == 100
    diffs = config_differences(load_config("qm9_gdss"), cfg)
    assert diffs == ["data.limit: None -> 100"]  # epochs and sampler settings may change on resume


def test_shipped_configs_have_gdss_values():
    assert {"qm9_gdss", "zinc250k_gdss", "tiny"} <= set(config_names())
    q = load_config("qm9_gdss")
    assert (q.sde.x.type, q.sde.adj.type, q.sde.x.beta_min, q.sde.x.beta_max) == ("VE", "VE", 0.1, 1.0)
    assert (q.model.num_layers, q.model.nhid, q.model.adim, q.model.c_init, q.model.c_hid, q.model.c_final) == (
        3, 16, 16, 2, 8, 4)
    assert (q.train.lr, q.train.ema, q.train.grad_norm, q.train.lr_decay, q.train.num_epochs) == (
        0.005, 0.999, 1.0, 0.999, 300)
    assert (q.sampler.snr, q.sampler.scale_eps, q.data.batch_size, q.data.max_feat_num) == (0.2, 0.7, 1024, 4)
    z = load_config("zinc250k_gdss")
    assert (z.sde.x.type, z.sde.adj.type, z.sde.adj.beta_min) == ("VP", "VE", 0.2)
    assert (z.model.num_layers, z.data.max_node_num, z.data.max_feat_num, z.sampler.scale_eps) == (6, 38, 9, 0.9)


def test_the_moses_configs_are_gdss_zinc_settings_on_moses_shapes_at_equal_size():
    from molgen.build import build_nets

    z, g, c = (load_config(n) for n in ("zinc250k_gdss", "moses_gdss", "moses_can"))
    assert (z.sde, z.model, z.train, z.sampler) == (g.sde, g.model, g.train, g.sampler)
    for cfg in (g, c):
        assert (cfg.data.dataset, cfg.data.max_node_num, cfg.data.max_feat_num) == ("moses", 27, 7)
        assert (cfg.sde, cfg.train, cfg.sampler) == (g.sde, g.train, g.sampler)
    sizes = [sum(p.numel() for net in build_nets(cfg) for p in net.parameters()) for cfg in (g, c)]
    assert abs(sizes[1] / sizes[0] - 1) < 0.05


def test_cli_reports_config_errors(capsys, tmp_path):
    assert cli.main(["train", "--config", "tiny", "--out", str(tmp_path), "--set", "model.bogus=1"]) == 2
    assert "model.bogus: unknown key" in capsys.readouterr().err


def test_evaluate_passes_counts_to_the_metrics(tmp_path, monkeypatch):
    import molgen.metrics as metrics

    seen = {}

    def fake(smiles, dataset=None, **kw):
        seen.update(smiles=smiles, dataset=dataset, **kw)
        return {"n_samples": kw["n_generated"], "validity": len(smiles) / kw["n_generated"]}

    monkeypatch.setattr(metrics, "evaluate_samples", fake)
    smi = tmp_path / "s.smi"
    smi.write_text("CCO\nC#N\n")
    (tmp_path / "s.smi.json").write_text(json.dumps({"n_sampled": 4, "n_valid_wo_correction": 1}))
    assert cli.main(["evaluate", "--dataset", "qm9", "--samples", str(smi), "--out", str(tmp_path / "m.json")]) == 0
    assert seen["smiles"] == ["CCO", "C#N"] and seen["dataset"] == "qm9"
    assert seen["n_generated"] == 4 and seen["n_valid_wo_correction"] == 1
    assert json.loads((tmp_path / "m.json").read_text())["validity"] == 0.5


@pytest.mark.integration
def test_cli_train_resume_and_sample_end_to_end(tmp_path, capsys):
    """Tiny QM9 run through the CLI: train 1 epoch, resume to 2, sample and decode molecules."""
    run = tmp_path / "run"
    base = ["train", "--config", "tiny", "--out", str(run), "--quiet", "--set", "data.limit=48"]
    assert cli.main(base + ["--set", "train.num_epochs=1"]) == 0
    assert cli.main(base) == 0
    log = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(r["train_x"] > 0 for r in log)
    assert cli.main(base + ["--set", "model.nhid=16"]) == 2  # another config into the same run: refused
    assert "model.nhid" in capsys.readouterr().err
    out = tmp_path / "samples.smi"
    assert cli.main(["sample", "--run", str(run), "--n", "24", "--out", str(out), "--quiet",
                     "--set", "sampler.predictor=S4"]) == 0
    meta = json.loads((tmp_path / "samples.smi.json").read_text())
    assert meta["n_sampled"] == 24 and meta["sampler"]["predictor"] == "S4"
    assert 0 <= meta["validity_wo_correction"] <= 1
    lines = out.read_text().splitlines()
    assert len(lines) == meta["n_smiles"] and len(lines) > 0
    from rdkit import Chem

    assert all(Chem.MolFromSmiles(s) is not None for s in lines)


def test_can_section_only_with_can_networks_and_absent_from_gdss_dumps():
    cfg = load_config("qm9_can")
    assert cfg.model.x == "CANScoreX" and cfg.model.can.hidden % cfg.model.can.heads == 0
    assert "can" not in load_config("qm9_gdss").model_dump()["model"]
    with pytest.raises(ConfigError, match="neither model.x nor model.adj is a CAN network"):
        load_config("qm9_gdss", ["model.can.hidden=8"])
    with pytest.raises(ConfigError, match="divisible by heads"):
        load_config("qm9_can", ["model.can.hidden=10"])
    assert load_config("qm9_gdss", ["model.x=CANScoreX"]).model.can is not None


def test_ablation_command_rejects_unknown_variants(capsys):
    with pytest.raises(SystemExit):
        cli.main(["ablation", "--variants", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_fields_left_out_of_the_dump_are_fields_at_their_defaults():
    """A section's ``omitted`` names its own fields at their default values: a config at the defaults dumps
    without them (runs made before those fields existed keep their digests), a changed value is dumped."""
    from molgen.config import DataConfig, ModelConfig, SamplerConfig, TrainConfig

    for section in (DataConfig, ModelConfig, TrainConfig, SamplerConfig):
        assert section.omitted
        dumped = section().model_dump(mode="json")
        for name, value in section.omitted.items():
            assert section.model_fields[name].get_default(call_default_factory=True) == value, (section, name)
            assert name not in dumped
    assert "can" not in load_config("qm9_gdss").model_dump()["model"]
    assert "can" in load_config("qm9_gdss", ["model.x=CANScoreX", "model.adj=CANScoreA"]).model_dump()["model"]
    assert "decoder" not in load_config("qm9_gdss").model_dump()["sampler"]
    assert load_config("qm9_gdss", ["sampler.decoder=valence"]).model_dump()["sampler"]["decoder"] == "valence"
