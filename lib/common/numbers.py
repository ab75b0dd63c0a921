"""Numbers for reading: one number of decimals per column, chosen from the values, and mean ± std in one cell."""
from __future__ import annotations

import math
from typing import Iterable

MISSING = "–"
MAX_DECIMALS = 6


def _finite(values: Iterable[object]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or v is None:
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append(x)
    return out


def decimals_for(values: Iterable[object], significant: int = 3) -> int:
    """Decimals that give the smallest non-zero |value| `significant` digits (0 when every value is an
    integer, at most MAX_DECIMALS), so that one column shows all its values with the same decimals."""
    xs = _finite(values)
    if not xs or all(x == int(x) for x in xs):
        return 0
    smallest = min((abs(x) for x in xs if x != 0), default=1.0)
    return max(0, min(MAX_DECIMALS, significant - 1 - math.floor(math.log10(smallest))))


def fmt(value: object, decimals: int) -> str:
    """`value` with `decimals` decimals, thousands separators and a true minus sign; MISSING for None/NaN."""
    xs = _finite([value])
    if not xs:
        return MISSING if value is None or isinstance(value, float) else str(value)
    return f"{xs[0]:,.{decimals}f}".replace("-", "−")


def fmt_column(values: Iterable[object], significant: int = 3) -> list[str]:
    """Every value of a column with the column's decimals (`decimals_for`)."""
    values = list(values)
    d = decimals_for(values, significant)
    return [fmt(v, d) for v in values]


def pm(mean: object, std: object, decimals: int) -> str:
    """'mean ± std' with `decimals` decimals; the mean alone when std is None, NaN or zero."""
    if not _finite([std]) or float(std) == 0:
        return fmt(mean, decimals)
    return f"{fmt(mean, decimals)} ± {fmt(std, decimals)}"


def pm_decimals(means: Iterable[object], stds: Iterable[object], significant: int = 3) -> int:
    """Decimals of a column of mean ± std: two significant digits of its smallest non-zero spread, or the
    means' own decimals when there is no spread (single seeds)."""
    spread = [s for s in _finite(stds) if s != 0]
    means = list(means)
    return decimals_for(spread, 2) if spread else decimals_for(means, significant)
