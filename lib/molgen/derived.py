"""Atom features derived from the noisy graph at every score call, instead of diffused with X.

Diffusing a feature that is a function of the molecule (hydrogen count, ring membership) asks the networks to
generate it consistently with the bonds they generate, which at a short budget they do not (38% of the
generated hydrogen counts agreed with the decoded molecule on ``can_feat`` seed 42).  A derived feature is
computed from the current (X_t, A_t) and given to the networks as an extra input: they see it, nobody has to
generate it, and it agrees with the final molecule by construction.  Names (``data.derived_features``):

* ``num_hs``: the hydrogens the valence leaves, ``v - sum_j order_ij`` with ``v`` the largest valence RDKit
  allows the atom's element at its charge (argmax of the type and charge blocks of X_t) and the orders A_t
  quantized at GDSS's 0.5 / 1.5 / 2.5; one-hot over < 0 (over-valent, what validity hinges on), 0, 1, 2, 3+;
* ``ring``: whether the atom lies on a 3-, 4- and 5-cycle of the quantized bonds (three indicators: the
  number of simple k-cycles through each node, from traces of powers of the adjacency; QM9's larger rings are
  left to the networks).

Computed without gradients (they are step functions of X_t and A_t) and in the networks' dtype and device.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .features import AtomFeatureSpec, check_derived_features, derived_width
from .decode import BOND_THRESHOLDS
from .valence import allowed_valences


def cycle_counts(bonds: torch.Tensor) -> torch.Tensor:
    """(B, N, 3): the number of simple 3-, 4- and 5-cycles through each node of the 0/1 adjacencies ``bonds``
    (B, N, N) (closed walks minus the degenerate ones, as DiGress's node-level cycle features)."""
    d = bonds.sum(-1)
    a2 = bonds @ bonds
    a3 = a2 @ bonds
    t = torch.diagonal(a3, dim1=-2, dim2=-1)
    w4 = torch.diagonal(a3 @ bonds, dim1=-2, dim2=-1)
    w5 = torch.diagonal(a3 @ a2, dim1=-2, dim2=-1)
    c3 = t / 2
    c4 = (w4 - d * (d - 1) - (bonds @ d.unsqueeze(-1)).squeeze(-1)) / 2
    c5 = (w5 - 2 * d * t - 2 * ((bonds * a2) @ d.unsqueeze(-1)).squeeze(-1)
          - (bonds @ t.unsqueeze(-1)).squeeze(-1) + 5 * t) / 2
    return torch.stack([c3, c4, c5], dim=-1)


class DerivedAtomFeatures(nn.Module):
    """``forward(x, adj, flags) -> (B, N, width)``: the derived features ``names`` of the noisy graph.

    ``spec``: the diffused blocks of X (``type`` first; ``charge`` is read if present, else atoms are
    neutral); ``bond_unit``: bond order 1 in A's scale (1 for raw orders, 1/3 for "unit").
    """

    def __init__(self, names: Sequence[str], spec: AtomFeatureSpec, bond_unit: float = 1.0):
        super().__init__()
        self.names = check_derived_features(names, spec.names)
        self.width = derived_width(self.names)
        self.type_slice = spec.blocks[0].slice
        self.charge_slice = spec.block("charge").slice if "charge" in spec else None
        charges = spec.block("charge").categories if "charge" in spec else (0,)
        table = [[max(allowed_valences(sym, c), default=0) for c in charges] for sym in spec.vocab]
        self.register_buffer("valence", torch.tensor(table, dtype=torch.float32), persistent=False)
        self.bond_unit = float(bond_unit)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, adj: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        pair = flags.unsqueeze(-1) * flags.unsqueeze(-2)
        raw = adj / self.bond_unit
        orders = sum((raw >= th).to(x.dtype) for th in BOND_THRESHOLDS) * pair
        parts = []
        for name in self.names:
            if name == "num_hs":
                kind = x[..., self.type_slice].argmax(-1)
                charge = x[..., self.charge_slice].argmax(-1) if self.charge_slice is not None else torch.zeros_like(kind)
                left = self.valence.to(x.dtype)[kind, charge] - orders.sum(-1)
                cat = (left.clamp(-1, 3) + 1).long()
                parts.append(nn.functional.one_hot(cat, 5).to(x.dtype))
            else:
                parts.append((cycle_counts((orders > 0).to(x.dtype)) > 0.5).to(x.dtype))
        return torch.cat(parts, dim=-1) * flags.unsqueeze(-1)


class WithDerivedInput(nn.Module):
    """A score network that sees X_t with the derived features appended: ``net(cat(x, derive(x, adj, flags)),
    adj, flags, ...)``; everything else (time conditioning, lifting, threads) is the wrapped network's."""

    def __init__(self, net: nn.Module, derive: DerivedAtomFeatures):
        super().__init__()
        self.net, self.derive = net, derive

    def forward(self, x: torch.Tensor, adj: torch.Tensor, flags: torch.Tensor, *args, **kw) -> torch.Tensor:
        return self.net(torch.cat([x, self.derive(x, adj, flags)], dim=-1), adj, flags, *args, **kw)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)


__all__ = ["DerivedAtomFeatures", "WithDerivedInput", "cycle_counts"]
