"""Do the fused C++ kernels of ``molgen.nets.kernels`` earn their keep? Each kernel entry point that the score
networks call, timed against our torch path of the same op and against ``torch.compile`` of that torch path, on
one CPU thread; then the whole training step and sampling, with kernels on, off, and off + ``torch.compile``.

    python benchmarks/molgen_kernels.py [--repeats 5] [--whole-repeats 3] [--sample-n 300] [--sample-steps 10]
        [--cases gdss_x.gcn,can.attend,...] [--no-whole] [--no-compile] [--json OUT]

Paths of every op (``cpp``: the C++ kernel; ``torch``: the networks' own torch ops, what a GPU or a machine
without a compiler runs; ``compile``: ``torch.compile`` (mode default, inductor) of exactly that torch path; for
``can.attend`` also ``torch_padded``, the dense per-graph form the network uses on a GPU):

- ``gdss_x.gcn``: ScoreNetworkX's GCN stack (``kernels.gmh`` without attention, both layers, tanh) from (X_t, A_t);
- ``gdss_x.final_mlp``: its final MLP (``kernels.mlp``) on [X, H_1, H_2];
- ``gdss_x.network``: the whole ScoreNetworkX forward;
- ``gdss_a.gmh``: one graph multi-head attention block (``kernels.gmh`` with attention) of ScoreNetworkA's middle
  layer from (X, E); the torch path includes rebuilding the dense adjacency channels from E (``dense_of``), which
  the network's torch path does per layer and the kernel does not need;
- ``gdss_a.edge_mlp``, ``gdss_a.final_mlp``: the middle layer's edge MLP and the final MLP (``kernels.mlp``);
- ``gdss_a.network``: the whole ScoreNetworkA forward: at inference ``kernels.score_a_forward`` (one call), in
  training the ``gmh`` and ``mlp`` kernels with their backward;
- ``can.attend``: one CAN layer's attention aggregate over both neighbourhoods (``kernels.can_attend`` twice),
  from that layer's projected states z (the scores are column slices of z, as in the layer);
- ``can.layer``: the whole CANLayer (projection, both aggregates, skip, ReLU).

Each op is timed forward only under ``torch.inference_mode`` (as sampling runs) at the sampler's batch
(``sampler.batch_size``, 2,500 graphs) and forward + backward (``torch.autograd.grad`` of the outputs against a
fixed random cotangent, gradients of the op's parameters and of its activation inputs, as training runs) at the
training batch (``data.batch_size``, 1,024 graphs). The inputs are the activations each op really receives:
QM9-shaped random graphs (node counts from QM9, random bonds; ``molgen_speed.random_graphs``) perturbed at random
times as the loss perturbs them, run through the networks of the committed runs (GDSS: ``gdss_s42``, CAN:
``can_feat_ring_s42`` of ``data/runs/molgen/ablation_equal_epochs``), captured by forward pre-hooks. CAN's
neighbourhood structures (packed marks for the kernel, pair lists for torch) are built beforehand and not timed.

Whole work (``--no-whole`` skips it), GDSS and CAN each: one training step (denoising score-matching loss of both
networks and its backward, no optimiser) at the training batch, and sampling of ``--sample-n`` graphs with the
run's sampler (Reverse-diffusion predictor + Langevin corrector) on ``--sample-steps`` steps spread over the time
grid; kernels on, kernels off, kernels off + ``torch.compile`` of both score networks (``dynamic`` left to
torch: CAN's cell counts vary from call to call, so its second warm-up call recompiles with dynamic shapes).

Method: one torch thread (``torch.set_num_threads(1)``; set ``OMP_NUM_THREADS=1`` too), kernels on one thread,
denormals flushed (as ``molgen.build.configure_threads``); the paths alternate within each repeat and the
fastest of the repeats is reported (the machine is shared: other jobs only ever slow a timing). An op faster than
20 ms is called several times per timing and the mean taken. Compiled paths are warmed up (compiled) first, the
warm-up's wall time recorded as ``compile_s`` (in a fresh inductor cache unless ``--warm-inductor-cache``, so a
compile from scratch); a compile that fails records its error instead of a time. The whole work's compiled
networks are warmed up on every state that the repeats time, and every path is also timed once on a state none
has seen (``unseen_state_s``: whether the compiled networks recompile for new shapes). Each pair of paths is
checked to compute the same numbers: ``max_abs_diff``, the largest absolute difference of outputs and
gradients (for sampling: of the final sampled states, after the paths' rounding differences have gone through
all steps), read against ``max_abs_value``; ``entries_off``, how many entries differ by more than 1e-3 of their
tensor's largest entry (a handful: a ReLU taken on the other side of its kink by a rounding difference).

Results: ``benchmarks/results/molgen_kernels.json`` (``--json``), with the torch version, threads, load average
and git commit.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts its thread pool
    if "--warm-inductor-cache" not in sys.argv:  # compile times from scratch: a fresh inductor cache
        _CACHE = tempfile.TemporaryDirectory(prefix="molgen_kernels_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE.name

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common.io import write_json  # noqa: E402
from common.provenance import git_commit  # noqa: E402
from molgen.build import build_sampler, build_sdes  # noqa: E402
from molgen.losses import dsm_loss, perturb  # noqa: E402
from molgen.nets import kernels  # noqa: E402
from molgen.nets.gdss import dense_of, normalize_adj, pairs_of, set_kernel_threads, set_use_kernels  # noqa: E402
from molgen.nets.score import GraphScore  # noqa: E402
from molgen.sampling import sample_flags  # noqa: E402
from molgen.train import load_run  # noqa: E402
from molgen_speed import random_graphs  # noqa: E402

Tensor = torch.Tensor
RUNS = ROOT / "data/runs/molgen/ablation_equal_epochs"
DEFAULT_OUT = ROOT / "benchmarks/results/molgen_kernels.json"
CASES = ("gdss_x.gcn", "gdss_x.final_mlp", "gdss_x.network", "gdss_a.gmh", "gdss_a.edge_mlp", "gdss_a.final_mlp",
         "gdss_a.network", "can.attend", "can.layer")
MIN_TIMING_S = 0.02


# ------------------------------------------------------------------------------------------ agreement
def flat_tensors(obj) -> list[Tensor]:
    """The tensors of a nested tuple / list (None entries skipped), in order."""
    if obj is None:
        return []
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in flat_tensors(o)]
    raise TypeError(f"not a tensor or a sequence of tensors: {type(obj).__name__}")


def max_abs_diff(a, b) -> float:
    """The largest absolute difference between two results (tensors or nested sequences of tensors, compared
    entry by entry); ``inf`` where they disagree in structure or shape or only one of two values is finite."""
    ta, tb = flat_tensors(a), flat_tensors(b)
    if len(ta) != len(tb):
        return math.inf
    worst = 0.0
    for x, y in zip(ta, tb):
        if x.shape != y.shape:
            return math.inf
        if x.numel() == 0:
            continue
        x, y = x.detach().double(), y.detach().double()
        if not torch.equal(torch.isfinite(x), torch.isfinite(y)):
            return math.inf
        fin = torch.isfinite(x)
        if fin.any():
            worst = max(worst, float((x[fin] - y[fin]).abs().max()))
    return worst


def entries_off(a, b, rel: float = 1e-3) -> str:
    """"k/n": how many of the n entries of two results differ by more than ``rel`` times the largest absolute
    entry of their tensor (a few entries far off with the rest close: a ReLU or max taken on the other side of
    its kink by a rounding difference; many: a different function)."""
    ta, tb = flat_tensors(a), flat_tensors(b)
    if len(ta) != len(tb) or any(x.shape != y.shape for x, y in zip(ta, tb)):
        return "structure differs"
    off = total = 0
    for x, y in zip(ta, tb):
        x, y = x.detach().double(), y.detach().double()
        tol = rel * float(x.abs().max()) if x.numel() else 0.0
        off += int(((x - y).abs() > tol).sum())
        total += x.numel()
    return f"{off}/{total}"


def max_abs(a) -> float:
    """The largest absolute entry of a result (the scale its differences are read against)."""
    return max((float(t.detach().abs().max()) for t in flat_tensors(a) if t.numel()), default=0.0)


def agreement(results: dict[str, object], fn=max_abs_diff) -> dict[str, float]:
    """``fn`` (``max_abs_diff``, ``entries_off``) of every pair of the paths' results, keyed "p-q" (paths in the
    given order)."""
    names = list(results)
    return {f"{p}-{q}": fn(results[p], results[q]) for i, p in enumerate(names) for q in names[i + 1:]}


# ------------------------------------------------------------------------------------------ op cases
@dataclass
class Case:
    """One op on fixed inputs. ``paths``: name -> (use_kernels flag set on ``module`` before the call, or None;
    the function of ``inputs``). ``train``: forward + backward (gradients w.r.t. ``wrt``) instead of inference.
    ``compile_of``: the path that ``torch.compile`` compiles (None: no compiled path)."""

    name: str
    entry: str
    batch: int
    train: bool
    module: torch.nn.Module
    inputs: tuple
    wrt: list[Tensor]
    paths: dict[str, tuple[bool | None, Callable]]
    compile_of: str | None = "torch"
    cotangent: list[Tensor] = field(default_factory=list)

    def call(self, path: str):
        """The path's outputs (and, training, the gradients), flattened."""
        flag, f = self.paths[path]
        if flag is not None:
            set_use_kernels(self.module, flag)
        if not self.train:
            with torch.inference_mode():
                return flat_tensors(f(*self.inputs))
        outs = flat_tensors(f(*self.inputs))
        if not self.cotangent:
            gen = torch.Generator().manual_seed(7)
            self.cotangent = [torch.randn(o.shape, generator=gen) for o in outs]
        grads = torch.autograd.grad(outs, self.wrt, self.cotangent, allow_unused=True)
        return [o.detach() for o in outs] + [g for g in grads if g is not None]


