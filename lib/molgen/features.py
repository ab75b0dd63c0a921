"""Atom feature sets: which blocks make up the node features X, their widths and column slices.

X of a molecule is the concatenation of one-hot blocks, one row per atom (padding rows all zero):

* ``type``: the element, one-hot over the dataset vocabulary (always first, always present);
* ``charge``: formal charge -1, 0, +1 (molecules with other charges are skipped);
* ``aromatic``: 1 column, the atom is aromatic;
* ``hybridization``: SP, SP2, SP3 (other hybridizations: no column on);
* ``num_hs``: total (implicit + explicit) hydrogens 0, 1, 2, 3+;
* ``degree``: heavy-atom degree 1..4 (0 or more than 4: no column on);
* ``ring``: smallest ring containing the atom: not in a ring, 3, 4, 5, 6, 7, 8, 9+ (the in-ring bit is
  "not the first column").

All blocks are diffused together with the type block: unconditional sampling has no molecule to condition
on, so a feature in X is generated.  Decoding reads the element from the type block and, if present, the
formal charge from the charge block; the other blocks are auxiliary targets that shape the learned score, not
imposed on the decoded molecule (the bonds decide), and their agreement with the molecule is measured by
``molgen.decode.feature_consistency``.  The ``valence`` decoder also reads ``num_hs`` (``molgen.valence``).

A feature that is a function of the molecule can instead be *derived* (``DERIVED_WIDTHS``,
``data.derived_features``): computed from the noisy graph at every score call and given to the networks as
input, not generated (``molgen.derived``).

This module needs neither RDKit nor torch, so the config can check ``data.max_feat_num`` cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

ATOM_VOCAB: dict[str, list[str]] = {
    "qm9": ["C", "N", "O", "F"],
    "zinc250k": ["C", "N", "O", "F", "P", "S", "Cl", "Br", "I"],
    # MOSES keeps C, N, S, O, F, Cl, Br, H (H only implicit in its SMILES).
    "moses": ["C", "N", "O", "F", "S", "Cl", "Br"],
}

DEFAULT_ATOM_FEATURES: tuple[str, ...] = ("type",)

# Category labels of every block except ``type`` (whose categories are the vocabulary).
FEATURE_CATEGORIES: dict[str, tuple] = {
    "charge": (-1, 0, 1),
    "aromatic": (True,),
    "hybridization": ("SP", "SP2", "SP3"),
    "num_hs": (0, 1, 2, "3+"),
    "degree": (1, 2, 3, 4),
    "ring": (0, 3, 4, 5, 6, 7, 8, "9+"),
}
ATOM_FEATURES: tuple[str, ...] = ("type",) + tuple(FEATURE_CATEGORIES)

# Features computed from the noisy graph instead of diffused (``molgen.derived``) -> their input columns.
DERIVED_WIDTHS: dict[str, int] = {"num_hs": 5, "ring": 3}


@dataclass(frozen=True)
class FeatureBlock:
    """One one-hot block of X: its name, category labels and first column."""

    name: str
    categories: tuple
    start: int

    @property
    def width(self) -> int:
        return len(self.categories)

    @property
    def stop(self) -> int:
        return self.start + self.width

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class AtomFeatureSpec:
    """The blocks of X for a vocabulary and a list of feature names (``type`` first), in that order."""

    vocab: tuple[str, ...]
    blocks: tuple[FeatureBlock, ...]

    @classmethod
    def build(cls, names: Sequence[str] = DEFAULT_ATOM_FEATURES, *, dataset: str | None = None,
              vocab: Sequence[str] | None = None) -> "AtomFeatureSpec":
        """Spec for ``names`` over ``vocab`` (or the vocabulary of ``dataset``); bad names raise ValueError."""
        if vocab is None:
            if dataset not in ATOM_VOCAB:
                raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(ATOM_VOCAB)}")
            vocab = ATOM_VOCAB[dataset]
        names = check_atom_features(names)
        blocks, start = [], 0
        for name in names:
            cats = tuple(vocab) if name == "type" else FEATURE_CATEGORIES[name]
            blocks.append(FeatureBlock(name, cats, start))
            start += len(cats)
        return cls(tuple(vocab), tuple(blocks))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    @property
    def width(self) -> int:
        """Total number of columns of X (``data.max_feat_num``)."""
        return self.blocks[-1].stop

    @property
    def extra_blocks(self) -> tuple[FeatureBlock, ...]:
        """All blocks but ``type``."""
        return self.blocks[1:]

    @property
    def is_default(self) -> bool:
        return self.names == DEFAULT_ATOM_FEATURES

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def block(self, name: str) -> FeatureBlock:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(f"feature block {name!r} is not in {list(self.names)}")

    def describe(self) -> str:
        """``"type 4 + charge 3 = 7"``."""
        return " + ".join(f"{b.name} {b.width}" for b in self.blocks) + f" = {self.width}"


def _known_once(names: Sequence[str], field: str, what: str, known) -> tuple[str, ...]:
    """``names`` as a tuple after checking that it is a list of names in ``known``, each listed once (the
    errors name the config ``field`` and call an entry a ``what``)."""
    if isinstance(names, str):
        raise ValueError(f"{field} must be a list of names, got the string {names!r}")
    names = tuple(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; choose from {list(known)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what}(s) {repeated} listed more than once in {list(names)}")
    return names


def check_atom_features(names: Sequence[str]) -> tuple[str, ...]:
    """Validated feature names: known, no repeats, ``type`` first."""
    names = _known_once(names, "atom_features", "atom feature", ATOM_FEATURES)
    if not names or names[0] != "type":
        raise ValueError(f"atom_features must start with 'type' (the element block), got {list(names)}")
    return names


def check_derived_features(names: Sequence[str], atom_features: Sequence[str]) -> tuple[str, ...]:
    """Validated derived feature names: known, no repeats, none also diffused (in ``atom_features``)."""
    names = _known_once(names, "derived_features", "derived feature", DERIVED_WIDTHS)
    both = [n for n in names if n in atom_features]
    if both:
        raise ValueError(f"feature(s) {both} are both diffused (atom_features) and derived (derived_features)")
    return names


def derived_width(names: Sequence[str]) -> int:
    """Number of input columns the derived features ``names`` add to X."""
    return sum(DERIVED_WIDTHS[n] for n in names)


__all__ = [
    "ATOM_FEATURES",
    "ATOM_VOCAB",
    "AtomFeatureSpec",
    "DERIVED_WIDTHS",
    "DEFAULT_ATOM_FEATURES",
    "FEATURE_CATEGORIES",
    "FeatureBlock",
    "check_atom_features",
    "check_derived_features",
    "derived_width",
]
