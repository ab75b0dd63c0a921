"""The kernel benchmark's agreement check (``benchmarks/molgen_kernels.py``): it measures differences, and on tiny
networks every op's C++ and torch paths (forward and forward + backward) agree by it."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import molgen_kernels as mk  # noqa: E402
from molgen.nets import kernels  # noqa: E402
from molgen.nets.can import CANScoreA  # noqa: E402
from molgen.nets.gdss import ScoreNetworkA, ScoreNetworkX, set_kernel_threads  # noqa: E402

needs_kernels = pytest.mark.skipif(not kernels.available(), reason=f"no fused kernels: {kernels.unavailable_reason()}")


def test_max_abs_diff_measures_and_rejects_mismatches():
    a = [torch.zeros(3), (torch.ones(2, 2), None)]
    b = [torch.zeros(3), (torch.ones(2, 2), None)]
    assert mk.max_abs_diff(a, b) == 0.0
    b[1][0][1, 0] += 0.25
    assert mk.max_abs_diff(a, b) == pytest.approx(0.25)
    assert mk.max_abs_diff(a, [torch.zeros(3)]) == math.inf  # a missing tensor
    assert mk.max_abs_diff(torch.zeros(3), torch.zeros(4)) == math.inf  # another shape
    assert mk.max_abs_diff(torch.tensor([1.0, math.nan]), torch.tensor([1.0, 2.0])) == math.inf
    assert mk.max_abs_diff(torch.tensor([1.0, math.nan]), torch.tensor([1.5, math.nan])) == pytest.approx(0.5)
    assert mk.agreement({"p": a, "q": a, "r": b}) == pytest.approx({"p-q": 0.0, "p-r": 0.25, "q-r": 0.25})
    assert mk.entries_off(a, b) == "1/7"  # one entry of the seven off by more than 1e-3 of its tensor's largest
    assert mk.agreement({"p": a, "r": b}, mk.entries_off) == {"p-r": "1/7"}


def _states(b: int = 20, f: int = 4):
    gen = torch.Generator().manual_seed(3)
    x4, adj, flags = mk.random_graphs(b, gen)
    x = torch.nn.functional.pad(x4, (0, f - 4)) + 0.3 * torch.randn(b, 9, f, generator=gen) * flags[..., None]
    z = torch.randn(b, 9, 9, generator=gen).triu(1)
    adj = (adj + 0.3 * (z + z.transpose(1, 2))) * flags[:, :, None] * flags[:, None, :]
    return x, adj, flags, torch.rand(b, generator=gen)


def _check(cases):
    assert cases
    for case in cases:
        results = {p: case.call(p) for p in case.paths}
        scale = max(1.0, mk.max_abs(results["torch"]))
        for pair, diff in mk.agreement(results).items():
            assert diff < 1e-4 * scale, (case.name, case.train, pair, diff)


@needs_kernels
@pytest.mark.parametrize("train", [False, True])
def test_gdss_cases_agree(train):
    torch.manual_seed(0)
    net_x, net_a = ScoreNetworkX(4, 2, 8), ScoreNetworkA(4, 9, 8, 3, 2, 2, 4, 2, 8, 2)
    set_kernel_threads(net_x, 1), set_kernel_threads(net_a, 1)
    cases = mk.gdss_cases(net_x, net_a, _states(), train, None)
    assert {c.name for c in cases} == {c for c in mk.CASES if c.startswith("gdss")}
    _check(cases)


@needs_kernels
@pytest.mark.parametrize("train", [False, True])
def test_can_cases_agree(train):
    torch.manual_seed(0)
    net = CANScoreA(6, hidden=8, num_layers=2, heads=2)
    set_kernel_threads(net, 1)
    cases = mk.can_cases(net, _states(f=6), train, None)
    assert {c.name for c in cases} == {"can.attend", "can.layer"}
    _check(cases)
