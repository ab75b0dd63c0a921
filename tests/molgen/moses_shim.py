"""MOSES's own metric code (molsets 0.3.1, ``moses.metrics.get_all_metrics``) made importable and callable on
current RDKit / pandas / numpy, to check ``molgen.metrics`` against it; test-only, site-packages stays untouched.

Fixes (what, why):

* fake ``rdkit.six`` with ``iteritems`` in ``sys.modules``: ``sascorer`` imports it, and current RDKit has no ``six``.
* ``DataFrame.append`` = ``pd.concat`` while moses imports, then removed: its filter tables use it (gone in pandas 2).
* :func:`get_all_metrics` needs ``test=`` and stubs moses's loaders: moses would load its own data for sets not given.
* RDKit log muted again after each call: moses's ``get_all_metrics`` ends by turning all RDKit logging back on.

Checked, not needed:

* fcd_torch 1.0.7 (what ``molgen.metrics`` uses) works; ``np.row_stack`` and scipy ``sqrtm(disp=)`` only warn.
* ``np.NaN`` (gone in numpy 2) is reached only for a molecule without a fingerprint: invalid ones are dropped first.
* no ``np.float`` / ``np.int`` in the metric code; pomegranate is used only by ``moses.baselines`` (not imported).
* multiprocessing: ``n_jobs=1`` (the default here) maps in-process; fcd_torch's DataLoader then has no workers.
* RDKit's deprecated ``GetMorganFingerprint(AsBitVect)`` still exist; their warnings go to the muted RDKit log.
"""
from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from typing import Iterator, Sequence
from unittest import mock

import pandas as pd
from rdkit import RDLogger


def _install_rdkit_six() -> None:
    """Put a minimal ``rdkit.six`` (``iteritems`` only, what moses uses) in ``sys.modules`` if RDKit lacks it."""
    try:
        import rdkit.six  # noqa: F401
    except ImportError:
        six = types.ModuleType("rdkit.six")
        six.iteritems = lambda d, **kw: iter(d.items(**kw))
        sys.modules["rdkit.six"] = six


@contextmanager
def _dataframe_append() -> Iterator[None]:
    """``DataFrame.append`` (``pd.concat`` of two frames) while the block runs, if pandas lacks it."""
    if hasattr(pd.DataFrame, "append"):
        yield
        return

    def append(self: pd.DataFrame, other: pd.DataFrame, ignore_index: bool = False, sort: bool = False):
        return pd.concat([self, other], ignore_index=ignore_index, sort=sort)

    pd.DataFrame.append = append
    try:
        yield
    finally:
        del pd.DataFrame.append


_install_rdkit_six()
with _dataframe_append():
    import moses  # noqa: F401
    import moses.metrics.metrics as moses_metrics

__version__: str = moses.__version__


def _no_moses_dataset(split: str):
    if split == "test":
        raise RuntimeError("moses_shim: MOSES's own test set was asked for; pass test=")
    return None  # train / test_scaffolds: the metrics that need them are skipped


def _no_moses_statistics(split: str):
    if split == "test":
        raise RuntimeError("moses_shim: MOSES's own test statistics were asked for; pass test=")
    return None


def get_all_metrics(
    gen: Sequence[str],
    test: Sequence[str],
    *,
    train: Sequence[str] | None = None,
    test_scaffolds: Sequence[str] | None = None,
    ptest: dict | None = None,
    k: int | Sequence[int] | None = None,
    n_jobs: int = 1,
    device: str = "cpu",
    batch_size: int = 512,
) -> dict[str, float]:
    """``moses.get_all_metrics`` of the generated SMILES against the given sets only, never MOSES's data.

    ``test``: test SMILES (FCD/SNN/Frag/Scaf/property metrics ``*/Test``); ``ptest``: their statistics from
    ``moses_metrics.compute_intermediate_statistics(test)``, to compute them once for several calls.
    ``train``: training SMILES for ``Novelty`` (compared as given with canonical generated SMILES, so pass
    RDKit-canonical ones); ``None``: no Novelty. ``test_scaffolds``: scaffold-test SMILES (``*/TestSF``);
    ``None``: none. ``k``: the ``unique@k`` cut-offs (MOSES's default ``[1000, 10000]``).
    """
    ks = None if k is None else [k] if isinstance(k, int) else list(k)
    with mock.patch.object(moses_metrics, "get_dataset", _no_moses_dataset), \
            mock.patch.object(moses_metrics, "get_statistics", _no_moses_statistics):
        try:
            out = moses_metrics.get_all_metrics(
                list(gen), k=ks, n_jobs=n_jobs, device=device, batch_size=batch_size, test=list(test), ptest=ptest,
                test_scaffolds=None if test_scaffolds is None else list(test_scaffolds),
                train=None if train is None else list(train),
            )
        finally:
            RDLogger.DisableLog("rdApp.*")
    return {name: float(v) for name, v in out.items()}


__all__ = ["get_all_metrics", "moses_metrics"]
