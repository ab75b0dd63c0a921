"""paper.tables.readable: display strings as a great_tables table."""
from __future__ import annotations

import numpy as np
import pandas as pd

from common.numbers import MISSING
from paper.tables import readable


def test_a_missing_cell_shows_the_missing_mark_and_keeps_its_column_numeric():
    table = pd.DataFrame({"variant": ["gdss", "can"], "FCD": ["2.88", None], "NSPDK": [np.nan, "0.048"]})
    html = readable(table, "t").as_raw_html()
    assert "None" not in html and "nan" not in html
    assert html.count(f">{MISSING}<") == 2
    assert html.count('class="gt_row gt_right"') == 4  # FCD and NSPDK stay right-aligned: "–" is a number's mark
    assert table["FCD"].isna().sum() == 1  # the caller's frame is left as it was
