"""Counts as the pages print them."""
from __future__ import annotations

from common.text import counted


def test_a_count_takes_the_noun_in_its_number():
    assert counted(1, "seed") == "1 seed"
    assert counted(0, "seed") == "0 seeds"
    assert counted(3, "seed") == "3 seeds"
    assert counted(2, "mouse", "mice") == "2 mice"
