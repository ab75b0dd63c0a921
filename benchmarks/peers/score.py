"""Score a peer RESULT.json against P/truth.csv.

    python benchmarks/peers/score.py P RESULT.json [--key k]

R^2 of log10 k against y = x: 1 - SS_res / SS_tot with residuals
log10 k_est - log10 k_true and SS_tot around the mean of log10 k_true; n_bad = number of
|log10 k_est - log10 k_true| > 0.3.  Non-positive or missing estimates count as
10**-12 (so they are scored, badly, instead of dropped).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

BAD = 0.3


def score_k(k_est: dict, truth: pd.Series) -> dict:
    names = list(truth.index)
    lt = np.log10(truth.to_numpy(dtype=float))
    le = np.array([np.log10(k_est[n]) if (n in k_est and k_est[n] is not None
                                           and np.isfinite(k_est[n]) and k_est[n] > 0)
                   else -12.0 for n in names])
    d = le - lt
    ss_res = float(np.sum(d ** 2))
    ss_tot = float(np.sum((lt - lt.mean()) ** 2))
    return {"r2_log10": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "n_bad": int(np.sum(np.abs(d) > BAD)), "n": len(names),
            "max_abs_dlog10": float(np.max(np.abs(d))),
            "median_abs_dlog10": float(np.median(np.abs(d)))}


def read_truth(P) -> pd.Series:
    return pd.read_csv(f"{P}/truth.csv").set_index("parameter")["value"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("problem")
    ap.add_argument("result")
    ap.add_argument("--key", default="k", help="dotted key of the k dict, e.g. stlsq.k")
    a = ap.parse_args(argv)
    r = json.load(open(a.result))
    for part in a.key.split("."):
        r = r[part]
    print(json.dumps(score_k(r, read_truth(a.problem)), indent=2))


if __name__ == "__main__":
    sys.exit(main())
