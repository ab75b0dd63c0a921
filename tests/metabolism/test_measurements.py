"""Measured data: a tidy table is read per experiment; every bad input names the file, row and field."""
from __future__ import annotations

import numpy as np
import pytest

from metabolism.measurements import (Experiment, MeasurementError, Measurements, read_measurements,
                                     require_observed, write_measurements)

IDS = ("A", "B", "C")


def _table(rows: list[str], header: str = "experiment,time,metabolite,value") -> str:
    return "\n".join([header, *rows]) + "\n"


def _good_rows(n: int = 6, exp: str = "e1") -> list[str]:
    return [f"{exp},{t * 0.5},{m},{1 + t + i}" for t in range(n) for i, m in enumerate(IDS)]


def test_a_tidy_table_is_read_per_experiment_with_missing_values(tmp_path):
    rows = _good_rows(6, "e1") + _good_rows(5, "e2")
    rows[4] = "e1,0.5,B,"  # a missing value
    path = tmp_path / "d.csv"
    path.write_text(_table(rows))
    data = read_measurements(path, metabolite_ids=IDS, unit="mM")
    assert [e.name for e in data.experiments] == ["e1", "e2"]
    e1 = data.experiments[0]
    assert e1.c.shape == (6, 3) and np.isnan(e1.c[1, 1])
    np.testing.assert_allclose(e1.t, np.arange(6) * 0.5)
    assert data.unit == "mM"
    assert data.n_points == 6 * 3 + 5 * 3 - 1


def test_irregular_times_per_metabolite_and_parquet_round_trip(tmp_path):
    rows = [f"e1,{t},A,{1 + t}" for t in (0, 1, 2, 3, 4, 5)] + [f"e1,{t},B,{2 + t}" for t in (0, 0.5, 2, 3, 4.5)] \
        + [f"e1,{t},C,1" for t in range(6)]
    path = tmp_path / "d.csv"
    path.write_text(_table(rows))
    data = read_measurements(path, metabolite_ids=IDS)
    e = data.experiments[0]
    assert e.t.size == 8  # the union of the times
    assert np.isfinite(e.c[:, 1]).sum() == 5
    out = tmp_path / "d.parquet"
    write_measurements(out, data)
    back = read_measurements(out, metabolite_ids=IDS)
    np.testing.assert_array_equal(back.experiments[0].t, e.t)
    np.testing.assert_allclose(back.experiments[0].c, e.c, equal_nan=True)


@pytest.mark.parametrize("edit,message", [
    (lambda r: r[:3] + ["e1,1.0,NADH,3"] + r[3:], r"row 5, field metabolite: 'NADH' is not a metabolite"),
    (lambda r: r[:3] + ["e1,0.0,A,3"] + r[3:], r"row 5, field time: times of metabolite A .* must increase"),
    (lambda r: [r[0], "e1,0.0,B,-0.2"] + r[2:], r"row 3, field value: negative concentration"),
    (lambda r: [r[0], "e1,0.0,B,inf"] + r[2:], r"row 3, field value: inf is not finite"),
    (lambda r: [r[0], "e1,0.0,B,abc"] + r[2:], r"row 3, field value: 'abc' is not a number"),
    (lambda r: [r[0], "e1,nan,B,1"] + r[2:], r"row 3, field time"),
    (lambda r: r + ["e2,0,A,1", "e2,1,A,1"], r"experiment e2 has 2 time points"),
    (lambda r: [r[0], ",0.0,B,1"] + r[2:], r"row 3, field experiment: empty"),
])
def test_bad_input_names_file_row_and_field(tmp_path, edit, message):
    path = tmp_path / "bad.csv"
    path.write_text(_table(edit(_good_rows())))
    with pytest.raises(MeasurementError, match=message) as err:
        read_measurements(path, metabolite_ids=IDS)
    assert str(path) in str(err.value)


def test_absent_metabolite_suggests_the_closest_id(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(_table(_good_rows() + ["e1,9,M_A,1"]))
    with pytest.raises(MeasurementError, match="did you mean 'A'"):
        read_measurements(path, metabolite_ids=IDS)


def test_columns_and_units_are_checked(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(_table(["e1,0,A"], header="experiment,time,metabolite"))
    with pytest.raises(MeasurementError, match=r"missing columns \['value'\]"):
        read_measurements(path)
    path.write_text(_table([r + ",mM" for r in _good_rows()[:-1]] + [_good_rows()[-1] + ",uM"],
                           header="experiment,time,metabolite,value,unit"))
    with pytest.raises(MeasurementError, match="field unit: 'uM' differs from 'mM'"):
        read_measurements(path, metabolite_ids=IDS)
    path.write_text(_table([r + ",mM" for r in _good_rows()], header="experiment,time,metabolite,value,unit"))
    with pytest.raises(MeasurementError, match="but 'uM' was given"):
        read_measurements(path, metabolite_ids=IDS, unit="uM")


def test_unobserved_metabolites_are_refused_with_the_reactions_they_feed():
    t = np.arange(10.0)
    c = np.ones((10, 3))
    c[:, 2] = np.nan
    data = Measurements(IDS, (Experiment("e1", t, c),), source="d.csv")
    R = np.array([[1, 0], [0, 1], [1, 0]], float)
    with pytest.raises(MeasurementError, match=r"metabolite C has 0 measurements in experiment e1.*substrates of "
                       r"1 reactions.*--fixed-species"):
        require_observed(data, ("r1", "r2"), R)