def _leaf(t: Tensor, train: bool) -> Tensor:
    return t.detach().clone().requires_grad_(train)


def _activation(t: Tensor, train: bool) -> Tensor:
    """An activation input: a leaf that takes a gradient in training (data inputs keep none)."""
    return t.detach().clone().requires_grad_(train and t.is_floating_point())


def _params(*modules) -> list[Tensor]:
    return [p for m in modules for p in m.parameters()]


class Capture:
    """Positional arguments of the calls of modules (forward pre-hooks), by name; the last call kept."""

    def __init__(self, **modules):
        self.args: dict[str, tuple] = {}
        self._handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name):
        def hook(module, args):
            self.args[name] = args
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def noisy_states(cfg, sde_x, sde_a, b: int, seed: int):
    """QM9-shaped random graphs (features padded to the config's width) perturbed at random times t, as the
    loss perturbs them: (X_t, A_t, flags, t)."""
    gen = torch.Generator().manual_seed(seed)
    x4, adj, flags = random_graphs(b, gen)
    x = torch.nn.functional.pad(x4, (0, cfg.data.input_feat_num("x") - x4.shape[-1]))
    t = torch.rand(b, generator=gen) * (sde_a.T - cfg.train.eps) + cfg.train.eps
    x_t, a_t = perturb(sde_x, sde_a, x, adj, flags, t, gen)[:2]
    return x_t, a_t, flags, t


