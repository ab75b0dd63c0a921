"""Time the molecule metrics on 10,000 QM9 samples.

Stand-in samples: the first 10,000 QM9 test molecules, encoded as graphs and decoded back
(so decoding is timed too); reference sets: the QM9 train / test splits.

    nice -n 10 .venv/bin/python benchmarks/molgen_metrics.py [--n 10000] [--eden]

``--eden`` also times EDeN's own vectorizer for the NSPDK MMD (slow) and prints both values.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--eden", action="store_true", help="also time eden.graph.vectorize for NSPDK")
    ap.add_argument("--cache-dir", default="data/cache", help="disk cache of test-set statistics ('' = none)")
    args = ap.parse_args()
    args.cache_dir = args.cache_dir or None

    from molgen.data import load_dataset
    from molgen.decode import graphs_to_mols
    from molgen.metrics import Reference, evaluate_samples, nspdk_mmd

    t = time.perf_counter()
    ds = load_dataset("qm9")
    t_load = time.perf_counter() - t
    n = min(args.n, ds.n_test)
    print(f"dataset: {ds.summary()}")
    print(f"load_dataset('qm9'): {t_load:.2f} s ({'cache' if ds.stats.get('from_cache') else 'parsed'})")

    t = time.perf_counter()
    res = graphs_to_mols(ds.X_test[:n], ds.A_test[:n], ds.flags("test")[:n], "qm9")
    t_decode = time.perf_counter() - t
    print(f"graphs_to_mols on {n} graphs: {t_decode:.2f} s")

    timings: dict = {}
    t = time.perf_counter()
    out = evaluate_samples(
        res.mols, ds.train_smiles, ds.test_smiles, res.n_valid_wo_correction, timings=timings, cache_dir=args.cache_dir
    )
    t_eval = time.perf_counter() - t
    print(f"evaluate_samples (a new Reference; disk cache {args.cache_dir}): {t_eval:.2f} s")
    print("  per metric (s):", json.dumps({k: round(v, 2) for k, v in timings.items()}))
    reference = Reference(ds.train_smiles, ds.test_smiles, train_is_canonical=True, cache_dir=args.cache_dir)
    evaluate_samples(res.mols, n_valid_wo_correction=res.n_valid_wo_correction, reference=reference)
    timings2: dict = {}
    t = time.perf_counter()
    evaluate_samples(res.mols, n_valid_wo_correction=res.n_valid_wo_correction, timings=timings2, reference=reference)
    print(
        "evaluate_samples (second call on one Reference: test statistics in memory, train_is_canonical=True): "
        f"{time.perf_counter() - t:.2f} s"
    )
    print("  per metric (s):", json.dumps({k: round(v, 2) for k, v in timings2.items()}))
    print("metrics:", json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}))

    if args.eden:
        t = time.perf_counter()
        v = nspdk_mmd(res.mols, ds.test_smiles, backend="eden")
        print(f"NSPDK MMD with eden.graph.vectorize: {v:.6g} in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        v2 = nspdk_mmd(res.mols, ds.test_smiles, backend="fast", label_hash="python")
        print(f"NSPDK MMD fast, label_hash='python' (same features as eden): {v2:.6g} in {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
