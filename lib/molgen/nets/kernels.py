"""Build, load and call the fused CPU kernels of ``gmh_kernel.cpp`` (GCN propagation + graph multi-head attention).

The C++ file is compiled once with the system C++ compiler into a shared library cached under
``$MOLGEN_KERNEL_CACHE`` (default ``~/.cache/molgen/kernels``), keyed by the source, the compiler flags and
the machine, and called through ctypes; no Python or torch headers are needed. Each kernel is a torch operator
(``torch.ops.molgen``: ``gmh``, ``elu``, ``mlp``, ``score_a``, ``can_attend``, each differentiable one with its
backward operator, which a small ``autograd.Function`` wires), so that its arguments are typed tensors whose
shapes are checked before any pointer reaches the C++, and it has a shape function for tracing. ctypes releases
the GIL, so a batch is split over ``threads`` Python threads (every function's ``threads`` argument; None:
``torch.get_num_threads()`` at the call). If no compiler is available (or ``MOLGEN_KERNELS=0``), ``available()``
is False and the networks use their pure-PyTorch path.

``gmh(X, W, bias, E, attn_dim, out_dim, heads, scale)`` is differentiable in X, W, bias and E;
``can_attend`` (the cell-attention aggregate) in h and the two scores.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from common.io import atomic_path

SOURCE = Path(__file__).with_name("gmh_kernel.cpp")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c++17", "-fno-math-errno", "-fno-trapping-math",
         "-fno-strict-aliasing")


def _cache_dir() -> Path:
    return Path(os.environ.get("MOLGEN_KERNEL_CACHE", Path.home() / ".cache" / "molgen" / "kernels"))


def _cpu_id() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return hashlib.sha256(line.encode()).hexdigest()[:12]
    except OSError:
        pass
    return platform.processor() or "cpu"


def build(verbose: bool = False) -> Path:
    """Compile the kernels (if not cached) and return the path of the shared library."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        raise RuntimeError("no C++ compiler found (g++, c++ or clang++)")
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join([cxx, *FLAGS]).encode() + _cpu_id().encode()).hexdigest()[:16]
    out = _cache_dir() / f"gmh_{key}.so"
    if out.is_file():
        return out
    with atomic_path(out, suffix=".so") as tmp:
        cmd = [cxx, *FLAGS, str(SOURCE), "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed:\n{' '.join(cmd)}\n{res.stderr[-2000:]}")
        if verbose:
            print(" ".join(cmd))
    return out


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """The C signatures of the library's functions."""
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    signatures = {
        "gmh_forward": [p, p, p, p, p, p, i64, i64, i32, i32, i32, i32, i32, i32, f32],
        "gmh_backward": [p, p, p, p, p, p, p, p, p, p, i64, i64, i32, i32, i32, i32, i32, i32, f32],
        "mlp_forward": [p, p, i32, p, p, p, i32, p, i64, i64],
        "mlp_backward": [p, p, i32, p, p, p, i32, p, p, p, p, i64, i64],
        "score_a_forward": [p, p, p, p, p, p, i64, i64],
        "elu_forward": [p, p, i64, i64],
        "elu_backward": [p, p, p, i64, i64],
        "can_attend_forward": [p, i64, p, p, i64, p, i64, p, p, p, i64, i64, i32, i32, f32, i32],
        "can_attend_backward": [p, i64, p, p, i64, p, i64, p, p, p, p, p, p, p, i64, i64, i32, i32, f32],
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    return lib


class KernelLibrary:
    """The compiled library and the worker threads that call it: one per process (``LIBRARY``).

    The library is a process resource, loaded at first use as torch loads its own extensions; the pool only
    grows to the widest split asked for. Neither decides a number: how a batch is split is every call's
    ``threads`` argument, and the workers always flush denormals to zero (trained GDSS weights produce
    denormals, whose slow path made a training step three times slower).
    """

    def __init__(self) -> None:
        self._lib: ctypes.CDLL | None = None
        self._error: str | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def load(self) -> ctypes.CDLL | None:
        """The library (built if needed), or None when it cannot be had (then ``error`` says why)."""
        if self._lib is not None or self._error is not None:
            return self._lib
        with self._lock:
            if self._lib is not None or self._error is not None:
                return self._lib
            if os.environ.get("MOLGEN_KERNELS", "1") == "0":
                self._error = "disabled by MOLGEN_KERNELS=0"
                return None
            try:
                self._lib = _declare(ctypes.CDLL(str(build())))
            except Exception as e:  # no compiler, failed build, unloadable library: fall back to PyTorch
                self._error = f"{type(e).__name__}: {e}"
        return self._lib

    @property
    def error(self) -> str | None:
        self.load()
        return self._error

    def run(self, name: str, chunks: list[tuple[int, int]], make_args) -> None:
        """Call the library's function ``name`` once per chunk, ``make_args(k, start, stop)`` giving its
        arguments: in the calling thread for one chunk, on the worker threads for several."""
        fn = getattr(self.load(), name)
        if not chunks:
            return
        if len(chunks) == 1:
            fn(*make_args(0, *chunks[0]))
            return
        with self._lock:
            if self._pool is None or self._pool_size < len(chunks):
                self._pool = ThreadPoolExecutor(max_workers=len(chunks), thread_name_prefix="molgen-kernel",
                                                initializer=torch.set_flush_denormal, initargs=(True,))
                self._pool_size = len(chunks)
            pool = self._pool
        futures = [pool.submit(fn, *make_args(k, b0, b1)) for k, (b0, b1) in enumerate(chunks)]
        for f in futures:
            f.result()


LIBRARY = KernelLibrary()


def available() -> bool:
    return LIBRARY.load() is not None


def unavailable_reason() -> str | None:
    return LIBRARY.error


def _chunks(b: int, threads: int | None, min_chunk: int = 64) -> list[tuple[int, int]]:
    """Contiguous ranges of ``range(b)``, one per thread (``threads``; None: torch's thread count), each at
    least ``min_chunk`` long."""
    if b <= 0:
        return []
    n = max(1, min(threads or torch.get_num_threads(), b // min_chunk))
    step = -(-b // n)
    return [(s, min(b, s + step)) for s in range(0, b, step)]


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _prep(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().float()


def _float_cpu(*tensors: Tensor) -> None:
    """The operators' inputs are CPU floating-point tensors (their checks format a message only on failure)."""
    for t in tensors:
        if not (t.is_floating_point() and t.device.type == "cpu"):
            raise ValueError(f"the kernels take CPU floating-point tensors, got {t.dtype} on {t.device}")


_LIBRARY_DEF = torch.library.Library("molgen", "DEF")
"""The ``molgen`` operator namespace (torch's registration handle; the definitions below are made once, at
import)."""


def _operator(schema: str, fake=None):
    """Define ``molgen::<schema>`` with the decorated function as its CPU kernel (and ``fake`` as its shape
    function, for tracing); returns the operator. Through the dispatcher a call costs about 5 us (a
    ``torch.library.custom_op`` about 120 us, which the many small calls of a training step felt: +6%)."""
    name = schema.split("(", 1)[0]

    def register(fn):
        _LIBRARY_DEF.define(schema)
        _LIBRARY_DEF.impl(name, fn, "CPU")
        if fake is not None:
            torch.library.register_fake(f"molgen::{name}", fake, lib=_LIBRARY_DEF)
        return getattr(torch.ops.molgen, name).default
    return register


# --------------------------------------------------------------------------- molgen::gmh
def _gmh_fake(X, W, bias, E, attn_dim, out_dim, heads, scale, threads):
    b, n, _ = X.shape
    c = W.shape[1]
    return X.new_empty(b, n, c, out_dim), X.new_empty(b, E.shape[1], c if attn_dim > 0 else 0)


@_operator("gmh(Tensor X, Tensor W, Tensor bias, Tensor E, int attn_dim, int out_dim, int heads, float scale, "
           "int? threads) -> (Tensor, Tensor)", _gmh_fake)
def _gmh_op(X, W, bias, E, attn_dim, out_dim, heads, scale, threads):
    _float_cpu(X, W, bias, E)
    if not (X.dim() == 3 and W.dim() == 3 and W.shape[0] == X.shape[2]
            and W.shape[2] == 2 * attn_dim + out_dim and bias.shape == W.shape[1:]):
        raise ValueError(f"gmh: X (B, N, F), W (F, C, 2*attn_dim + out_dim) and bias (C, 2*attn_dim + out_dim), "
                         f"got {tuple(X.shape)}, {tuple(W.shape)}, {tuple(bias.shape)} with attn_dim {attn_dim}, "
                         f"out_dim {out_dim}")
    n = X.shape[1]
    if E.shape != (X.shape[0], n * (n - 1) // 2, W.shape[1]):
        raise ValueError(f"gmh: E must be (B, N(N-1)/2, C) = {(X.shape[0], n * (n - 1) // 2, W.shape[1])}, "
                         f"got {tuple(E.shape)}")
    if attn_dim % heads:
        raise ValueError(f"gmh: attn_dim {attn_dim} is not divisible by {heads} heads")
    X, W, bias, E = _prep(X), _prep(W), _prep(bias), _prep(E)
    b, n, f = X.shape
    c = W.shape[1]
    V = torch.empty(b, n, c, out_dim)
    S = torch.empty(b, E.shape[1], c if attn_dim > 0 else 0)
    LIBRARY.run("gmh_forward", _chunks(b, threads), lambda k, b0, b1: (
        _ptr(X), _ptr(W), _ptr(bias), _ptr(E), _ptr(V), _ptr(S), b0, b1, n, f, c, attn_dim, out_dim, heads, scale))
    return V, S


def _gmh_backward_fake(X, W, bias, E, dV, dS, attn_dim, out_dim, heads, scale, threads, need_dX, need_dE):
    return (torch.empty_like(X) if need_dX else X.new_empty(0), W.new_empty(W.shape), bias.new_empty(bias.shape),
            torch.empty_like(E) if need_dE else E.new_empty(0))


@_operator("gmh_backward(Tensor X, Tensor W, Tensor bias, Tensor E, Tensor dV, Tensor dS, int attn_dim, "
           "int out_dim, int heads, float scale, int? threads, bool need_dX, bool need_dE) "
           "-> (Tensor, Tensor, Tensor, Tensor)", _gmh_backward_fake)
def _gmh_backward_op(X, W, bias, E, dV, dS, attn_dim, out_dim, heads, scale, threads, need_dX, need_dE):
    """dX, dW, dbias, dE of ``molgen::gmh`` (dX and dE empty when not needed)."""
    X, W, bias, E, dV = _prep(X), _prep(W), _prep(bias), _prep(E), _prep(dV)
    b, n, f = X.shape
    c = W.shape[1]
    dS = _prep(dS) if attn_dim > 0 else torch.empty(0)
    dX = torch.empty_like(X) if need_dX else None
    dE = torch.empty_like(E) if need_dE else None
    chunks = _chunks(b, threads)
    dW = torch.empty(len(chunks), *W.shape)
    dbias = torch.empty(len(chunks), *bias.shape)
    LIBRARY.run("gmh_backward", chunks, lambda k, b0, b1: (
        _ptr(X), _ptr(W), _ptr(bias), _ptr(E), _ptr(dV), _ptr(dS), _ptr(dX), _ptr(dW[k]), _ptr(dbias[k]),
        _ptr(dE), b0, b1, n, f, c, attn_dim, out_dim, heads, scale))
    return (torch.empty(0) if dX is None else dX, dW.sum(0), dbias.sum(0), torch.empty(0) if dE is None else dE)


class _GMH(torch.autograd.Function):
    """Autograd of ``molgen::gmh`` through ``molgen::gmh_backward``."""

    @staticmethod
    def forward(ctx, X, W, bias, E, attn_dim: int, out_dim: int, heads: int, scale: float, threads: int | None):
        ctx.save_for_backward(X, W, bias, E)
        ctx.dims = (attn_dim, out_dim, heads, scale, threads)
        return _gmh_op(X, W, bias, E, attn_dim, out_dim, heads, scale, threads)

    @staticmethod
    def backward(ctx, dV, dS):
        X, W, bias, E = ctx.saved_tensors
        need_dX, need_dE = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        dX, dW, dbias, dE = _gmh_backward_op(X, W, bias, E, dV, dS, *ctx.dims, need_dX, need_dE)
        return dX if need_dX else None, dW, dbias, dE if need_dE else None, None, None, None, None, None


def gmh(X: Tensor, W: Tensor, bias: Tensor, E: Tensor, attn_dim: int, out_dim: int, heads: int, scale: float,
        threads: int | None = None) -> tuple[Tensor, Tensor]:
    """Fused multi-channel GCN (+ graph multi-head attention if ``attn_dim > 0``); see ``gmh_kernel.cpp``.

    X (B, N, F), W (F, C, 2*attn_dim + out_dim), bias (C, 2*attn_dim + out_dim), E (B, N(N-1)/2, C) ->
    V (B, N, C, out_dim) and S (B, N(N-1)/2, C) (last axis empty without attention). The operator
    ``molgen::gmh``, differentiable in X, W, bias and E (gradients only for inputs that require them); the batch
    split over ``threads``.
    """
    return _GMH.apply(X, W, bias, E, attn_dim, out_dim, heads, float(scale), threads)


# --------------------------------------------------------------------------- molgen::elu
@_operator("elu(Tensor x, int? threads) -> Tensor", lambda x, threads: torch.empty_like(x))
def _elu_op(x, threads):
    _float_cpu(x)
    x = _prep(x)
    y = torch.empty_like(x)
    LIBRARY.run("elu_forward", _chunks(x.numel(), threads, 1 << 16), lambda k, a, b: (_ptr(x), _ptr(y), a, b))
    return y


@_operator("elu_backward(Tensor y, Tensor dy, int? threads) -> Tensor", lambda y, dy, threads: torch.empty_like(y))
def _elu_backward_op(y, dy, threads):
    if y.shape != dy.shape:
        raise ValueError(f"elu_backward: y and dy differ in shape, {tuple(y.shape)} and {tuple(dy.shape)}")
    y, dy = _prep(y), _prep(dy)
    dx = torch.empty_like(y)
    LIBRARY.run("elu_backward", _chunks(y.numel(), threads, 1 << 16),
                lambda k, a, b: (_ptr(y), _ptr(dy), _ptr(dx), a, b))
    return dx


class _ELU(torch.autograd.Function):
    """Autograd of ``molgen::elu`` through ``molgen::elu_backward``."""

    @staticmethod
    def forward(ctx, x, threads: int | None):
        y = _elu_op(x, threads)
        ctx.save_for_backward(y)
        ctx.threads = threads
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return _elu_backward_op(y, dy, ctx.threads), None


def elu(x: Tensor, threads: int | None = None) -> Tensor:
    """ELU (alpha = 1) with a vectorised exp (``molgen::elu``); the same function as
    ``torch.nn.functional.elu`` to ~1e-7."""
    return _ELU.apply(x, threads)


# --------------------------------------------------------------------------- molgen::mlp
def _ptr_array(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[None if t is None else t.data_ptr() for t in tensors])


def _mlp_layout(ins: list[Tensor], params: list[Tensor]) -> tuple[int, list[int]]:
    """Rows of the inputs and the layer widths, checked: every input (..., F_i) with the same leading shape,
    the weights (out, in) chained from the inputs' total width, a bias per weight."""
    if not (len(ins) > 0 and len(params) >= 2 and len(params) % 2 == 0):
        raise ValueError(f"mlp: at least one input and (weight, bias) pairs, got {len(ins)} inputs and "
                         f"{len(params)} parameters")
    _float_cpu(*ins, *params)
    lead = ins[0].shape[:-1]
    if not all(t.shape[:-1] == lead for t in ins):
        raise ValueError(f"mlp: the inputs' leading shapes differ: {[tuple(t.shape) for t in ins]}")
    dims = [sum(t.shape[-1] for t in ins)] + [w.shape[0] for w in params[0::2]]
    for i, (w, b) in enumerate(zip(params[0::2], params[1::2])):
        if w.shape != (dims[i + 1], dims[i]) or b.shape != (dims[i + 1],):
            raise ValueError(f"mlp: layer {i} needs weight ({dims[i + 1]}, {dims[i]}) and bias ({dims[i + 1]},), "
                             f"got {tuple(w.shape)} and {tuple(b.shape)}")
    return ins[0].numel() // ins[0].shape[-1], dims


def _mlp_dims(ins: list[Tensor], wt: Tensor, bs: Tensor, dims: list[int]) -> int:
    """Rows of the inputs, checked against the packed weights' layer widths ``dims``."""
    if sum(t.shape[-1] for t in ins) != dims[0] or wt.numel() != sum(a * b for a, b in zip(dims, dims[1:])) \
            or bs.numel() != sum(dims[1:]):
        raise ValueError(f"mlp: inputs of {sum(t.shape[-1] for t in ins)} features and {wt.numel()} weights, "
                         f"{bs.numel()} biases do not make the layers {dims}")
    return ins[0].numel() // ins[0].shape[-1]


@_operator("mlp(Tensor[] ins, Tensor wt, Tensor bs, int[] dims, int? threads) -> Tensor",
           lambda ins, wt, bs, dims, threads: ins[0].new_empty(*ins[0].shape[:-1], dims[-1]))
def _mlp_op(ins, wt, bs, dims, threads):
    """GDSS's MLP (Linear, ELU, ..., Linear) on the concatenation of ``ins`` (..., F_i), fused per row block; the
    layers' weights transposed and concatenated in ``wt``, their biases in ``bs``, widths ``dims``."""
    rows = _mlp_dims(ins, wt, bs, dims)
    lead = ins[0].shape[:-1]
    ins = [_prep(t).reshape(rows, t.shape[-1]) for t in ins]
    dims_c = (ctypes.c_int * len(dims))(*dims)
    widths = (ctypes.c_int * len(ins))(*[t.shape[1] for t in ins])
    y = torch.empty(rows, dims[-1])
    in_ptrs = _ptr_array(ins)
    LIBRARY.run("mlp_forward", _chunks(rows, threads, 256), lambda k, a, b: (
        in_ptrs, widths, len(ins), _ptr(wt), _ptr(bs), dims_c, len(dims) - 1, _ptr(y), a, b))
    return y.reshape(*lead, dims[-1])


def _mlp_backward_fake(ins, wt, bs, dims, dy, need, threads):
    return ([torch.empty_like(t) if wanted else t.new_empty(0) for t, wanted in zip(ins, need)],
            wt.new_empty(wt.shape), bs.new_empty(bs.shape))


@_operator("mlp_backward(Tensor[] ins, Tensor wt, Tensor bs, int[] dims, Tensor dy, bool[] need, int? threads) "
           "-> (Tensor[], Tensor, Tensor)", _mlp_backward_fake)
def _mlp_backward_op(ins, wt, bs, dims, dy, need, threads):
    """The inputs' gradients (empty where ``need`` is False) and those of ``wt`` and ``bs`` of ``molgen::mlp``."""
    rows = _mlp_dims(ins, wt, bs, dims)
    lead = ins[0].shape[:-1]
    ins = [_prep(t).reshape(rows, t.shape[-1]) for t in ins]
    dy = _prep(dy).reshape(rows, dims[-1])
    dins = [torch.empty_like(t) if wanted else None for t, wanted in zip(ins, need)]
    chunks = _chunks(rows, threads, 256)
    dwt = torch.empty(len(chunks), wt.numel())
    dbs = torch.empty(len(chunks), bs.numel())
    dims_c = (ctypes.c_int * len(dims))(*dims)
    widths = (ctypes.c_int * len(ins))(*[t.shape[1] for t in ins])
    in_ptrs, din_ptrs = _ptr_array(ins), _ptr_array(dins)
    LIBRARY.run("mlp_backward", chunks, lambda k, a, b: (
        in_ptrs, widths, len(ins), _ptr(wt), _ptr(bs), dims_c, len(dims) - 1, _ptr(dy), din_ptrs, _ptr(dwt[k]),
        _ptr(dbs[k]), a, b))
    return [torch.empty(0) if d is None else d.reshape(*lead, d.shape[-1]) for d in dins], dwt.sum(0), dbs.sum(0)


class _MLP(torch.autograd.Function):
    """Autograd of ``molgen::mlp`` through ``molgen::mlp_backward``: the weights are packed once, here."""

    @staticmethod
    def forward(ctx, n_in: int, threads: int | None, *tensors):
        ins, params = list(tensors[:n_in]), list(tensors[n_in:])
        dims = _mlp_layout(ins, params)[1]
        wt = torch.cat([_prep(w).t().reshape(-1) for w in params[0::2]])
        bs = torch.cat([_prep(b) for b in params[1::2]])
        ctx.save_for_backward(*ins, wt, bs)
        ctx.meta = (n_in, dims, threads)
        return _mlp_op(ins, wt, bs, dims, threads)

    @staticmethod
    def backward(ctx, dy):
        n_in, dims, threads = ctx.meta
        saved = ctx.saved_tensors
        need = [bool(ctx.needs_input_grad[2 + i]) for i in range(n_in)]
        dins, dwt, dbs = _mlp_backward_op(list(saved[:n_in]), saved[n_in], saved[n_in + 1], dims, dy, need, threads)
        grads = []
        wo = bo = 0
        for fin, fout in zip(dims, dims[1:]):
            grads.append(dwt[wo:wo + fin * fout].reshape(fin, fout).t())
            grads.append(dbs[bo:bo + fout])
            wo += fin * fout
            bo += fout
        return (None, None, *[d if wanted else None for d, wanted in zip(dins, need)], *grads)


def mlp(inputs: list[Tensor], linears, threads: int | None = None) -> Tensor:
    """GDSS's MLP (ELU between ``linears``) applied to the concatenation of ``inputs`` along the last axis
    (``molgen::mlp``, differentiable in the inputs and the linears' parameters)."""
    params = []
    for lin in linears:
        params += [lin.weight, lin.bias]
    return _MLP.apply(len(inputs), threads, *inputs, *params)


# --------------------------------------------------------------------------- molgen::score_a
def _mlp_spec(mlp) -> tuple[list[int], list[Tensor]]:
    dims = [mlp.linears[0].in_features] + [lin.out_features for lin in mlp.linears]
    params = []
    for lin in mlp.linears:
        params += [lin.weight.detach().t().reshape(-1), lin.bias.detach().reshape(-1)]
    return [len(mlp.linears), *dims], params


@_operator("score_a(Tensor spec, Tensor params, Tensor x, Tensor adj, Tensor flags, int? threads) -> Tensor",
           lambda spec, params, x, adj, flags, threads: x.new_empty(adj.shape))
def _score_a_op(spec, params, x, adj, flags, threads):
    """ScoreNetworkA's whole forward from its packed layout ``spec`` (int32) and ``params`` (float32)."""
    _float_cpu(x, adj, flags)
    if not (spec.dtype == torch.int32 and params.dtype == torch.float32 and params.is_contiguous()):
        raise ValueError(f"score_a: spec int32 and params contiguous float32, got {spec.dtype} and {params.dtype}")
    b, n, _ = x.shape
    if adj.shape != (b, n, n) or flags.shape != (b, n) or int(spec[0]) != n or int(spec[1]) != x.shape[2]:
        raise ValueError(f"score_a: x (B, N, F) = (B, {int(spec[0])}, {int(spec[1])}), adj (B, N, N) and flags "
                         f"(B, N), got {tuple(x.shape)}, {tuple(adj.shape)}, {tuple(flags.shape)}")
    x, adj, flags = _prep(x), _prep(adj), _prep(flags)
    out = torch.empty(b, n, n)
    LIBRARY.run("score_a_forward", _chunks(b, threads), lambda k, b0, b1: (
        _ptr(spec), _ptr(params), _ptr(x), _ptr(adj), _ptr(flags), _ptr(out), b0, b1))
    return out


def score_a_forward(net, x: Tensor, adj: Tensor, flags: Tensor, threads: int | None = None) -> Tensor:
    """ScoreNetworkA's whole forward in one fused call (``molgen::score_a``; inference only: no autograd)."""
    b, n, f0 = x.shape
    spec = [n, f0, net.c_init, len(net.layers), net.layers[0].num_heads]
    params: list[Tensor] = []
    for layer in net.layers:
        spec += [layer.c_in, layer.attn_dim, layer.out_dim, layer.qkv.in_dim, layer.c_out]
        params += [layer.qkv.weight.detach().reshape(-1), layer.qkv.bias.detach().reshape(-1)]
        for mlp in (layer.mlp, layer.multi_channel):
            sp, pr = _mlp_spec(mlp)
            spec += sp
            params += pr
    sp, pr = _mlp_spec(net.final)
    spec += sp
    params += pr
    spec_t = torch.tensor(spec, dtype=torch.int32)
    params_t = torch.cat(params).float().contiguous()
    return _score_a_op(spec_t, params_t, x.detach(), adj.detach(), flags.detach(), threads)


# --------------------------------------------------------------------------- molgen::can_attend
def _rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A float32 2-D view whose rows may be strided (a column slice of a matmul output): (tensor, row stride)."""
    t = t.detach()
    if t.dtype != torch.float32 or t.stride(-1) != 1:
        t = t.float().contiguous()
    return t, t.stride(0)


def _attend_inputs(h, s_src, s_dst, heads):
    """Float32 row views of the inputs with their row strides (the two scores sharing one)."""
    if heads > 32 or h.shape[1] > 256 or h.shape[1] % heads:
        raise ValueError(f"can_attend supports at most 32 heads and 256 channels, got {heads} and {h.shape[1]}")
    h, h_stride = _rows(h)
    s_src, s_stride = _rows(s_src)
    s_dst, d_stride = _rows(s_dst)
    if d_stride != s_stride:
        s_src, s_dst = s_src.contiguous(), s_dst.contiguous()
        s_stride = heads
    return h, h_stride, s_src, s_dst, s_stride


def _graphs(packed: torch.Tensor, graph_ptr: torch.Tensor, order: torch.Tensor, cells: int, threads: int | None):
    """Packed mark rows with unit column stride (any row stride) and their row stride; int64 ``graph_ptr`` and
    ``order``; the graphs for each thread (whole 16-graph blocks of the kernel). Checks the shapes against the
    ``cells`` rows of h."""
    b = order.shape[0]
    if packed.dim() != 2 or packed.dtype != torch.uint8 or packed.shape[0] != cells or graph_ptr.shape != (b + 1,):
        raise ValueError(f"packed marks must be ({cells}, W) uint8 and graph_ptr (B + 1,), got "
                         f"{tuple(packed.shape)} {packed.dtype} and {tuple(graph_ptr.shape)} for {b} graphs")
    graph_ptr = graph_ptr.detach().long().contiguous()
    widest = int((graph_ptr[1:] - graph_ptr[:-1]).max()) if b else 0
    if int(graph_ptr[-1]) != cells or widest > 8 * packed.shape[1]:
        raise ValueError(f"graph_ptr must end at the {cells} cells and the packed rows hold {8 * packed.shape[1]} "
                         f"slots, got {int(graph_ptr[-1])} cells and a graph of {widest}")
    packed = packed.detach()
    if packed.shape[1] > 1 and packed.stride(1) != 1:
        packed = packed.contiguous()
    chunks = [(16 * a, min(b, 16 * c)) for a, c in _chunks(-(-b // 16), threads, 8)]
    return packed, packed.stride(0), graph_ptr, order.detach().long().contiguous(), chunks


def _attend_forward(h, s_src, s_dst, marks, graph_ptr, order, heads, slope, out, threads):
    _float_cpu(h, s_src, s_dst)
    n = h.shape[0]
    h, h_stride, s_src, s_dst, s_stride = _attend_inputs(h, s_src, s_dst, heads)
    marks, m_stride, graph_ptr, order, chunks = _graphs(marks, graph_ptr, order, n, threads)
    accumulate = out is not None
    if out is None:
        out = torch.empty(n, h.shape[1])
    elif not (out.is_contiguous() and out.dtype == torch.float32 and out.shape == (n, h.shape[1])):
        raise ValueError(f"out must be a contiguous float32 tensor of shape {(n, h.shape[1])}")
    LIBRARY.run("can_attend_forward", chunks, lambda k, a, b: (
        _ptr(h), h_stride, _ptr(s_src), _ptr(s_dst), s_stride, _ptr(marks), m_stride, _ptr(graph_ptr),
        _ptr(order), _ptr(out), a, b, heads, h.shape[1] // heads, float(slope), int(accumulate)))
    return out


ATTEND_ARGS = "Tensor h, Tensor s_src, Tensor s_dst, Tensor marks, Tensor graph_ptr, Tensor order, int heads, " \
              "float slope, int? threads"


@_operator(f"can_attend({ATTEND_ARGS}) -> Tensor",
           lambda h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads: h.new_empty(h.shape))
def _attend_op(h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads):
    return _attend_forward(h, s_src, s_dst, marks, graph_ptr, order, heads, slope, None, threads)


@_operator(f"can_attend_add_(Tensor(a!) out, {ATTEND_ARGS}) -> ()",
           lambda out, h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads: None)
def _attend_add_op(out, h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads):
    """``molgen::can_attend`` added to ``out`` in place (inference: no autograd)."""
    _attend_forward(h, s_src, s_dst, marks, graph_ptr, order, heads, slope, out, threads)


def _attend_backward_fake(h, s_src, s_dst, marks, graph_ptr, order, out, dout, heads, slope, threads):
    n, hc = h.shape
    return h.new_empty(n, hc), h.new_empty(n, heads), h.new_empty(n, heads)


@_operator("can_attend_backward(Tensor h, Tensor s_src, Tensor s_dst, Tensor marks, Tensor graph_ptr, "
           "Tensor order, Tensor out, Tensor dout, int heads, float slope, int? threads) -> (Tensor, Tensor, Tensor)",
           _attend_backward_fake)
def _attend_backward_op(h, s_src, s_dst, marks, graph_ptr, order, out, dout, heads, slope, threads):
    """dh, ds_src, ds_dst of ``molgen::can_attend`` from its output ``out`` and the output's gradient."""
    n, hc = h.shape
    h, h_stride, s_src, s_dst, s_stride = _attend_inputs(h, s_src, s_dst, heads)
    marks, m_stride, graph_ptr, order, chunks = _graphs(marks, graph_ptr, order, n, threads)
    if dout.shape != (n, hc) or out.shape != (n, hc):
        raise ValueError(f"can_attend_backward: out and dout must be ({n}, {hc}), got {tuple(out.shape)} and "
                         f"{tuple(dout.shape)}")
    out, dout = _prep(out), _prep(dout)
    dh, ds_src, ds_dst = torch.empty(n, hc), torch.empty(n, heads), torch.empty(n, heads)  # every row written
    LIBRARY.run("can_attend_backward", chunks, lambda k, a, b: (
        _ptr(h), h_stride, _ptr(s_src), _ptr(s_dst), s_stride, _ptr(marks), m_stride, _ptr(graph_ptr),
        _ptr(order), _ptr(out), _ptr(dout), _ptr(dh), _ptr(ds_src), _ptr(ds_dst), a, b, heads, hc // heads,
        float(slope)))
    return dh, ds_src, ds_dst


class _CANAttend(torch.autograd.Function):
    """Autograd of ``molgen::can_attend`` through ``molgen::can_attend_backward``."""

    @staticmethod
    def forward(ctx, h, s_src, s_dst, marks, graph_ptr, order, heads: int, slope: float, threads: int | None):
        out = _attend_op(h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads)
        ctx.save_for_backward(h, s_src, s_dst, marks, graph_ptr, order, out)
        ctx.dims = (heads, slope, threads)
        return out

    @staticmethod
    def backward(ctx, dout):
        h, s_src, s_dst, marks, graph_ptr, order, out = ctx.saved_tensors
        dh, ds_src, ds_dst = _attend_backward_op(h, s_src, s_dst, marks, graph_ptr, order, out, dout, *ctx.dims)
        return dh, ds_src, ds_dst, None, None, None, None, None, None


def can_attend(h: Tensor, s_src: Tensor, s_dst: Tensor, marks: Tensor, graph_ptr: Tensor, order: Tensor,
               heads: int, slope: float, out: Tensor | None = None, threads: int | None = None) -> Tensor:
    """Cell-attention aggregate (E, heads * C) of ``molgen.nets.can.CANLayer``: for each target i,
    ``sum_j softmax_j(leaky_relu(s_src[j] + s_dst[i], slope)) h[j]`` per head over its neighbours j, the slots
    marked in its row of ``marks`` within its graph (bit-packed rows, ``molgen.neighbourhoods.pack_marks``). The
    E cells are numbered graph by graph, graph g's from ``graph_ptr[g]`` to ``graph_ptr[g + 1]`` (B + 1,); the
    kernel takes the graphs 16 at a time in the order ``order`` (B,) (ordered by size, the 16 need about the same
    K) and vectorises across them, with one dense K x K score matrix per graph (see ``molgen.neighbourhoods``).
    h (E, heads * C), s_src and s_dst (E, heads) may be column slices of one tensor. The operator
    ``molgen::can_attend``, differentiable in h, s_src and s_dst when a gradient is wanted; otherwise, with
    ``out``, the aggregate is added to it in place (``molgen::can_attend_add_``) and returned. The graphs are
    split over ``threads``."""
    slope = float(slope)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (h, s_src, s_dst)):
        res = _CANAttend.apply(h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads)
        return res if out is None else out + res
    if out is None:
        return _attend_op(h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads)
    _attend_add_op(out, h, s_src, s_dst, marks, graph_ptr, order, heads, slope, threads)
    return out
