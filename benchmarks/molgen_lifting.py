"""Speed of lifting QM9 graphs to cell complexes (``molgen.complexes``).

    python benchmarks/molgen_lifting.py [--n 10000] [--repeats 5] [--naive 200] [--threads 1]

* ``lift_graphs`` on the first ``--n`` QM9 training graphs (``molgen.data.load_dataset("qm9")``), batched:
  ``clean`` = the molecules' bond-order adjacencies; ``noisy`` = A + symmetric N(0, 1) noise, thresholded at
  0.5 as during sampling (where the lift runs at each of 1,000 diffusion steps). Best and median of
  ``--repeats`` runs.
* ``lift_mols`` (RDKit rings, Python loop over molecules) on the same molecules.
* The naive route, per molecule, on the first ``--naive`` graphs: a TopoNetX ``CellComplex`` with the RDKit
  bonds and rings (clean) or the networkx chordless cycles of the noisy graph (noisy), then B1, B2 and the
  up/down Laplacians as scipy matrices; seconds extrapolated to ``--n`` graphs.

Prints a summary and writes JSON to ``benchmarks/results/molgen_lifting.json`` (``--out``), with torch
version, threads, load average and git commit.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import torch
from rdkit import Chem
from toponetx.classes import CellComplex

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from molgen.complexes import lift_graphs, lift_mols  # noqa: E402
from molgen.data import load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def symmetric_noise(like: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(like.shape, generator=gen).triu(1)
    return z + z.transpose(1, 2)


def naive_complex(nodes: int, edges, rings):
    """TopoNetX CellComplex and the matrices a cell network needs, built the straightforward way."""
    cc = CellComplex()
    for a in range(nodes):
        cc.add_node(a)
    cc.add_edges_from(edges)
    for r in rings:
        cc.add_cell(list(r), rank=2)
    mats = [cc.incidence_matrix(1), cc.down_laplacian_matrix(1, signed=False) if edges else None]
    if rings:
        mats += [cc.incidence_matrix(2), cc.up_laplacian_matrix(1, signed=False)]
    return mats


def naive_clean(smiles: list[str]) -> float:
    t0 = time.perf_counter()
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        edges = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
        naive_complex(mol.GetNumAtoms(), edges, mol.GetRingInfo().AtomRings())
    return time.perf_counter() - t0


def naive_noisy(adj: torch.Tensor, flags: torch.Tensor, threshold: float, max_ring: int) -> float:
    t0 = time.perf_counter()
    for a, f in zip(adj, flags):
        k = int(f.sum())
        G = nx.Graph()
        G.add_nodes_from(range(k))
        G.add_edges_from((i, j) for i, j in (a[:k, :k] > threshold).triu(1).nonzero().tolist())
        rings = [c for c in nx.chordless_cycles(G, length_bound=max_ring) if len(c) >= 3]
        naive_complex(k, list(G.edges), rings)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="graphs lifted in one batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--naive", type=int, default=200, help="molecules for the per-molecule TopoNetX route")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--max-ring", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "molgen_lifting.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = load_dataset("qm9")
    adj, flags = ds.A_train[: args.n], ds.flags()[: args.n]
    noisy = adj + symmetric_noise(adj, args.seed)
    smiles = ds.train_smiles[: args.n]
    load_before = os.getloadavg()

    res: dict[str, dict] = {}
    for name, a in (("clean", adj), ("noisy", noisy)):
        times, cx = timed(lambda: lift_graphs(a, flags, args.threshold, args.max_ring), args.repeats)
        res[f"lift_graphs_{name}"] = {
            "seconds_best": min(times),
            "seconds_median": statistics.median(times),
            "graphs": int(a.shape[0]),
            "edges": cx.num_edges,
            "faces": cx.num_faces,
            "down_pairs": int(cx.down_index.shape[1]),
            "up_pairs": int(cx.up_index.shape[1]),
        }
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    times, cx = timed(lambda: lift_mols(mols, ds.max_atoms), max(1, args.repeats // 2))
    res["lift_mols"] = {"seconds_best": min(times), "graphs": len(mols), "edges": cx.num_edges, "faces": cx.num_faces}

    m = min(args.naive, len(smiles))
    for name, seconds in (
        ("naive_toponetx_clean", naive_clean(smiles[:m])),
        ("naive_toponetx_noisy", naive_noisy(noisy[:m], flags[:m], args.threshold, args.max_ring)),
    ):
        res[name] = {"seconds": seconds, "graphs": m, f"seconds_per_{args.n}_extrapolated": seconds / m * args.n}

    out = {
        "benchmark": "molgen_lifting",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "n_graphs": args.n,
        "threshold": args.threshold,
        "max_ring": args.max_ring,
        "noise": "A + symmetric N(0, 1), seed %d" % args.seed,
        "results": res,
    }
    load_after = out["load_average_after"]
    print(f"torch {out['torch']}, {out['threads']} thread(s), load average {load_before} -> {load_after}")
    for key, r in res.items():
        secs = r.get("seconds_best", r.get("seconds"))
        extra = {k: v for k, v in r.items() if k not in ("seconds_best", "seconds")}
        print(f"  {key:24s} {secs:8.3f} s  {extra}")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
