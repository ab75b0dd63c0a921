"""GDSS score networks: the same function as GDSS's loop-form code, equivariance, symmetry, masks, kernels."""
from __future__ import annotations

import copy

import pytest
import torch

from molgen.nets import kernels
from molgen.nets.gdss import MLP, ScoreNetworkA, ScoreNetworkX, set_kernel_threads, set_use_kernels
from molgen.nets.gdss_reference import reference_score_a, reference_score_x

needs_kernels = pytest.mark.skipif(not kernels.available(), reason=f"no fused kernels: {kernels.unavailable_reason()}")


def random_graphs(b: int, n: int, f: int, seed: int = 0, min_nodes: int = 1):
    """Flagged graphs with noisy (continuous, symmetric, zero-diagonal) X and A, as the score nets see them."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(min_nodes, n + 1, (b,), generator=g)
    flags = (torch.arange(n)[None] < k[:, None]).float()
    x = torch.randn(b, n, f, generator=g) * flags[..., None]
    z = torch.randn(b, n, n, generator=g).triu(1)
    adj = (z + z.transpose(1, 2)) * flags[:, :, None] * flags[:, None, :]
    return x, adj, flags


def nets(f=4, n=9, seed=0, small=False):
    torch.manual_seed(seed)
    if small:
        return ScoreNetworkX(f, 2, 8), ScoreNetworkA(f, n, 8, 2, 2, 2, 4, 2, 8, 2)
    return ScoreNetworkX(f, 2, 16), ScoreNetworkA(f, n, 16, 3, 3, 2, 8, 4, 16, 4)  # GDSS QM9 sizes


def _grads(net, fn, x, adj, flags):
    for p in net.parameters():
        p.grad = None
    out = fn(x, adj, flags)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * w).sum().backward()
    return out.detach(), [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_kernels)])
def test_same_function_and_gradients_as_gdss_loop_form(fused):
    x, adj, flags = random_graphs(40, 9, 4)
    net_x, net_a = nets()
    for net, ref in ((net_x, reference_score_x), (net_a, reference_score_a)):
        set_use_kernels(net, fused)
        out, grads = _grads(net, net, x, adj, flags)
        out_ref, grads_ref = _grads(net, lambda *a: ref(net, *a), x, adj, flags)
        torch.testing.assert_close(out, out_ref, atol=2e-6, rtol=1e-5)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g, gr, atol=1e-5 * (1 + gr.abs().max().item()), rtol=1e-4)


@needs_kernels
def test_kernel_larger_graphs_and_partial_blocks():
    """ZINC-like sizes (N=38, 9 atom types) and a batch that is not a multiple of the 16-graph block, against
    a float64 evaluation of the loop-form networks (float32 round-off grows with N)."""
    x, adj, flags = random_graphs(21, 38, 9, seed=3)
    net_x, net_a = nets(f=9, n=38, seed=1, small=True)
    for net, ref in ((net_x, reference_score_x), (net_a, reference_score_a)):
        set_use_kernels(net, True)
        out, grads = _grads(net, net, x, adj, flags)
        net64 = copy.deepcopy(net).double()
        out_ref, grads_ref = _grads(net64, lambda *a: ref(net64, *a), x.double(), adj.double(), flags.double())
        torch.testing.assert_close(out.double(), out_ref, atol=1e-5, rtol=1e-4)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g.double(), gr, atol=1e-4 * (1 + gr.abs().max().item()), rtol=1e-4)


@needs_kernels
def test_kernel_threads_do_not_change_results():
    x, adj, flags = random_graphs(200, 9, 4, seed=4)
    _, net_a = nets()
    one = set_kernel_threads(net_a, 1)(x, adj, flags)
    three = set_kernel_threads(net_a, 3)(x, adj, flags)
    torch.testing.assert_close(one, three, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_kernels)])
def test_permutation_equivariance(fused):
    x, adj, flags = random_graphs(6, 9, 4, seed=2)
    net_x, net_a = nets()
    set_use_kernels(net_x, fused), set_use_kernels(net_a, fused)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(7))
    xp, ap, fp = x[:, perm], adj[:, perm][:, :, perm], flags[:, perm]
    with torch.no_grad():
        torch.testing.assert_close(net_x(xp, ap, fp), net_x(x, adj, flags)[:, perm], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net_a(xp, ap, fp), net_a(x, adj, flags)[:, perm][:, :, perm], atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_kernels)])
def test_adjacency_score_symmetric_zero_diagonal_and_masked(fused):
    x, adj, flags = random_graphs(12, 9, 4, seed=5)
    net_x, net_a = nets()
    set_use_kernels(net_x, fused), set_use_kernels(net_a, fused)
    with torch.no_grad():
        sa, sx = net_a(x, adj, flags), net_x(x, adj, flags)
    assert sa.shape == adj.shape and sx.shape == x.shape
    assert torch.equal(sa, sa.transpose(1, 2))
    assert torch.all(sa.diagonal(dim1=1, dim2=2) == 0)
    pair = flags[:, :, None] * flags[:, None, :]
    assert torch.all(sa[pair == 0] == 0)
    assert torch.all(sx[flags == 0] == 0)
    assert sa[pair == 1].abs().sum() > 0


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_kernels)])
def test_padding_and_batch_independence(fused):
    """Real nodes' scores do not depend on how many padding nodes follow, nor on the other graphs."""
    x, adj, flags = random_graphs(5, 7, 4, seed=6)
    net_x, net_a = nets(n=12)
    set_use_kernels(net_x, fused), set_use_kernels(net_a, fused)
    pad = (0, 5)
    x12 = torch.nn.functional.pad(x, (0, 0) + pad)
    a12 = torch.nn.functional.pad(adj, pad + pad)
    f12 = torch.nn.functional.pad(flags, pad)
    with torch.no_grad():
        torch.testing.assert_close(net_a(x12, a12, f12)[:, :7, :7], net_a(x, adj, flags), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(net_x(x12, a12, f12)[:, :7], net_x(x, adj, flags), atol=1e-6, rtol=1e-5)
        one = net_a(x[2:3], adj[2:3], flags[2:3])
        torch.testing.assert_close(one, net_a(x, adj, flags)[2:3], atol=1e-6, rtol=1e-5)


def test_gdss_parameter_counts():
    """The QM9 sizes of GDSS's config give the parameter counts of GDSS's modules."""
    net_x, net_a = nets()
    # ScoreNetworkX: GCN(4,16) + GCN(16,16) + MLP(36 -> 72 -> 72 -> 4)
    assert sum(p.numel() for p in net_x.parameters()) == (4 * 16 + 16) + (16 * 16 + 16) + (
        36 * 72 + 72 + 72 * 72 + 72 + 72 * 4 + 4)
    assert sum(p.numel() for p in net_a.parameters()) == 23825


@needs_kernels
def test_fused_mlp_and_elu_match_torch():
    torch.manual_seed(0)
    m = MLP(3, 10, 12, 3)
    a, b = torch.randn(37, 4, requires_grad=True), torch.randn(37, 6, requires_grad=True)
    set_use_kernels(m, True)
    out = m([a, b])
    g = torch.randn_like(out)
    out.backward(g)
    ga, gb, gw = a.grad.clone(), b.grad.clone(), [p.grad.clone() for p in m.parameters()]
    a.grad = b.grad = None
    m.zero_grad()
    set_use_kernels(m, False)
    ref = m([a, b])
    ref.backward(g)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ga, a.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gb, b.grad, atol=1e-6, rtol=1e-5)
    for p, q in zip(gw, m.parameters()):
        torch.testing.assert_close(p, q.grad, atol=1e-5, rtol=1e-5)
    z = torch.linspace(-90, 5, 1001)
    torch.testing.assert_close(kernels.elu(z), torch.nn.functional.elu(z), atol=2e-7, rtol=1e-6)


