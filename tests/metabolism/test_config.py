import pytest

from metabolism.config import ConfigError, load_config, regime_names


def test_shipped_regimes_load():
    assert {"oscillatory", "homeostatic", "pure", "oscillatory_euler"} <= set(regime_names())
    cfg = load_config(regime="oscillatory")
    assert (cfg.network.n_metabolites, cfg.network.n_reactions, cfg.simulation.n_frames) == (100, 256, 2880)
    assert cfg.network.lambdas == [0.001, 0.002] and cfg.network.baselines == [4.0, 6.0]


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("network:\n  n_metabolitez: 5\n")
    with pytest.raises(ConfigError, match=r"network\.n_metabolitez: unknown key"):
        load_config(path=path)


def test_wrong_type_and_negative_size_are_named():
    with pytest.raises(ConfigError, match=r"training\.steps"):
        load_config(regime="oscillatory", overrides=["training.steps=many"])
    with pytest.raises(ConfigError, match=r"network\.n_metabolites"):
        load_config(regime="oscillatory", overrides=["network.n_metabolites=-3"])


def test_per_type_lists_must_match_n_types():
    with pytest.raises(ConfigError, match="one value per type"):
        load_config(regime="oscillatory", overrides=["network.n_types=3"])


def test_unknown_regime_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped regimes: .*oscillatory"):
        load_config(regime="nope")


def test_overrides_and_file_layering(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  steps: 7\n")
    cfg = load_config(regime="homeostatic", path=path, overrides=["model.hidden=8"], seed=11)
    assert cfg.training.steps == 7 and cfg.model.hidden == 8 and cfg.seed == 11
    assert cfg.network.lambdas == [0.05, 0.1]


def test_a_fits_gauge_is_auto_or_a_positive_concentration():
    from metabolism.config import load_fit_config

    assert load_fit_config().model.c_ref == "auto"
    assert load_fit_config(overrides=["model.c_ref=2.5"]).model.c_ref == 2.5
    for bad in ("0", "-1", "median"):
        with pytest.raises(ConfigError, match=r"model\.c_ref"):
            load_fit_config(overrides=[f"model.c_ref={bad}"])
    assert load_config(regime="oscillatory").model.c_ref == 1.0  # the study's runs keep theirs
