"""MOSES's own ``get_all_metrics`` (through ``moses_shim``) against ``molgen.metrics`` on a few dozen QM9 SMILES:
validity, uniqueness, novelty and FCD must agree (they are defined the same way)."""
from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

if importlib.util.find_spec("moses") is None:
    pytest.skip("molsets (MOSES's metric code) is not installed", allow_module_level=True)

import moses_shim  # noqa: E402
from molgen import metrics as M  # noqa: E402
from molgen import sources as S  # noqa: E402

INVALID = ["C1CC", "C(C)(C)(C)(C)C"]  # unclosed ring; pentavalent carbon
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:fcd_torch")  # np.row_stack, sqrtm(disp=)


@pytest.fixture(scope="module")
def sets() -> dict:
    qm9 = pd.read_csv(S.qm9_csv_paths()[2], usecols=["SMILES"], nrows=80)["SMILES"].tolist()
    valid = qm9[:40] + qm9[:6] + ["OCC", "CCO"]  # duplicates, one spelt non-canonically
    return {"valid": valid, "gen": valid + INVALID, "train": M.canonicalize_list(qm9[10:25]), "test": qm9[40:80]}


@pytest.fixture(scope="module")
def moses_out(sets) -> dict:
    return moses_shim.get_all_metrics(sets["gen"], sets["test"], train=sets["train"], k=len(sets["valid"]))


def test_validity_counts_invalid(sets, moses_out):
    assert moses_out["valid"] == pytest.approx(len(sets["valid"]) / len(sets["gen"]))
    only_valid = moses_shim.moses_metrics.fraction_valid(sets["valid"])
    assert only_valid == 1.0


def test_agrees_with_molgen(sets, moses_out):
    ours = M.evaluate_samples(sets["gen"], sets["train"], sets["test"], compute_nspdk=False, cache_dir=None)
    assert ours["n_valid"] == len(sets["valid"]) and ours["n_unique"] < ours["n_valid"]
    assert moses_out["valid"] == pytest.approx(ours["validity"], abs=1e-12)
    assert moses_out[f"unique@{len(sets['valid'])}"] == pytest.approx(ours["uniqueness"], abs=1e-12)
    assert 0 < ours["novelty"] < 1
    assert moses_out["Novelty"] == pytest.approx(ours["novelty"], abs=1e-12)
    assert moses_out["FCD/Test"] == pytest.approx(ours["fcd"], rel=1e-6)


def test_never_loads_moses_data(sets):
    out = moses_shim.get_all_metrics(sets["valid"][:10], sets["test"][:10], k=10)
    assert "Novelty" not in out and not any(name.endswith("/TestSF") for name in out)