def gdss_cases(net_x, net_a, states, train: bool, only) -> list[Case]:
    x_t, a_t, flags, _ = states
    b, n, _ = a_t.shape
    cap = Capture(x_final=net_x.final, a_layer=net_a.layers[1], a_edge_mlp=net_a.layers[1].mlp,
                  a_final=net_a.final)
    with torch.no_grad():
        set_use_kernels(net_x, False), set_use_kernels(net_a, False)
        net_x(x_t, a_t, flags), net_a(x_t, a_t, flags)
    cap.remove()
    cases = []
    want = (lambda name: only is None or name in only)

    if want("gdss_x.gcn"):
        flat = net_x.pairs.get(n, a_t.device)[0]

        def gcn_cpp(x, adj):
            e = pairs_of(adj.unsqueeze(1), flat)
            hs = []
            for layer in net_x.layers:
                x = torch.tanh(kernels.gmh(x, layer.weight, layer.bias, e, 0, net_x.nhid, 1, 1.0, 1)[0].squeeze(2))
                hs.append(x)
            return hs

        def gcn_torch(x, adj):
            adj_hat = normalize_adj(adj).unsqueeze(1)
            hs = []
            for layer in net_x.layers:
                x = torch.tanh(layer(x, adj_hat).squeeze(1))
                hs.append(x)
            return hs

        cases.append(Case("gdss_x.gcn", "kernels.gmh (no attention) x2", b, train, net_x, (x_t, a_t),
                          _params(net_x.layers), {"cpp": (None, gcn_cpp), "torch": (None, gcn_torch)}))
    for name, mod, key in (("gdss_x.final_mlp", net_x.final, "x_final"), ("gdss_a.edge_mlp", net_a.layers[1].mlp,
                                                                          "a_edge_mlp"),
                           ("gdss_a.final_mlp", net_a.final, "a_final")):
        if not want(name):
            continue
        data_first = key != "a_edge_mlp"  # X, resp. the powers of A_t: data, no gradient
        parts = [_activation(p, train and not (i == 0 and data_first)) for i, p in enumerate(cap.args[key][0])]

        def mlp_call(*ps, mod=mod):
            return mod(list(ps))

        cases.append(Case(name, "kernels.mlp", b, train, mod, tuple(parts), [p for p in parts if p.requires_grad]
                          + _params(mod), {"cpp": (True, mlp_call), "torch": (False, mlp_call)}))
    if want("gdss_a.gmh"):
        layer = net_a.layers[1]
        xa, e = (_activation(t, train) for t in cap.args["a_layer"][:2])
        flat, back = net_a.pairs.get(n, a_t.device)
        a, h = layer.attn_dim, layer.num_heads

        def gmh_cpp(x, e):
            return kernels.gmh(x, layer.qkv.weight, layer.qkv.bias, e, a, layer.out_dim, h, layer.scale, 1)

        def gmh_torch(x, e):  # AttentionLayer.forward's torch branch, from the pairs E
            qkv = layer.qkv(x, normalize_adj(dense_of(e, back, n)))  # B, C, N, 2a + o
            q = qkv[..., :a].unflatten(-1, (h, a // h)).transpose(2, 3)
            k = qkv[..., a:2 * a].unflatten(-1, (h, a // h)).transpose(2, 3)
            v = qkv[..., 2 * a:].transpose(1, 2)
            att = torch.tanh(torch.matmul(q, k.transpose(-1, -2)) * layer.scale).mean(2)
            return v, 0.5 * (pairs_of(att, flat) + pairs_of(att.transpose(-1, -2), flat))

        cases.append(Case("gdss_a.gmh", "kernels.gmh (attention)", b, train, layer, (xa, e),
                          [xa, e] + _params(layer.qkv), {"cpp": (None, gmh_cpp), "torch": (None, gmh_torch)}))
    for name, net in (("gdss_x.network", net_x), ("gdss_a.network", net_a)):
        if want(name):
            entry = ("kernels.gmh + kernels.mlp" if net is net_x or train
                     else "kernels.score_a_forward")
            if net is net_a and train:
                entry = "kernels.gmh (attention) + kernels.mlp"
            cases.append(Case(name, entry, b, train, net, (x_t, a_t, flags), _params(net),
                              {"cpp": (True, net), "torch": (False, net)}))
    return cases


def can_cases(net_a, states, train: bool, only) -> list[Case]:
    x_t, a_t, flags, t = states
    b = a_t.shape[0]
    layer = net_a.trunk.layers[1]
    cap = Capture(layer=layer)
    with torch.no_grad():
        set_use_kernels(net_a, False)
        net_a(x_t, a_t, flags, t)
    cap.remove()
    x, nb = cap.args["layer"]
    nb.down_packed, nb.up_packed, nb.down_pairs, nb.up_pairs  # noqa: B018 (built beforehand, not timed)
    cases = []
    n, o, nh, hd = x.shape[0], layer.out_channels, layer.heads, layer.head_dim
    slope = layer.att_activation.negative_slope
    if only is None or "can.attend" in only:
        with torch.no_grad():
            w = layer.lin.weight
            att = torch.stack([layer.att_src, layer.att_dst], 1)
            w_att = torch.einsum("kshc,khci->kshi", att, w[:2 * o].reshape(2, nh, hd, -1))
            z = _activation(x @ torch.cat([w, w_att.reshape(4 * nh, -1)]).t(), train)
        sizes = [o, o, w.shape[0] - 2 * o] + [nh] * 4

        def attend_cpp(z):
            z_down, z_up, _, d_src, d_dst, u_src, u_dst = z.split(sizes, dim=1)
            m = kernels.can_attend(z_down, d_src, d_dst, nb.down_packed, nb.graph_ptr, nb.order, nh, slope,
                                   threads=1)
            return kernels.can_attend(z_up, u_src, u_dst, nb.up_packed, nb.graph_ptr, nb.order, nh, slope, out=m,
                                      threads=1)

        def attend_torch(z):  # CANLayer's torch path on a CPU: pair lists
            z_down, z_up, _, d_src, d_dst, u_src, u_dst = z.split(sizes, dim=1)
            m = (layer._attend_pairs(z_down.reshape(n, nh, hd), d_src, d_dst, nb.down_pairs)
                 + layer._attend_pairs(z_up.reshape(n, nh, hd), u_src, u_dst, nb.up_pairs))
            return m.reshape(n, o)

        def attend_padded(z):  # its torch path on a GPU: dense K x K per graph
            z_down, z_up, _, d_src, d_dst, u_src, u_dst = z.split(sizes, dim=1)
            m = (layer._attend_padded(z_down.reshape(n, nh, hd), d_src, d_dst, nb.down, nb)
                 + layer._attend_padded(z_up.reshape(n, nh, hd), u_src, u_dst, nb.up, nb))
            return m.reshape(n, o)

        cases.append(Case("can.attend", "kernels.can_attend x2", b, train, layer, (z,), [z],
                          {"cpp": (None, attend_cpp), "torch": (None, attend_torch),
                           "torch_padded": (None, attend_padded)}))
    if only is None or "can.layer" in only:
        xl = _activation(x, train)
        cases.append(Case("can.layer", "kernels.can_attend x2 (in CANLayer)", b, train, layer, (xl,),
                          [xl] + _params(layer), {"cpp": (True, lambda x: layer(x, nb)),
                                                  "torch": (False, lambda x: layer(x, nb))}))
    return cases


# ------------------------------------------------------------------------------------------ timing
def _error(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:600]}"


def _timed(fn: Callable[[], object], number: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def run_case(case: Case, repeats: int, compile_: bool) -> dict:
    """Time the case's paths (alternating, fastest of ``repeats``), check that they agree, and compile."""
    out: dict = {"case": case.name, "entry_point": case.entry, "mode": "train" if case.train else "forward",
                 "batch": case.batch, "s": {}, "compile_s": None, "compile_error": None}
    results = {p: case.call(p) for p in case.paths}  # warm-up and the numbers to compare
    if compile_ and case.compile_of:
        torch._dynamo.reset()
        flag, fn = case.paths[case.compile_of]
        case.paths["compile"] = (flag, torch.compile(fn))
        try:
            t0 = time.perf_counter()
            results["compile"] = case.call("compile")
            out["compile_s"] = round(time.perf_counter() - t0, 2)
            case.call("compile")
        except Exception as e:  # noqa: BLE001 (recorded)
            out["compile_error"] = _error(e)
            del case.paths["compile"]
    number = {p: max(1, min(50, int(MIN_TIMING_S / max(_timed(lambda: case.call(p)), 1e-6)))) for p in case.paths}
    times: dict[str, list[float]] = {p: [] for p in case.paths}
    for _ in range(repeats):
        for p in case.paths:
            times[p].append(_timed(lambda: case.call(p), number[p]))
    out["s"] = {p: min(ts) for p, ts in times.items()}
    out["calls_per_timing"] = number
    if "compile" not in out["s"] and compile_ and case.compile_of:
        out["s"]["compile"] = None
    out["ratio_to_cpp"] = {p: (None if s is None else round(s / out["s"]["cpp"], 3))
                           for p, s in out["s"].items() if p != "cpp"}
    out["max_abs_diff"] = agreement(results)
    out["entries_off"] = agreement(results, entries_off)
    out["max_abs_value"] = max_abs(results["torch"])
    return out


# ------------------------------------------------------------------------------------------ whole work
def whole(name: str, run: Path, args, compile_: bool) -> list[dict]:
    """Training step and sampling of a committed run: kernels on, off, off + torch.compile."""
    cfg, net_x, net_a, ckpt = load_run(run)
    set_kernel_threads(net_x, 1), set_kernel_threads(net_a, 1)
    sde_x, sde_a = build_sdes(cfg)
    params = _params(net_x, net_a)
    pool = [random_graphs(cfg.data.batch_size, torch.Generator().manual_seed(100 + i)) for i in range(3)]
    width = cfg.data.input_feat_num("x")

    def batch(seed: int):
        x4, adj, flags = pool[seed % len(pool)]
        return torch.nn.functional.pad(x4, (0, width - x4.shape[-1])), adj, flags

    def train_step(nets, seed: int):
        net_x.train(), net_a.train()
        x, adj, flags = batch(seed)
        lx, la = dsm_loss(*nets, sde_x, sde_a, x, adj, flags, eps=cfg.train.eps, reduce_mean=cfg.train.reduce_mean,
                          generator=torch.Generator().manual_seed(seed))
        grads = torch.autograd.grad(lx + la, params, allow_unused=True)
        return [lx.detach(), la.detach()] + [g for g in grads if g is not None]

    sampler = build_sampler(cfg, sde_x, sde_a, args.sample_steps)
    flags_s = sample_flags(ckpt["n_atoms_counts"], args.sample_n, cfg.data.max_node_num,
                           generator=torch.Generator().manual_seed(0))

    def sample(nets, seed: int):
        net_x.eval(), net_a.eval()
        with torch.inference_mode():
            score = GraphScore(*nets, sde_x, sde_a)
            return list(sampler(score, flags_s, cfg.data.max_feat_num, generator=torch.Generator().manual_seed(seed)))

    rows = []
    for what, fn, repeats in (("train_step", train_step, args.whole_repeats), ("sample", sample, args.whole_repeats)):
        paths = {"cpp": (True, (net_x, net_a)), "torch": (False, (net_x, net_a))}
        out = {"case": f"{name}.{what}", "run": str(run.relative_to(ROOT)), "config": cfg.name,
               "batch": cfg.data.batch_size if what == "train_step" else args.sample_n, "s": {}, "compile_s": None,
               "compile_error": None}
        if what == "sample":
            out["steps"] = args.sample_steps
            out["score_evaluations_per_step"] = sampler.evaluations_per_step
        results = {}
        for p, (flag, nets) in paths.items():
            set_use_kernels(net_x, flag), set_use_kernels(net_a, flag)
            results[p] = fn(nets, 0)
        if compile_:
            torch._dynamo.reset()
            set_use_kernels(net_x, False), set_use_kernels(net_a, False)
            cnets = (torch.compile(net_x), torch.compile(net_a))
            try:
                # warm-up on every state the repeats time (CAN's cell counts differ between states: recompiles)
                warm = []
                for seed in range(repeats):
                    t0 = time.perf_counter()
                    res = fn(cnets, seed)
                    warm.append(round(time.perf_counter() - t0, 2))
                    results.setdefault("compile", res)
                out["compile_s"] = round(sum(warm), 2)
                out["compile_warmup_calls_s"] = warm
                paths["compile"] = (False, cnets)
            except Exception as e:  # noqa: BLE001 (recorded)
                out["compile_error"] = _error(e)
                results.pop("compile", None)
        times: dict[str, list[float]] = {p: [] for p in paths}
        for r in range(repeats):
            for p, (flag, nets) in paths.items():
                set_use_kernels(net_x, flag), set_use_kernels(net_a, flag)
                times[p].append(_timed(lambda: fn(nets, r)))
        # one state none of the paths has seen: does the compiled network recompile for it?
        out["unseen_state_s"] = {}
        for p, (flag, nets) in paths.items():
            set_use_kernels(net_x, flag), set_use_kernels(net_a, flag)
            out["unseen_state_s"][p] = round(_timed(lambda: fn(nets, 1000)), 4)
        out["s"] = {p: min(ts) for p, ts in times.items()}
        if compile_ and "compile" not in out["s"]:
            out["s"]["compile"] = None
        out["ratio_to_cpp"] = {p: (None if s is None else round(s / out["s"]["cpp"], 3))
                               for p, s in out["s"].items() if p != "cpp"}
        out["max_abs_diff"] = agreement(results)
        out["entries_off"] = agreement(results, entries_off)
        out["max_abs_value"] = max_abs(results["torch"])
        rows.append(out)
        print(_line(out), flush=True)
    set_use_kernels(net_x, True), set_use_kernels(net_a, True)
    return rows


def _line(r: dict) -> str:
    s = r["s"]
    fmt = (lambda v: "   failed" if v is None else f"{v:9.4f}")
    comp = s.get("compile", "") if "compile" in s else None
    extra = "".join(f" {p} {fmt(v)}" for p, v in s.items() if p not in ("cpp", "torch", "compile"))
    ratios = " ".join(f"{p}/cpp {v}" for p, v in r["ratio_to_cpp"].items())
    diff = " ".join(f"{k} {v:.1e} ({r['entries_off'][k]} off)" for k, v in r["max_abs_diff"].items())
    return (f"{r['case']:<18} {r.get('mode', ''):<7} B={r['batch']:<5} cpp {fmt(s['cpp'])} torch {fmt(s['torch'])} "
            f"compile {'        -' if comp is None else fmt(comp)}{extra}  [{ratios}]  diff {diff}"
            + (f"  compile error: {r['compile_error'][:120]}" if r.get("compile_error") else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="timings per path of each op (fastest kept)")
    ap.add_argument("--whole-repeats", type=int, default=3, help="timings per path of the step and sampling")
    ap.add_argument("--sample-n", type=int, default=300, help="graphs sampled at once")
    ap.add_argument("--sample-steps", type=int, default=10, help="sampling steps (spread over the time grid)")
    ap.add_argument("--train-batch", type=int, default=None, help="default: the config's data.batch_size")
    ap.add_argument("--sample-batch", type=int, default=None, help="default: the config's sampler.batch_size")
    ap.add_argument("--cases", type=str, default=None, help=f"comma-separated subset of {', '.join(CASES)}")
    ap.add_argument("--modes", type=str, default="forward,train")
    ap.add_argument("--no-whole", action="store_true", help="skip the training step and sampling")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--gdss-run", type=Path, default=RUNS / "gdss_s42")
    ap.add_argument("--can-run", type=Path, default=RUNS / "can_feat_ring_s42")
    ap.add_argument("--warm-inductor-cache", action="store_true",
                    help="use torch inductor's usual on-disk cache (default: a fresh one, so compile_s is a compile "
                         "from scratch)")
    ap.add_argument("--json", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    only = None if args.cases is None else set(args.cases.split(","))
    if only is not None and only - set(CASES):
        ap.error(f"unknown cases: {', '.join(sorted(only - set(CASES)))}")
    if not kernels.available():
        print(f"fused kernels unavailable: {kernels.unavailable_reason()}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch._dynamo.config.recompile_limit = 64
    compile_ = not args.no_compile
    started = time.perf_counter()
    out = {"what": "fused C++ kernels vs the torch path vs torch.compile of the torch path, per kernel and whole",
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "kernel_threads": 1,
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "loadavg_start": list(os.getloadavg()), "git_commit": git_commit(ROOT),
           "inductor_cache": "usual (warm)" if args.warm_inductor_cache else "fresh",
           "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "kernels": [], "whole": []}

    gdss = load_run(args.gdss_run)
    can = load_run(args.can_run)
    for cfg, nx, na, _ in (gdss, can):
        set_kernel_threads(nx, 1), set_kernel_threads(na, 1)
    print(f"molgen kernels: torch {torch.__version__}, 1 torch thread, kernels on 1 thread, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    for mode in args.modes.split(","):
        train = mode == "train"
        for (cfg, nx, na, _), builder in ((gdss, "gdss"), (can, "can")):
            b = (args.train_batch or cfg.data.batch_size) if train else (args.sample_batch or cfg.sampler.batch_size)
            sde_x, sde_a = build_sdes(cfg)
            states = noisy_states(cfg, sde_x, sde_a, b, seed=1)
            if train:
                nx.train(), na.train()
            else:
                nx.eval(), na.eval()
            cases = gdss_cases(nx, na, states, train, only) if builder == "gdss" else can_cases(na, states, train,
                                                                                                only)
            for case in cases:
                row = run_case(case, args.repeats, compile_)
                out["kernels"].append(row)
                print(_line(row), flush=True)
            set_use_kernels(nx, True), set_use_kernels(na, True)
    if not args.no_whole:
        out["whole"] += whole("gdss", args.gdss_run, args, compile_)
        out["whole"] += whole("can", args.can_run, args, compile_)
    out["loadavg_end"] = list(os.getloadavg())
    out["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
