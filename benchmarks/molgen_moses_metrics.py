"""Our molecule metrics against MOSES's own metric code on the same generated SMILES and the same QM9 sets.

An independent check of ``molgen.metrics``: validity, uniqueness, novelty and FCD are defined as MOSES defines them
(``molgen.metrics``'s docstring), so MOSES's ``get_all_metrics`` (molsets 0.3.1, made runnable on current libraries
by ``tests/molgen/moses_shim.py``) must give the same numbers on the same molecules.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/molgen_moses_metrics.py [SAMPLES.smi ...]
        [--dataset qm9] [--cache-dir data/cache] [--json benchmarks/results/molgen_moses_metrics.json]

For each sample file (default: the committed ``data/runs/molgen/qm9_gdss_s42/samples.smi``):

- ours: ``molgen.metrics.evaluate_samples`` exactly as ``molgen.pipeline.evaluate_file`` calls it (the file's
  lines, ``n_generated`` and ``n_valid_wo_correction`` from its ``.json``; train / test SMILES of
  ``molgen.data.load_dataset(dataset)``, the default split; FCD test statistics from the disk cache ``--cache-dir``,
  as the pipeline reads them; ``''`` recomputes them);
- MOSES: ``get_all_metrics`` on the same lines, padded with empty strings (invalid to MOSES) up to
  ``n_generated`` so that both count graphs that did not decode; ``test`` = the same test SMILES (statistics
  computed once, by MOSES's ``compute_intermediate_statistics``), ``train`` = the same (canonical) training SMILES,
  no scaffold test set (QM9 has none, and MOSES's own is of other molecules), ``unique@k`` for k = 1000, 10000 and
  the number of items (all valid ones: our uniqueness).

One torch / BLAS thread and ``n_jobs=1`` throughout. The JSON holds both sets of numbers, the difference and ratio
(MOSES / ours) of the four shared metrics, per-stage seconds, the commit and the device.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = "data/runs/molgen/qm9_gdss_s42/samples.smi"
PACKAGES = ("molsets", "fcd-torch", "rdkit", "torch", "numpy", "pandas", "scipy")


def read_samples(path: Path) -> tuple[list[str], dict]:
    """The SMILES lines of a sample file (as ``molgen.pipeline.evaluate_file`` reads them) and its ``.json``."""
    meta_path = Path(str(path) + ".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()], meta


def compare(ours: dict, moses: dict, n_items: int) -> dict:
    """Ours, MOSES's, MOSES - ours and MOSES / ours for the metrics both define."""
    pairs = {"validity": "valid", "uniqueness": f"unique@{n_items}", "novelty": "Novelty", "fcd": "FCD/Test"}
    out = {}
    for name, moses_name in pairs.items():
        a, b = float(ours[name]), float(moses[moses_name])
        out[name] = {"ours": a, "moses": b, "moses_key": moses_name, "difference": b - a,
                     "ratio": b / a if a else float("nan")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", nargs="*", default=[DEFAULT_SAMPLES], help="SMILES files, one molecule per line")
    ap.add_argument("--dataset", default="qm9")
    ap.add_argument("--cache-dir", default="data/cache", help="disk cache of our test-set statistics ('' = none)")
    ap.add_argument("--json", default="benchmarks/results/molgen_moses_metrics.json")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    sys.path.insert(0, str(ROOT / "tests/molgen"))
    import moses_shim
    from common.io import write_json
    from common.provenance import device_name, git_commit
    from molgen.data import load_dataset
    from molgen.metrics import Reference, evaluate_samples

    t = time.perf_counter()
    ds = load_dataset(args.dataset)
    reference = Reference(ds.train_smiles, ds.test_smiles, train_is_canonical=True, cache_dir=args.cache_dir or None)
    seconds = {"load_dataset": time.perf_counter() - t}
    print(ds.summary())

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ptest = moses_shim.moses_metrics.compute_intermediate_statistics(ds.test_smiles, n_jobs=1, device="cpu")
    seconds["moses_test_statistics"] = time.perf_counter() - t
    print(f"MOSES statistics of the {ds.n_test} test SMILES: {seconds['moses_test_statistics']:.1f} s")

    runs = []
    for sample in args.samples:
        path = ROOT / sample
        smiles, meta = read_samples(path)
        n_generated = int(meta.get("n_sampled", len(smiles)))
        kwargs = {"n_generated": n_generated, "n_valid_wo_correction": meta.get("n_valid_wo_correction")}
        timings: dict = {}
        t = time.perf_counter()
        ours = evaluate_samples(smiles, reference=reference, timings=timings, **kwargs)
        t_ours = time.perf_counter() - t

        gen = smiles + [""] * (n_generated - len(smiles))
        ks = sorted({k for k in (1000, 10000) if k <= len(gen)} | {len(gen)})
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            moses = moses_shim.get_all_metrics(gen, ds.test_smiles, train=ds.train_smiles, ptest=ptest, k=ks)
        t_moses = time.perf_counter() - t

        both = compare(ours, moses, len(gen))
        seed = meta.get("seed") if meta.get("seed") is not None else meta.get("sampler", {}).get("seed")
        runs.append({"sample_file": sample, "seed": seed, "n_lines": len(smiles), "n_generated": n_generated,
                     "n_padded_for_moses": len(gen) - len(smiles), "samples_commit": meta.get("commit"),
                     "ours": ours, "moses": moses, "compare": both,
                     "seconds": {"ours": t_ours, "ours_per_metric": timings, "moses": t_moses}})
        print(f"{sample}: ours {t_ours:.1f} s, MOSES {t_moses:.1f} s")
        for name, c in both.items():
            print(f"  {name:10s} ours {c['ours']:.6f}  MOSES {c['moses']:.6f}  diff {c['difference']:+.2e}")

    seconds["total"] = time.perf_counter() - t_start
    result = {
        "what": "molgen.metrics.evaluate_samples vs moses.get_all_metrics (molsets, via tests/molgen/moses_shim.py) "
                "on the same generated SMILES and the same train/test SMILES",
        "commit": git_commit(),
        "device": device_name("cpu"),
        "threads": 1,
        "n_jobs": 1,
        "dataset": {"name": args.dataset, "n_train": ds.n_train, "n_test": ds.n_test, "split": ds.split_source},
        "our_test_statistics_cache": args.cache_dir or None,
        "moses_test_scaffolds": None,
        "versions": {p: importlib.metadata.version(p) for p in PACKAGES},
        "seconds": seconds,
        "runs": runs,
    }
    write_json(ROOT / args.json, result)
    print(f"wrote {args.json} ({seconds['total']:.1f} s)")


if __name__ == "__main__":
    main()
