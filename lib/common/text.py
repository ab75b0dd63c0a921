"""Words for reading: counts with their nouns in the sentences that pages compute from results."""
from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with its noun in the right number: ``counted(1, "seed")`` is "1 seed", ``counted(3, "seed")``
    "3 seeds" (``plural`` where adding an s is wrong)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