@needs_kernels
@pytest.mark.parametrize("shape", [(40, 9, 4, False), (21, 38, 9, True)])
def test_fused_inference_forward_matches_gdss(shape):
    """Without gradients ScoreNetworkA runs as one fused call; it computes GDSS's function."""
    b, n, f, small = shape
    x, adj, flags = random_graphs(b, n, f, seed=8)
    _, net_a = nets(f=f, n=n, small=small)
    with torch.no_grad():
        out = net_a(x, adj, flags)
        ref = reference_score_a(net_a, x, adj, flags)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert torch.equal(out, out.transpose(1, 2))


@needs_kernels
def test_kernels_are_torch_operators_with_checked_shapes():
    """Each kernel is a registered operator whose schema and shape function pass torch's own checks, its
    autograd (the registered backward operator) gives torch's gradients (``test_fused_*``), and a wrong shape is
    a ValueError naming the operator, before any pointer is passed."""
    torch.manual_seed(0)
    x, W, b, E = torch.randn(4, 5, 3), torch.randn(3, 2, 14), torch.randn(2, 14), torch.rand(4, 10, 2)
    m = MLP(2, 5, 7, 3)
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(torch.ops.molgen.gmh.default, (x, W, b, E, 4, 6, 2, 0.5, 1), test_utils=checks)
    torch.library.opcheck(torch.ops.molgen.elu.default, (torch.randn(6, 3), 1), test_utils=checks)
    wt = torch.cat([lin.weight.detach().t().reshape(-1) for lin in m.linears])
    bs = torch.cat([lin.bias.detach() for lin in m.linears])
    torch.library.opcheck(torch.ops.molgen.mlp.default, ([x, x[..., :2]], wt, bs, [5, 7, 3], 1), test_utils=checks)
    with pytest.raises(ValueError, match=r"gmh: E must be \(B, N\(N-1\)/2, C\)"):
        kernels.gmh(x, W, b, E[:, :9], 4, 6, 2, 0.5)
    with pytest.raises(ValueError, match="gmh: X .* W .* bias"):
        kernels.gmh(x, W, b, E, 4, 5, 2, 0.5)
    with pytest.raises(ValueError, match="mlp: layer 0 needs weight"):
        kernels.mlp([x[..., :2]], m.linears)
    with pytest.raises(ValueError, match="leading shapes differ"):
        kernels.mlp([x, x[:2, :, :2]], m.linears)
    with pytest.raises(ValueError, match=r"do not make the layers \[6, 7, 3\]"):
        torch.ops.molgen.mlp.default([x, x[..., :2]], wt, bs, [6, 7, 3], 1)
