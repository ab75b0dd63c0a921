"""Does decoding with the generated atom features help? The same sampled graphs of a trained run decoded by
GDSS's decoder (bond orders from A, valence correction after) and by the ``valence`` decoder (bond topology
from A, orders that meet the valences the generated charges and hydrogen counts set; GDSS's where no
assignment does), with the standard metrics on each.

The raw samples (X, A, flags) are drawn once per run with the run's own sampler seed and kept in ``--cache``
(a torch file per run and sample count), so that the decoders see identical graphs and a rerun only decodes.
Rows: per run and decoder, validity without correction, validity, uniqueness, novelty, FCD, NSPDK, the share
of graphs whose orders came from the features and the bonds they changed per such graph, decode seconds.

    python benchmarks/molgen_decoders.py data/runs/molgen/ablation_equal_epochs/can_feat_s42 ... [--n 2500]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

import torch  # noqa: E402

from common.io import write_json  # noqa: E402
from common.provenance import device_name, git_commit  # noqa: E402
from molgen.decode import decode_graphs, mols_to_smiles  # noqa: E402
from molgen.metrics import evaluate_samples  # noqa: E402
from molgen.pipeline import sample_run  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "molgen_decoders.json"
DECODERS = ("gdss", "valence")


def raw_samples(run: Path, n: int, cache: Path) -> dict:
    """X, A, flags, vocabulary and atom features of ``n`` graphs sampled from ``run`` (cached)."""
    path = cache / f"{run.name}_{n}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    res = sample_run(run, n, [], progress=False)
    raw = {"x": res["x"], "adj": res["adj"], "flags": res["flags"].bool(), "vocab": res["vocab"],
           "epoch": res["epoch"], "seconds": res["seconds"],
           "atom_features": list(res["config"].data.atom_features)}
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(raw, path)
    return raw


def decode_row(raw: dict, decoder: str) -> dict:
    t0 = time.perf_counter()
    res = decode_graphs(raw["x"], raw["adj"], raw["flags"].float(), "qm9", decoder=decoder, vocab=raw["vocab"],
                        atom_features=raw["atom_features"])
    seconds = time.perf_counter() - t0
    smiles = [s for s in mols_to_smiles([r.mol for r in res if r.mol is not None]) if s]
    valid_wo = sum(r.valid_wo_correction for r in res)
    m = evaluate_samples(smiles, dataset="qm9", n_generated=len(res), n_valid_wo_correction=valid_wo)
    from_features = sum(r.from_features for r in res)
    return {**{k: m[k] for k in ("validity_wo_correction", "validity", "uniqueness", "novelty", "fcd", "nspdk")},
            "from_features": from_features / len(res),
            "bonds_changed_per_graph": sum(r.bonds_changed for r in res) / max(from_features, 1),
            "seconds_decode": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--n", type=int, default=2500)
    p.add_argument("--cache", type=Path, default=Path("/tmp/molgen_decoders"))
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    done = {(r["run"], r["n"], r["decoder"]) for r in rows}
    for run in args.runs:
        raw = None
        for decoder in DECODERS:
            if (str(run), args.n, decoder) in done:
                continue
            raw = raw if raw is not None else raw_samples(run, args.n, args.cache)
            row = {"run": str(run), "n": args.n, "decoder": decoder, "epoch": raw["epoch"],
                   "atom_features": raw["atom_features"], **decode_row(raw, decoder),
                   "commit": git_commit(short=True)}
            rows.append(row)
            write_json(args.out, {"benchmark": "molgen_decoders", "device": device_name(torch.device("cpu")),
                                  "threads": 1, "rows": rows})
            print(f"{run.name} {decoder}: validity w/o correction {row['validity_wo_correction']:.3f} FCD "
                  f"{row['fcd']:.2f} from features {row['from_features']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
