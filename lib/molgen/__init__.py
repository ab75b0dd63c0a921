"""Score-based molecule generation (GDSS baseline): data, decoding, metrics, models.

Submodules are imported lazily by their users (``from molgen.data import load_dataset``),
so ``import molgen`` stays cheap.
"""
