"""Run both peers on toy problems and tabulate their recovery of k.

    /work/peers-venv/bin/python benchmarks/peers/run_toy_benchmark.py \
        [--noise 0 0.01 0.05] [--seeds 0 1 2] [--starts 10] [--work /tmp/peer-toys] \
        [--out benchmarks/peers/results/toy.json]

For each seed a toy network (toy_problem.py; the network and initial conditions depend
on the seed only, the noise on seed and level), then each noise level: the two peers run
one after the other, each as its own process with OMP_NUM_THREADS=1.  Writes the JSON
(every score, wall time and the peers' RESULT.json paths) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _problem import versions, write_json_atomic  # noqa: E402
from score import read_truth, score_k  # noqa: E402


def sh(cmd, log):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    return rc, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01, 0.05])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--work", default="/tmp/peer-toys")
    ap.add_argument("--out", default=str(HERE / "results" / "toy.json"))
    a = ap.parse_args(argv)
    py = sys.executable
    work = Path(a.work)
    rows = []
    for seed in a.seeds:
        for noise in a.noise:
            P = work / f"seed{seed}_noise{noise:g}"
            subprocess.run([py, str(HERE / "toy_problem.py"), str(P), "--noise", str(noise),
                            "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
            truth = read_truth(P)
            runs = {
                "pypesto+amici": [py, str(HERE / "pypesto_amici.py"), str(P), "--out",
                                  str(P / "result_pypesto_amici.json"), "--starts",
                                  str(a.starts), "--seed", str(seed), "--max-seconds",
                                  str(a.max_seconds)],
                "pysindy-weak": [py, str(HERE / "sindy_weak.py"), str(P), "--out",
                                 str(P / "result_sindy_weak.json"), "--seed", str(seed)],
            }
            for peer, cmd in runs.items():
                res_path = Path(cmd[cmd.index("--out") + 1])
                rc, wall = sh(cmd, res_path.with_suffix(".log"))
                row = {"seed": seed, "noise": noise, "peer": peer, "rc": rc,
                       "wall_process_s": wall, "n_k": len(truth), "result": str(res_path)}
                if rc == 0:
                    r = json.loads(res_path.read_text())
                    row.update(variant="k", **score_k(r["k"], truth), wall_s=r["wall_s"])
                    if peer == "pypesto+amici":
                        row.update(converged=f"{r['converged_starts']}/{r['starts']}",
                                   at_best=r["starts_at_best"], compiled=r["compiled_now"],
                                   n_fun_evals=r["n_fun_evals"])
                    rows.append(row)
                    if peer == "pysindy-weak":
                        row["clipped"] = r["k_clipped_to_bounds"]
                        for key, var in (("k_stoich", "k_stoich"), ("stlsq", "stlsq")):
                            kk = r[key]["k"] if key == "stlsq" else r[key]
                            rows.append({**row, "variant": var, **score_k(kk, truth)})
                else:
                    rows.append(row)
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "result"}),
                      flush=True)
    out = Path(a.out)
    meta = {"machine": f"{os.cpu_count()}-core CPU, {platform.machine()}, no GPU",
            "versions": versions("pypesto", "amici", "fides", "petab", "pysindy", "numpy",
                                 "scipy", "scikit-learn", "python-libsbml"),
            "starts": a.starts, "seeds": a.seeds, "noise": a.noise}
    write_json_atomic(out, {"meta": meta, "rows": rows})
    lines = ["| noise | seed | peer | variant | n_k | R2 log10 k | n bad (>0.3) | max abs dlog10 "
             "| wall s (total) | notes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["rc"] != 0:
            lines.append(f"| {r['noise']:g} | {r['seed']} | {r['peer']} | - | {r['n_k']} | "
                         f"FAILED rc={r['rc']} | | | {r['wall_process_s']:.1f} | |")
            continue
        note = ""
        if r["peer"] == "pypesto+amici":
            note = (f"converged {r['converged']}, at best {r['at_best']}, "
                    f"compile {r['wall_s']['compile']:.1f}s"
                    + (" (new)" if r["compiled"] else " (cached)"))
        elif r["variant"] == "k" and r.get("clipped"):
            note = f"{r['clipped']} k <= 0 clipped to the lower bound"
        wall = f"{r['wall_s']['total']:.1f}" if r["variant"] in ("k",) else "(same fit)"
        lines.append(f"| {r['noise']:g} | {r['seed']} | {r['peer']} | {r['variant']} | "
                     f"{r['n']} | {r['r2_log10']:.4f} | {r['n_bad']} | "
                     f"{r['max_abs_dlog10']:.3f} | {wall} | {note} |")
    lines += ["", "Summary over seeds (mean R2, total n bad / total k, mean and max wall s):", "",
              "| noise | peer | variant | mean R2 log10 k | n bad / n k | wall s mean (max) |",
              "|---|---|---|---|---|---|"]
    ok = [r for r in rows if r["rc"] == 0]
    keys = list(dict.fromkeys((r["noise"], r["peer"], r["variant"]) for r in ok))
    for noise, peer, var in sorted(keys, key=lambda x: (x[0], x[1], x[2])):
        g = [r for r in ok if (r["noise"], r["peer"], r["variant"]) == (noise, peer, var)]
        walls = [r["wall_s"]["total"] for r in g]
        lines.append(f"| {noise:g} | {peer} | {var} | "
                     f"{sum(r['r2_log10'] for r in g) / len(g):.4f} | "
                     f"{sum(r['n_bad'] for r in g)} / {sum(r['n'] for r in g)} | "
                     f"{sum(walls) / len(walls):.1f} ({max(walls):.1f}) |")
    failed = [r for r in rows if r["rc"] != 0]
    if failed:
        lines.append(f"\n{len(failed)} run(s) failed: see the logs next to their results.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
