"""Measured concentration time series: a tidy table read, checked and held per experiment.

The table has one row per measurement, with the columns ``experiment, time, metabolite, value`` (CSV, TSV or
Parquet) and optionally ``unit``. Experiments are independent time courses (e.g. different initial
conditions); times may be irregular and differ between metabolites; a missing value is an empty cell or
``NA``. Every check names the file, the row (1-based, the header being row 1) and the field, and nothing is
kept from a table that fails one.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from common.io import atomic_path

COLUMNS = ("experiment", "time", "metabolite", "value")
MIN_TIME_POINTS = 5


class MeasurementError(ValueError):
    """A data table that cannot be used; the message names the file, row and field."""


@dataclass(frozen=True)
class Experiment:
    """One time course: times (T,) and concentrations (T, n), NaN where a metabolite was not measured."""

    name: str
    t: np.ndarray
    c: np.ndarray


@dataclass(frozen=True)
class Measurements:
    """Experiments on a common metabolite order (``metabolite_ids``)."""

    metabolite_ids: tuple[str, ...]
    experiments: tuple[Experiment, ...]
    unit: str | None = None
    source: str = ""

    @property
    def n_points(self) -> int:
        return int(sum(np.isfinite(e.c).sum() for e in self.experiments))

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for e in self.experiments:
            for i, met in enumerate(self.metabolite_ids):
                ok = np.isfinite(e.c[:, i])
                rows.append(pd.DataFrame({"experiment": e.name, "time": e.t[ok], "metabolite": met,
                                          "value": e.c[ok, i]}))
        frame = pd.concat(rows, ignore_index=True)
        if self.unit:
            frame["unit"] = self.unit
        return frame


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"experiment": str, "metabolite": str},
                           keep_default_na=False, na_values=["", "NA", "NaN", "nan"])
    raise MeasurementError(f"{path}: unknown data format {suffix!r} (expected .csv, .tsv or .parquet)")


def _suggest(name: str, choices: Sequence[str]) -> str:
    """A hint for an unknown id: the same id up to case or an SBML ``M_`` prefix, else the closest one."""
    lower = {c.lower(): c for c in choices}
    for variant in (name, name[2:] if name.startswith("M_") else "M_" + name):
        if variant.lower() in lower:
            return f" (did you mean {lower[variant.lower()]!r}?)"
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_measurements(path: str | Path, metabolite_ids: Sequence[str] | None = None, unit: str | None = None,
                      min_points: int = MIN_TIME_POINTS) -> Measurements:
    """Read and check a tidy table; ``metabolite_ids`` (the network's) fixes the metabolite order, and every
    id in the table must be one of them. ``unit`` states the concentration unit when the table has no
    ``unit`` column (with both, they must agree)."""
    path = Path(path)
    if not path.is_file():
        raise MeasurementError(f"data file not found: {path}")
    try:
        df = _read_table(path)
    except MeasurementError:
        raise
    except Exception as err:
        raise MeasurementError(f"{path}: cannot be read as a table ({err})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise MeasurementError(f"{path}: missing columns {missing}; a data table needs {list(COLUMNS)}")
    extra = [c for c in df.columns if c not in (*COLUMNS, "unit")]
    if extra:
        raise MeasurementError(f"{path}: unknown columns {extra}; allowed: {list(COLUMNS)} and 'unit'")
    if df.empty:
        raise MeasurementError(f"{path}: no rows")
    rows = np.arange(len(df)) + 2  # the header is row 1
    for col in ("experiment", "metabolite"):
        bad = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if bad.any():
            raise MeasurementError(f"{path}: row {rows[bad.to_numpy()][0]}, field {col}: empty")
    for col in ("time", "value"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() & df[col].notna()
        if bad.any():
            r = int(np.flatnonzero(bad.to_numpy())[0])
            raise MeasurementError(f"{path}: row {rows[r]}, field {col}: {df[col].iloc[r]!r} is not a number")
        df[col] = num.astype(float)
    t = df["time"].to_numpy()
    bad = ~np.isfinite(t)
    if bad.any():
        raise MeasurementError(f"{path}: row {rows[bad][0]}, field time: {t[bad][0]} is not a finite time")
    v = df["value"].to_numpy()
    bad = np.isinf(v)
    if bad.any():
        raise MeasurementError(f"{path}: row {rows[bad][0]}, field value: {v[bad][0]} is not finite")
    bad = v < 0
    if bad.any():
        raise MeasurementError(f"{path}: row {rows[bad][0]}, field value: negative concentration {v[bad][0]}")
    if "unit" in df.columns:
        units = sorted(set(df["unit"].dropna().astype(str)))
        if len(units) > 1:
            r = int(np.flatnonzero((df["unit"].astype(str) != units[0]).to_numpy())[0])
            raise MeasurementError(f"{path}: row {rows[r]}, field unit: {df['unit'].iloc[r]!r} differs from "
                                   f"{units[0]!r}; use one concentration unit")
        if units and unit and units[0] != unit:
            raise MeasurementError(f"{path}: field unit says {units[0]!r}, but {unit!r} was given")
        unit = unit or (units[0] if units else None)
    df["experiment"] = df["experiment"].astype(str).str.strip()
    df["metabolite"] = df["metabolite"].astype(str).str.strip()
    ids = list(metabolite_ids) if metabolite_ids is not None else sorted(df["metabolite"].unique())
    known = set(ids)
    absent = ~df["metabolite"].isin(known)
    if absent.any():
        r = int(np.flatnonzero(absent.to_numpy())[0])
        name = df["metabolite"].iloc[r]
        n_absent = df.loc[absent, "metabolite"].nunique()
        raise MeasurementError(f"{path}: row {rows[r]}, field metabolite: {name!r} is not a metabolite of the "
                               f"network{_suggest(name, ids)} ({n_absent} such ids in the table)")
    df["_row"] = rows
    for (exp, met), g in df.groupby(["experiment", "metabolite"], sort=False):
        times = g["time"].to_numpy()
        step = np.diff(times)
        if (step <= 0).any():
            r = int(g["_row"].to_numpy()[1:][step <= 0][0])
            raise MeasurementError(f"{path}: row {r}, field time: times of metabolite {met} in experiment {exp} "
                                   "must increase (one row per time, in time order)")
    experiments = []
    index = {m: i for i, m in enumerate(ids)}
    for exp, g in df.groupby("experiment", sort=False):
        times = np.unique(g["time"].to_numpy())
        if times.size < min_points:
            raise MeasurementError(f"{path}: experiment {exp} has {times.size} time points; at least "
                                   f"{min_points} are needed")
        c = np.full((times.size, len(ids)), np.nan)
        ti = np.searchsorted(times, g["time"].to_numpy())
        c[ti, g["metabolite"].map(index).to_numpy()] = g["value"].to_numpy()
        experiments.append(Experiment(name=str(exp), t=times, c=c))
    return Measurements(metabolite_ids=tuple(ids), experiments=tuple(experiments), unit=unit, source=str(path))


def write_measurements(path: str | Path, data: Measurements) -> None:
    """Write the tidy table (CSV, or Parquet by suffix) atomically."""
    path = Path(path)
    frame = data.to_frame()
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, float_format="%.10g")


def require_observed(data: Measurements, reaction_ids: Sequence[str], R: np.ndarray, min_points: int = 4) -> None:
    """Refuse, naming them, metabolites never (or too rarely) observed in some experiment.

    The integral objective needs every metabolite's trajectory: an unobserved metabolite's rate terms and
    its own balance cannot be formed from the data. Only the products of its concentration with the rate
    constants of its reactions would enter a fit with it as a latent state, so it is refused here; a species
    known to be constant (buffered) can be declared fixed at import instead.
    """
    problems = []
    for e in data.experiments:
        counts = np.isfinite(e.c).sum(0)
        for i in np.flatnonzero(counts < min_points):
            problems.append((e.name, data.metabolite_ids[i], int(counts[i])))
    if problems:
        mets = sorted({p[1] for p in problems})
        idx = [data.metabolite_ids.index(m) for m in mets]
        rxns = [reaction_ids[j] for j in np.flatnonzero(R[idx].sum(0) > 0)]
        exp, met, count = problems[0]
        raise MeasurementError(
            f"{data.source}: metabolite {met} has {count} measurements in experiment {exp} (at least {min_points} "
            f"needed); {len(mets)} metabolites are unobserved in some experiment ({', '.join(mets[:6])}"
            f"{' ...' if len(mets) > 6 else ''}), and they are substrates of {len(rxns)} reactions. Measure "
            "them, drop those experiments, or declare buffered species fixed (--fixed-species)")
