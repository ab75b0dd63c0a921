"""Tables for the site: a DataFrame of display strings (see `common.numbers`) as a great_tables table that
fits the text column, with no index column, numbers right-aligned and a fixed id (so re-executions give the
same HTML)."""
from __future__ import annotations

import re
from typing import Sequence

import pandas as pd
from great_tables import GT, md

from common.numbers import MISSING

FONT_SIZE = "14px"
_NUMERIC = re.compile(r"^[−+\-]?[\d,]*\.?\d+(?:\s*±\s*[\d,]*\.?\d+)?\s*%?$|^–$")


def _is_numeric(column: pd.Series) -> bool:
    return len(column) > 0 and all(_NUMERIC.match(str(v).strip()) for v in column)


def readable(table: pd.DataFrame, id: str, *, stub: str | None = None, group: str | None = None,
             spanners: dict[str, Sequence[str]] | None = None, notes: Sequence[str] = (),
             markdown: Sequence[str] = (), labels: dict[str, str] | None = None) -> GT:
    """`table` (display strings; its index is dropped; a missing cell shows `MISSING`) as a compact great_tables
    table.

    `stub` names the column of row labels, `group` a column whose values group the rows, `spanners` maps a
    label to the columns it spans, `notes` are source notes under the table (markdown) and `markdown` the
    columns whose cells are markdown (code spans, math); `labels` shows columns under other headings (so that
    columns under different spanners can share one)."""
    df = table.reset_index(drop=True).copy()
    for c in df.columns[df.isna().any()]:
        df[c] = df[c].astype(object).where(df[c].notna(), MISSING)
    gt = GT(df, rowname_col=stub, groupname_col=group, id=id, auto_align=False)
    data_cols = [c for c in df.columns if c not in (stub, group)]
    right = [c for c in data_cols if _is_numeric(df[c])]
    left = [c for c in data_cols if c not in right]
    if right:
        gt = gt.cols_align("right", columns=right)
    if left:
        gt = gt.cols_align("left", columns=left)
    if markdown:
        gt = gt.fmt_markdown(columns=[c for c in markdown if c in df.columns])
    for label, cols in (spanners or {}).items():
        gt = gt.tab_spanner(label=label, columns=list(cols))
    for note in notes:
        gt = gt.tab_source_note(md(note))
    if labels:
        gt = gt.cols_label(**{c: label for c, label in labels.items() if c in df.columns})
    return gt.tab_options(table_font_size=FONT_SIZE, column_labels_font_weight="bold", data_row_padding="3px",
                          container_padding_y="0px", table_margin_left="0px", source_notes_font_size="13px",
                          quarto_disable_processing=True)
