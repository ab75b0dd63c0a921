// Fused CPU kernels of GDSS's graph multi-head attention (GMH) block and dense GCN convolutions.
//
// For every graph b and adjacency channel c (GDSS: models/attention.py Attention + models/layers.py
// DenseGCNConv, one attention block per channel):
//   A~ = adjacency of channel c rebuilt from its strict-upper-triangle pairs, diagonal set to 1 (self-loops)
//   A^ = D^-1/2 A~ D^-1/2 with degrees clamped below at 1
//   H  = A^ X W_c + bias_c  (= [Q | K | V]: the three GCNs of the channel share A^ and X)
//   S_ij = mean_h tanh(scale * <Q_i^h, K_j^h>),  out_p = (S_ij + S_ji) / 2 for the pair p = (i < j)
// and the exact backward (recomputing A^, H and tanh from the inputs; nothing is stored between passes).
// With attn_dim = 0 the block is a plain multi-channel GCN: V = H.
//
// Graphs are tiny (QM9: 9 nodes), so the kernels vectorise across graphs: a block of L = 16 graphs is
// transposed into lane-major scratch buffers (element [..][lane]) and every per-graph scalar operation becomes
// one 16-wide vector operation (GCC/Clang vector extensions); a block's buffers stay in L1/L2.
//
// Layouts (float32, contiguous): X[B][N][F]; W[F][C][D] with D = 2*attn_dim + out_dim; bias[C][D];
// E[B][NP][C] pair values of the adjacency channels (pairs (0,1), (0,2), ..., (N-2,N-1));
// V[B][N][C][out_dim]; S[B][NP][C]. The functions work on graphs [b0, b1) so that callers can split a batch
// over threads; the backward writes this call's own partial dW and dbias.
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int L = 16;  // graphs per block (vector lanes)
typedef float vf __attribute__((vector_size(4 * L)));
typedef int32_t vi __attribute__((vector_size(4 * L)));

inline vf splat(float x) { return vf{} + x; }
// lane-level (scalar) access to vector buffers; the library is compiled with -fno-strict-aliasing
inline float* lanes(vf* v) { return reinterpret_cast<float*>(v); }
inline const float* lanes(const vf* v) { return reinterpret_cast<const float*>(v); }

// exp for x in [0, 18] (Cephes expf polynomial, ~1 ulp)
inline vf exp_fast(vf x) {
  const vf fx = __builtin_convertvector(__builtin_convertvector(x * 1.44269504088896341f + 0.5f, vi), vf);
  vf r = x - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  const vf z = r * r;
  vf y = splat(1.9875691500E-4f);
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * z + r + 1.0f;
  const vi bits = (__builtin_convertvector(fx, vi) + 127) << 23;
  return y * (vf)bits;
}

// exp for x in [-87, 0] (ELU's negative branch), floor done properly for negative arguments
inline vf exp_neg(vf x) {
  x = x > -87.0f ? x : -87.0f;
  const vf v = x * 1.44269504088896341f + 0.5f;
  vf fx = __builtin_convertvector(__builtin_convertvector(v, vi), vf);
  fx = fx > v ? fx - 1.0f : fx;
  vf r = x - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  const vf z = r * r;
  vf y = splat(1.9875691500E-4f);
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * z + r + 1.0f;
  const vi bits = (__builtin_convertvector(fx, vi) + 127) << 23;
  return y * (vf)bits;
}

inline vf tanh_fast(vf x) {
  const vi sign = (vi)x & (int32_t)0x80000000;
  vf ax = (vf)((vi)x & (int32_t)0x7fffffff);
  ax = ax < 9.0f ? ax : 9.0f;
  // near 0 a series avoids the cancellation of (e - 1)
  const vf x2 = ax * ax;
  const vf series = ax * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f))));
  const vf e = exp_fast(2.0f * ax);
  const vf t = ax < 0.0625f ? series : (e - 1.0f) / (e + 1.0f);
  return (vf)((vi)t | sign);
}

struct Dims {
  int N, F, C, A, O, H, D, NP, dh;
  float scale;
};

Dims make_dims(int N, int F, int C, int A, int O, int H, float scale) {
  Dims d;
  d.N = N;
  d.F = F;
  d.C = C;
  d.A = A;
  d.O = O;
  d.H = A > 0 ? H : 0;
  d.D = 2 * A + O;
  d.NP = N * (N - 1) / 2;
  d.dh = A > 0 ? A / H : 0;
  d.scale = scale;
  return d;
}

// out[k] (+)= sum_f y[f] * w[f * stride + k] for k < D: a [1 x F] x [F x D] product per lane, with the
// weights broadcast across lanes; blocked by T outputs so that the accumulators stay in registers.
template <int T>
inline void rtm_tile(const vf* __restrict y, int F, const float* __restrict w, int stride, vf* __restrict out) {
  vf acc[T];
  for (int kk = 0; kk < T; ++kk) acc[kk] = out[kk];
  for (int f = 0; f < F; ++f) {
    const vf yf = y[f];
    const float* wr = w + f * stride;
    for (int kk = 0; kk < T; ++kk) acc[kk] += yf * wr[kk];
  }
  for (int kk = 0; kk < T; ++kk) out[kk] = acc[kk];
}

inline void row_times_matrix(const vf* __restrict y, int F, const float* __restrict w, int stride, int D,
                             vf* __restrict out) {
  int k0 = 0;
  for (; k0 + 8 <= D; k0 += 8) rtm_tile<8>(y, F, w + k0, stride, out + k0);
  if (k0 + 4 <= D) {
    rtm_tile<4>(y, F, w + k0, stride, out + k0);
    k0 += 4;
  }
  if (k0 + 2 <= D) {
    rtm_tile<2>(y, F, w + k0, stride, out + k0);
    k0 += 2;
  }
  if (k0 < D) rtm_tile<1>(y, F, w + k0, stride, out + k0);
}

// out[f] = sum_k g[k] * w[f * stride + k] for f < F (the transposed product)
template <int T>
inline void rtmt_tile(const vf* __restrict g, int D, const float* __restrict w, int stride, vf* __restrict out) {
  vf acc[T] = {};
  for (int k = 0; k < D; ++k) {
    const vf gk = g[k];
    for (int ff = 0; ff < T; ++ff) acc[ff] += gk * w[ff * stride + k];
  }
  for (int ff = 0; ff < T; ++ff) out[ff] = acc[ff];
}

inline void row_times_matrix_t(const vf* __restrict g, int D, const float* __restrict w, int stride, int F,
                               vf* __restrict out) {
  int f0 = 0;
  for (; f0 + 8 <= F; f0 += 8) rtmt_tile<8>(g, D, w + f0 * stride, stride, out + f0);
  if (f0 + 4 <= F) {
    rtmt_tile<4>(g, D, w + f0 * stride, stride, out + f0);
    f0 += 4;
  }
  if (f0 + 2 <= F) {
    rtmt_tile<2>(g, D, w + f0 * stride, stride, out + f0);
    f0 += 2;
  }
  if (f0 < F) rtmt_tile<1>(g, D, w + f0 * stride, stride, out + f0);
}

// Lane-major scratch of one block (16 graphs): every element is a vector over the graphs.
struct Block {
  const Dims& d;
  std::vector<vf> X, adj, deg, dinv, ahat, Y, h, t, dh, g, dY, dX, dahat, ddeg, dW, dbias;
  std::vector<int> pi, pj;
  explicit Block(const Dims& dd, bool backward)
      : d(dd),
        X(dd.N * dd.F),
        adj(dd.N * dd.N),
        deg(dd.N),
        dinv(dd.N),
        ahat(dd.N * dd.N),
        Y(dd.N * dd.F),
        h(dd.N * dd.D),
        t(dd.H > 0 ? dd.H * dd.N * dd.N : 1),
        dh(backward ? dd.N * dd.D : 0),
        g(backward ? dd.N * dd.N : 0),
        dY(backward ? dd.N * dd.F : 0),
        dX(backward ? dd.N * dd.F : 0),
        dahat(backward ? dd.N * dd.N : 0),
        ddeg(backward ? dd.N : 0),
        dW(backward ? dd.F * dd.C * dd.D : 0),
        dbias(backward ? dd.C * dd.D : 0),
        pi(dd.NP),
        pj(dd.NP) {
    int p = 0;
    for (int i = 0; i < dd.N; ++i)
      for (int j = i + 1; j < dd.N; ++j) {
        pi[p] = i;
        pj[p] = j;
        ++p;
      }
  }

  // X of graphs [b0, b0 + nb) into lanes (missing lanes: zero features)
  void gather_x(const float* X_all, int64_t b0, int nb) {
    const int NF = d.N * d.F;
    if (nb < L)
      for (int x = 0; x < NF; ++x) X[x] = vf{};
    float* xf = lanes(X.data());
    for (int l = 0; l < nb; ++l) {
      const float* src = X_all + (b0 + l) * NF;
      for (int x = 0; x < NF; ++x) xf[x * L + l] = src[x];
    }
  }

  // channel c: A~, degrees, A^, Y = A^ X and H = Y W_c + bias_c (missing lanes: empty graphs)
  void propagate(const float* E_all, const float* W, const float* bias, int64_t b0, int nb, int c) {
    const int N = d.N, C = d.C, NP = d.NP;
    vf* __restrict a = adj.data();
    for (int x = 0; x < N * N; ++x) a[x] = vf{};
    for (int i = 0; i < N; ++i) a[i * N + i] = splat(1.0f);
    float* af = lanes(a);
    for (int l = 0; l < nb; ++l) {
      const float* e = E_all + (b0 + l) * NP * C + c;
      for (int p = 0; p < NP; ++p) {
        const float v = e[p * C];
        af[(pi[p] * N + pj[p]) * L + l] = v;
        af[(pj[p] * N + pi[p]) * L + l] = v;
      }
    }
    finish_propagate(W, bias, c);
  }

  // the same with the adjacency channels already in lanes: e[p * stride + c]
  void propagate_lanes(const vf* e, int stride, const float* W, const float* bias, int c) {
    const int N = d.N;
    vf* __restrict a = adj.data();
    for (int i = 0; i < N; ++i) a[i * N + i] = splat(1.0f);
    for (int p = 0; p < d.NP; ++p) {
      const vf v = e[p * stride + c];
      a[pi[p] * N + pj[p]] = v;
      a[pj[p] * N + pi[p]] = v;
    }
    finish_propagate(W, bias, c);
  }

  void finish_propagate(const float* W, const float* bias, int c) {
    const int N = d.N, D = d.D, C = d.C, F = d.F;
    vf* __restrict a = adj.data();
    for (int i = 0; i < N; ++i) {
      vf s = vf{};
      for (int j = 0; j < N; ++j) s += a[i * N + j];
      deg[i] = s;
      vf di;
      for (int l = 0; l < L; ++l) di[l] = s[l] >= 1.0f ? 1.0f / std::sqrt(s[l]) : 1.0f;
      dinv[i] = di;
    }
    vf* __restrict ah = ahat.data();
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) ah[i * N + j] = dinv[i] * a[i * N + j] * dinv[j];
    vf* __restrict y = Y.data();
    for (int i = 0; i < N; ++i) {
      vf* yi = y + i * F;
      for (int f = 0; f < F; ++f) yi[f] = vf{};
      for (int j = 0; j < N; ++j) {
        const vf w = ah[i * N + j];
        const vf* xj = X.data() + j * F;
        for (int f = 0; f < F; ++f) yi[f] += w * xj[f];
      }
    }
    const float* bc = bias + c * D;
    for (int i = 0; i < N; ++i) {
      vf* hi = h.data() + i * D;
      for (int k = 0; k < D; ++k) hi[k] = splat(bc[k]);
      row_times_matrix(y + i * F, F, W + c * D, C * D, D, hi);
    }
  }

  // t[hh][i][j] = tanh(scale * <Q_i^hh, K_j^hh>)
  void attention() {
    const int N = d.N, D = d.D, A = d.A, dh_ = d.dh;
    const vf* __restrict hv = h.data();
    vf* __restrict tv = t.data();
    for (int hd = 0; hd < d.H; ++hd)
      for (int i = 0; i < N; ++i) {
        const vf* q = hv + i * D + hd * dh_;
        for (int j = 0; j < N; ++j) {
          const vf* k = hv + j * D + A + hd * dh_;
          vf z = vf{};
          for (int e = 0; e < dh_; ++e) z += q[e] * k[e];
          tv[(hd * N + i) * N + j] = tanh_fast(z * d.scale);
        }
      }
  }
};

// Cell attention (molgen.nets.can.CANLayer) on a block of L graphs, lane-major: slot s of the cells of lane l's
// graph is row first[l] + s of the packed inputs (n[l] cells, at most K in the block). Per target t and head k:
//   e_ts = leaky_relu(ssrc[s][k] + sdst[t][k], slope) for the marked slots s of t's row,
//   alpha_ts = softmax_s(e_ts) (max taken per target),  out[t][k][:] = sum_s alpha_ts h[s][k][:]
// A row of marks is bit-packed, slot s in bit s % 8 of byte s / 8. Buffers: hq[q][s] (q = k * C + c), sk[k][s],
// dk[k][t] (target scores), mb[t][byte] (each lane's mark byte), mk[s] (the marks of one target, 1 or 0).
struct CANBlock {
  int K = 0, W = 0, H, C, HC;
  int64_t first[L];
  int n[L];
  std::vector<vf> hq, sk, dk, mk, e, w;
  std::vector<vi> mb;

  CANBlock(int H_, int C_) : H(H_), C(C_), HC(H_ * C_) {}

  // graphs order[g0 .. g0 + L) (fewer at the end) of the batch with cell offsets gptr
  void load(const float* h, int64_t h_stride, const float* ssrc, const float* sdst, int64_t s_stride,
            const uint8_t* marks, int64_t m_stride, const int64_t* gptr, const int64_t* order, int64_t g0,
            int64_t g1) {
    K = 0;
    for (int l = 0; l < L; ++l) {
      const int64_t g = g0 + l < g1 ? order[g0 + l] : -1;
      first[l] = g >= 0 ? gptr[g] : 0;
      n[l] = g >= 0 ? static_cast<int>(gptr[g + 1] - gptr[g]) : 0;
      K = n[l] > K ? n[l] : K;
    }
    W = (K + 7) / 8;
    hq.assign(static_cast<size_t>(HC) * K, vf{});
    sk.assign(static_cast<size_t>(H) * K, vf{});
    dk.assign(static_cast<size_t>(H) * K, vf{});
    mb.assign(static_cast<size_t>(W) * K, vi{});
    mk.resize(K);
    e.resize(K);
    w.resize(K);
    for (int l = 0; l < L; ++l)
      for (int s = 0; s < n[l]; ++s) {
        const int64_t row = first[l] + s;
        const float* hr = h + row * h_stride;
        for (int q = 0; q < HC; ++q) lanes(&hq[q * K + s])[l] = hr[q];
        for (int k = 0; k < H; ++k) {
          lanes(&sk[k * K + s])[l] = ssrc[row * s_stride + k];
          lanes(&dk[k * K + s])[l] = sdst[row * s_stride + k];
        }
        const uint8_t* mr = marks + row * m_stride;
        for (int b = 0; b < W; ++b) reinterpret_cast<int32_t*>(&mb[s * W + b])[l] = mr[b];
      }
  }

  // the marks of target t as 1 / 0 per slot
  void marks_of(int t) {
    for (int s = 0; s < K; ++s) mk[s] = __builtin_convertvector((mb[t * W + s / 8] >> (s % 8)) & 1, vf);
  }

  // e (leaky scores, masked to -1e30), w = exp(e - max) * mask for target t (marks_of(t) first), head k;
  // returns the denominator
  vf weights(int t, int k, float slope) {
    const vf d = dk[k * K + t];
    const vf* sr = &sk[k * K];
    vf mx = splat(-1e30f);
    for (int s = 0; s < K; ++s) {
      vf v = sr[s] + d;
      v = v > 0.0f ? v : v * slope;
      v = mk[s] > 0.0f ? v : splat(-1e30f);
      e[s] = v;
      mx = v > mx ? v : mx;
    }
    vf den = splat(1e-16f);
    for (int s = 0; s < K; ++s) {
      w[s] = exp_neg(e[s] - mx) * mk[s];
      den += w[s];
    }
    return den;
  }
};

}  // namespace

extern "C" {

void gmh_forward(const float* X, const float* W, const float* bias, const float* E, float* V, float* S, int64_t b0,
                 int64_t b1, int N, int F, int C, int A, int O, int H, float scale) {
  const Dims d = make_dims(N, F, C, A, O, H, scale);
  Block blk(d, false);
  const float inv_h = d.H > 0 ? 0.5f / d.H : 0.0f;
  for (int64_t bb = b0; bb < b1; bb += L) {
    const int nb = static_cast<int>(b1 - bb < L ? b1 - bb : L);
    blk.gather_x(X, bb, nb);
    for (int c = 0; c < C; ++c) {
      blk.propagate(E, W, bias, bb, nb, c);
      const float* hf = lanes(blk.h.data());
      for (int l = 0; l < nb; ++l) {
        float* vb = V + (bb + l) * N * C * O;
        for (int i = 0; i < N; ++i) {
          const float* hi = hf + (i * d.D + 2 * A) * L + l;
          float* vr = vb + (i * C + c) * O;
          for (int k = 0; k < O; ++k) vr[k] = hi[k * L];
        }
      }
      if (A > 0) {
        blk.attention();
        const vf* t = blk.t.data();
        for (int p = 0; p < d.NP; ++p) {
          const int i = blk.pi[p], j = blk.pj[p];
          vf acc = vf{};
          for (int hd = 0; hd < d.H; ++hd) acc += t[(hd * N + i) * N + j] + t[(hd * N + j) * N + i];
          acc *= inv_h;
          const float* accf = lanes(&acc);
          for (int l = 0; l < nb; ++l) S[((bb + l) * d.NP + p) * C + c] = accf[l];
        }
      }
    }
  }
}

// dV, dX and dE may be null (no gradient); dW [F][C][D] and dbias [C][D] are this call's partial sums.
void gmh_backward(const float* X, const float* W, const float* bias, const float* E, const float* dV,
                  const float* dS, float* dX, float* dW, float* dbias, float* dE, int64_t b0, int64_t b1, int N,
                  int F, int C, int A, int O, int H, float scale) {
  const Dims d = make_dims(N, F, C, A, O, H, scale);
  const int D = d.D, dh_ = d.dh, NP = d.NP;
  Block blk(d, true);
  for (vf& v : blk.dbias) v = vf{};
  for (vf& v : blk.dW) v = vf{};
  const float gscale = d.H > 0 ? 0.5f * scale / d.H : 0.0f;
  for (int64_t bb = b0; bb < b1; bb += L) {
    const int nb = static_cast<int>(b1 - bb < L ? b1 - bb : L);
    blk.gather_x(X, bb, nb);
    vf* __restrict dXl = blk.dX.data();
    for (int x = 0; x < N * F; ++x) dXl[x] = vf{};
    for (int c = 0; c < C; ++c) {
      blk.propagate(E, W, bias, bb, nb, c);
      vf* __restrict dhv = blk.dh.data();
      for (int x = 0; x < N * D; ++x) dhv[x] = vf{};
      float* dhf = lanes(dhv);
      for (int l = 0; l < (dV != nullptr ? nb : 0); ++l) {
        const float* gv = dV + (bb + l) * N * C * O;
        for (int i = 0; i < N; ++i) {
          const float* row = gv + (i * C + c) * O;
          float* out = dhf + (i * D + 2 * A) * L + l;
          for (int k = 0; k < O; ++k) out[k * L] = row[k];
        }
      }
      if (A > 0) {
        blk.attention();
        vf* __restrict g = blk.g.data();
        for (int x = 0; x < N * N; ++x) g[x] = vf{};
        float* gf = lanes(g);
        for (int l = 0; l < nb; ++l) {
          const float* ds = dS + (bb + l) * NP * C + c;
          for (int p = 0; p < NP; ++p) {
            const float v = ds[p * C] * gscale;
            gf[(blk.pi[p] * N + blk.pj[p]) * L + l] = v;
            gf[(blk.pj[p] * N + blk.pi[p]) * L + l] = v;
          }
        }
        const vf* __restrict hv = blk.h.data();
        const vf* __restrict tv = blk.t.data();
        for (int hd = 0; hd < d.H; ++hd)
          for (int i = 0; i < N; ++i)
            for (int j = 0; j < N; ++j) {
              if (i == j) continue;
              const vf tt = tv[(hd * N + i) * N + j];
              const vf dz = g[i * N + j] * (1.0f - tt * tt);
              const int qo = i * D + hd * dh_, ko = j * D + A + hd * dh_;
              for (int e = 0; e < dh_; ++e) {
                dhv[qo + e] += dz * hv[ko + e];
                dhv[ko + e] += dz * hv[qo + e];
              }
            }
      }
      // H = Y W_c + bias_c with Y = A^ X
      vf* __restrict db = blk.dbias.data() + c * D;
      for (int i = 0; i < N; ++i)
        for (int k = 0; k < D; ++k) db[k] += dhv[i * D + k];
      const vf* __restrict y = blk.Y.data();
      vf* __restrict dWl = blk.dW.data();
      for (int f = 0; f < F; ++f) {  // dW_c[f][k] += sum_i Y[i][f] dH[i][k], a register tile of 8 k's at a time
        vf* dw = dWl + (f * C + c) * D;
        int k0 = 0;
        for (; k0 + 8 <= D; k0 += 8) {
          vf acc[8];
          for (int kk = 0; kk < 8; ++kk) acc[kk] = dw[k0 + kk];
          for (int i = 0; i < N; ++i) {
            const vf yf = y[i * F + f];
            const vf* dr = dhv + i * D + k0;
            for (int kk = 0; kk < 8; ++kk) acc[kk] += yf * dr[kk];
          }
          for (int kk = 0; kk < 8; ++kk) dw[k0 + kk] = acc[kk];
        }
        for (; k0 < D; ++k0) {
          vf acc = dw[k0];
          for (int i = 0; i < N; ++i) acc += y[i * F + f] * dhv[i * D + k0];
          dw[k0] = acc;
        }
      }
      vf* __restrict dYl = blk.dY.data();
      for (int i = 0; i < N; ++i) row_times_matrix_t(dhv + i * D, D, W + c * D, C * D, F, dYl + i * F);
      // Y = A^ X:  dX += A^T dY (A^ is symmetric), dA^ = dY X^T
      const vf* __restrict ah = blk.ahat.data();
      for (int j = 0; j < N; ++j) {
        vf* out = dXl + j * F;
        for (int i = 0; i < N; ++i) {
          const vf w = ah[i * N + j];
          const vf* dr = dYl + i * F;
          for (int f = 0; f < F; ++f) out[f] += w * dr[f];
        }
      }
      if (dE != nullptr) {
        vf* __restrict da = blk.dahat.data();
        const vf* __restrict Xl = blk.X.data();
        for (int i = 0; i < N; ++i)
          for (int j = 0; j < N; ++j) {
            vf acc = vf{};
            const vf* dr = dYl + i * F;
            const vf* xr = Xl + j * F;
            for (int f = 0; f < F; ++f) acc += dr[f] * xr[f];
            da[i * N + j] = acc;
          }
        // A^_ij = dinv_i A~_ij dinv_j with dinv = clamp(deg, 1)^-1/2 and deg_i = sum_j A~_ij
        const vf* a = blk.adj.data();
        const vf* dinv = blk.dinv.data();
        vf* ddeg = blk.ddeg.data();
        for (int i = 0; i < N; ++i) {
          vf dd = vf{};
          for (int j = 0; j < N; ++j) dd += (da[i * N + j] + da[j * N + i]) * a[i * N + j] * dinv[j];
          const vf di = dinv[i];
          ddeg[i] = blk.deg[i] >= 1.0f ? -0.5f * dd * di * di * di : vf{};
        }
        for (int p = 0; p < NP; ++p) {
          const int i = blk.pi[p], j = blk.pj[p];
          const vf v = (da[i * N + j] + da[j * N + i]) * dinv[i] * dinv[j] + ddeg[i] + ddeg[j];
          const float* vl = lanes(&v);
          for (int l = 0; l < nb; ++l) dE[((bb + l) * NP + p) * C + c] = vl[l];
        }
      }
    }
    if (dX != nullptr) {
      const float* dxf = lanes(dXl);
      for (int l = 0; l < nb; ++l) {
        float* dst = dX + (bb + l) * N * F;
        for (int x = 0; x < N * F; ++x) dst[x] = dxf[x * L + l];
      }
    }
  }
  for (int ck = 0; ck < C * D; ++ck) {
    float s = 0.0f;
    for (int l = 0; l < L; ++l) s += blk.dbias[ck][l];
    dbias[ck] = s;
  }
  for (int x = 0; x < F * C * D; ++x) {
    float s = 0.0f;
    for (int l = 0; l < L; ++l) s += blk.dW[x][l];
    dW[x] = s;
  }
}

// Fused MLP (GDSS's MLP: Linear, ELU, ..., Linear) on rows [r0, r1), vectorised over rows (16 per block).
// The input of a row is the concatenation of n_in row-major tensors ins[t] of widths[t]; dims[0..nl] are the
// layer widths (dims[0] = sum of widths); Wt holds the transposed weights of the layers one after the other
// (layer l: [dims[l]][dims[l+1]]), b the biases. The backward recomputes the forward and writes this call's
// partial dWt and db; dins[t] may be null.
struct MLPScratch {
  int nl;
  std::vector<int> dims, woff, boff, aoff;
  std::vector<vf> act, g, gp, dW, db;
  MLPScratch(const int* d, int nl_, bool backward) : nl(nl_), dims(d, d + nl_ + 1), woff(nl_ + 1), boff(nl_ + 1),
                                                      aoff(nl_ + 2) {
    woff[0] = boff[0] = aoff[0] = 0;
    int maxw = 0;
    for (int l = 0; l < nl; ++l) {
      woff[l + 1] = woff[l] + dims[l] * dims[l + 1];
      boff[l + 1] = boff[l] + dims[l + 1];
    }
    for (int l = 0; l <= nl; ++l) {
      aoff[l + 1] = aoff[l] + dims[l];
      maxw = dims[l] > maxw ? dims[l] : maxw;
    }
    act.resize(aoff[nl + 1]);
    if (backward) {
      g.resize(maxw);
      gp.resize(maxw);
      dW.assign(woff[nl], vf{});
      db.assign(boff[nl], vf{});
    }
  }

  void gather(const float* const* ins, const int* widths, int n_in, int64_t r, int nb) {
    vf* a0 = act.data();
    if (nb < L)
      for (int f = 0; f < dims[0]; ++f) a0[f] = vf{};
    float* af = lanes(a0);
    int off = 0;
    for (int t = 0; t < n_in; ++t) {
      const int w = widths[t];
      for (int l = 0; l < nb; ++l) {
        const float* row = ins[t] + (r + l) * w;
        for (int f = 0; f < w; ++f) af[(off + f) * L + l] = row[f];
      }
      off += w;
    }
  }

  // act[l + 1] = layer l of act[l]; ELU after every layer but the last
  void forward(const float* Wt, const float* b) {
    for (int l = 0; l < nl; ++l) {
      const int in = dims[l], out = dims[l + 1];
      vf* z = act.data() + aoff[l + 1];
      const float* bl = b + boff[l];
      for (int k = 0; k < out; ++k) z[k] = splat(bl[k]);
      row_times_matrix(act.data() + aoff[l], in, Wt + woff[l], out, out, z);
      if (l + 1 < nl)
        for (int k = 0; k < out; ++k) {
          const vf v = z[k];
          z[k] = v > 0.0f ? v : exp_neg(v < 0.0f ? v : 0.0f) - 1.0f;
        }
    }
  }
};

void mlp_forward(const float* const* ins, const int* widths, int n_in, const float* Wt, const float* b,
                 const int* dims, int nl, float* Y, int64_t r0, int64_t r1) {
  MLPScratch m(dims, nl, false);
  const int out = dims[nl];
  for (int64_t r = r0; r < r1; r += L) {
    const int nb = static_cast<int>(r1 - r < L ? r1 - r : L);
    m.gather(ins, widths, n_in, r, nb);
    m.forward(Wt, b);
    const float* zf = lanes(m.act.data() + m.aoff[nl]);
    for (int l = 0; l < nb; ++l)
      for (int k = 0; k < out; ++k) Y[(r + l) * out + k] = zf[k * L + l];
  }
}

void mlp_backward(const float* const* ins, const int* widths, int n_in, const float* Wt, const float* b,
                  const int* dims, int nl, const float* dY, float* const* dins, float* dWt, float* db, int64_t r0,
                  int64_t r1) {
  // Row blocks are processed in groups of SB: first the activations and the gradients of every layer's
  // output are computed per block, then dW and db are accumulated over the group with register tiles.
  constexpr int SB = 8;
  MLPScratch m(dims, nl, true);
  const int out = dims[nl];
  std::vector<int> goff(nl + 1);
  goff[0] = 0;
  for (int l = 0; l < nl; ++l) goff[l + 1] = goff[l] + dims[l + 1];
  const int asz = m.aoff[nl + 1], gsz = goff[nl];
  std::vector<vf> acts(SB * asz), gs(SB * gsz);
  bool any_din = false;
  for (int t = 0; t < n_in; ++t) any_din = any_din || dins[t] != nullptr;
  for (int64_t r = r0; r < r1; r += SB * L) {
    int nblk = 0;
    for (; nblk < SB && r + nblk * L < r1; ++nblk) {
      const int64_t rb = r + nblk * L;
      const int nb = static_cast<int>(r1 - rb < L ? r1 - rb : L);
      m.gather(ins, widths, n_in, rb, nb);
      m.forward(Wt, b);
      vf* act = acts.data() + nblk * asz;
      for (int x = 0; x < asz; ++x) act[x] = m.act[x];
      vf* gb = gs.data() + nblk * gsz;
      vf* g = gb + goff[nl - 1];  // gradient of the last layer's output
      for (int k = 0; k < out; ++k) g[k] = vf{};
      float* gf = lanes(g);
      for (int l = 0; l < nb; ++l)
        for (int k = 0; k < out; ++k) gf[k * L + l] = dY[(rb + l) * out + k];
      for (int l = nl - 1; l >= 0; --l) {
        const int in = dims[l], o = dims[l + 1];
        if (l == 0 && !any_din) break;
        const vf* gl = gb + goff[l];
        row_times_matrix_t(gl, o, Wt + m.woff[l], o, in, m.gp.data());
        const vf* gp = m.gp.data();
        if (l > 0) {
          const vf* a = act + m.aoff[l];  // ELU output; ELU'(x) = 1 if x > 0 else ELU(x) + 1
          vf* gprev = gb + goff[l - 1];
          for (int f = 0; f < in; ++f) gprev[f] = a[f] > 0.0f ? gp[f] : gp[f] * (a[f] + 1.0f);
        } else {
          const float* gpf = lanes(gp);
          int off = 0;
          for (int t = 0; t < n_in; ++t) {
            const int w = widths[t];
            if (dins[t] != nullptr)
              for (int l2 = 0; l2 < nb; ++l2) {
                float* row = dins[t] + (rb + l2) * w;
                for (int f = 0; f < w; ++f) row[f] = gpf[(off + f) * L + l2];
              }
            off += w;
          }
        }
      }
    }
    for (int l = 0; l < nl; ++l) {
      const int in = dims[l], o = dims[l + 1];
      vf* dbl = m.db.data() + m.boff[l];
      for (int k = 0; k < o; ++k) {
        vf acc = dbl[k];
        for (int q = 0; q < nblk; ++q) acc += gs[q * gsz + goff[l] + k];
        dbl[k] = acc;
      }
      vf* dw = m.dW.data() + m.woff[l];
      for (int f = 0; f < in; ++f) {
        vf* row = dw + f * o;
        int k0 = 0;
        for (; k0 + 8 <= o; k0 += 8) {
          vf acc[8];
          for (int kk = 0; kk < 8; ++kk) acc[kk] = row[k0 + kk];
          for (int q = 0; q < nblk; ++q) {
            const vf a = acts[q * asz + m.aoff[l] + f];
            const vf* g = gs.data() + q * gsz + goff[l] + k0;
            for (int kk = 0; kk < 8; ++kk) acc[kk] += a * g[kk];
          }
          for (int kk = 0; kk < 8; ++kk) row[k0 + kk] = acc[kk];
        }
        for (; k0 < o; ++k0) {
          vf acc = row[k0];
          for (int q = 0; q < nblk; ++q) acc += acts[q * asz + m.aoff[l] + f] * gs[q * gsz + goff[l] + k0];
          row[k0] = acc;
        }
      }
    }
  }
  for (int x = 0; x < m.woff[nl]; ++x) {
    float s = 0.0f;
    for (int l = 0; l < L; ++l) s += m.dW[x][l];
    dWt[x] = s;
  }
  for (int x = 0; x < m.boff[nl]; ++x) {
    float s = 0.0f;
    for (int l = 0; l < L; ++l) s += m.db[x][l];
    db[x] = s;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The whole ScoreNetworkA forward (inference), one block of 16 graphs at a time, everything in lanes.
// spec (int32): N, F0, c_init, n_layers, heads, then per layer: C_in, attn_dim, out_dim, F_in, C_out,
//   n_edge, edge dims (n_edge + 1), n_node, node dims (n_node + 1); then n_final, final dims (n_final + 1).
// params (float32), per layer: W [F_in][C_in][D], bias [C_in][D], the edge MLP, the node MLP; then the final
// MLP; an MLP is [W_0^T, b_0, W_1^T, b_1, ...] with W^T [in][out].
// X [B][N][F0], Adj [B][N][N], flags [B][N] -> score [B][N][N].
inline vf elu_v(vf v) { return v > 0.0f ? v : exp_neg(v < 0.0f ? v : 0.0f) - 1.0f; }

inline void mlp_lanes(const vf* in, const int* dims, int nl, const float* p, vf* buf, int maxw, vf* out) {
  const vf* cur = in;
  for (int l = 0; l < nl; ++l) {
    const int fi = dims[l], fo = dims[l + 1];
    const float* Wt = p;
    const float* b = p + fi * fo;
    p = b + fo;
    vf* dst = (l + 1 == nl) ? out : buf + (l % 2) * maxw;
    for (int k = 0; k < fo; ++k) dst[k] = splat(b[k]);
    row_times_matrix(cur, fi, Wt, fo, fo, dst);
    if (l + 1 < nl)
      for (int k = 0; k < fo; ++k) dst[k] = elu_v(dst[k]);
    cur = dst;
  }
}

inline int mlp_size(const int* dims, int nl) {
  int n = 0;
  for (int l = 0; l < nl; ++l) n += dims[l] * dims[l + 1] + dims[l + 1];
  return n;
}

struct LayerSpec {
  Dims d;
  int c_out, ne, nn;
  const int *edims, *ndims;
  const float *W, *bias, *eparams, *nparams;
};

void score_a_forward(const int* spec, const float* params, const float* X, const float* Adj, const float* flags,
                     float* out, int64_t b0, int64_t b1) {
  const int N = spec[0], F0 = spec[1], c_init = spec[2], nlay = spec[3], heads = spec[4];
  const int* sp = spec + 5;
  const float* pp = params;
  std::vector<LayerSpec> ls(nlay);
  int maxw = 1, ctot = c_init;
  for (int l = 0; l < nlay; ++l) {
    LayerSpec& s = ls[l];
    const int C = sp[0], A = sp[1], O = sp[2], F = sp[3];
    s.c_out = sp[4];
    s.d = make_dims(N, F, C, A, O, heads, 1.0f / std::sqrt(static_cast<float>(O)));
    s.ne = sp[5];
    s.edims = sp + 6;
    sp += 6 + s.ne + 1;
    s.nn = sp[0];
    s.ndims = sp + 1;
    sp += 1 + s.nn + 1;
    s.W = pp;
    pp += F * C * s.d.D;
    s.bias = pp;
    pp += C * s.d.D;
    s.eparams = pp;
    pp += mlp_size(s.edims, s.ne);
    s.nparams = pp;
    pp += mlp_size(s.ndims, s.nn);
    for (int k = 0; k <= s.ne; ++k) maxw = s.edims[k] > maxw ? s.edims[k] : maxw;
    for (int k = 0; k <= s.nn; ++k) maxw = s.ndims[k] > maxw ? s.ndims[k] : maxw;
    ctot += s.c_out;
  }
  const int nf = sp[0];
  const int* fdims = sp + 1;
  const float* fparams = pp;
  for (int k = 0; k <= nf; ++k) maxw = fdims[k] > maxw ? fdims[k] : maxw;
  // channel offsets of every layer's input in the concatenated pair features
  std::vector<int> in_off(nlay + 1);
  in_off[0] = 0;
  for (int l = 0; l < nlay; ++l) in_off[l + 1] = in_off[l] + (l == 0 ? c_init : ls[l - 1].c_out);
  const int NP = N * (N - 1) / 2;
  std::vector<Block> blocks;
  blocks.reserve(nlay);
  int cmax = c_init, vmax = 1;
  for (int l = 0; l < nlay; ++l) {
    blocks.emplace_back(ls[l].d, false);
    cmax = ls[l].d.C > cmax ? ls[l].d.C : cmax;
    vmax = ls[l].d.C * ls[l].d.O > vmax ? ls[l].d.C * ls[l].d.O : vmax;
  }
  std::vector<vf> adj(N * N), pw(N * N), pw2(N * N), fl(N), pm(NP), eall(NP * ctot), S(NP * cmax),
      vcat(N * vmax), ein(2 * cmax), buf(2 * maxw), mout(maxw);
  const std::vector<int>& pi = blocks[0].pi;
  const std::vector<int>& pj = blocks[0].pj;
  for (int64_t bb = b0; bb < b1; bb += L) {
    const int nb = static_cast<int>(b1 - bb < L ? b1 - bb : L);
    // gather X (into the first layer's block), A and the flags
    blocks[0].gather_x(X, bb, nb);
    for (int x = 0; x < N * N; ++x) adj[x] = vf{};
    for (int i = 0; i < N; ++i) fl[i] = vf{};
    float* af = lanes(adj.data());
    float* ff = lanes(fl.data());
    for (int l = 0; l < nb; ++l) {
      const float* src = Adj + (bb + l) * N * N;
      for (int x = 0; x < N * N; ++x) af[x * L + l] = src[x];
      const float* fsrc = flags + (bb + l) * N;
      for (int i = 0; i < N; ++i) ff[i * L + l] = fsrc[i];
    }
    for (int p = 0; p < NP; ++p) pm[p] = fl[pi[p]] * fl[pj[p]];
    // adjacency powers A^1 .. A^c_init on the pairs
    for (int x = 0; x < N * N; ++x) pw[x] = adj[x];
    for (int c = 0; c < c_init; ++c) {
      if (c > 0) {
        for (int i = 0; i < N; ++i)
          for (int j = 0; j < N; ++j) {
            vf acc = vf{};
            for (int k = 0; k < N; ++k) acc += pw[i * N + k] * adj[k * N + j];
            pw2[i * N + j] = acc;
          }
        pw.swap(pw2);
      }
      for (int p = 0; p < NP; ++p) eall[p * ctot + c] = pw[pi[p] * N + pj[p]];
    }
    for (int l = 0; l < nlay; ++l) {
      const LayerSpec& s = ls[l];
      Block& blk = blocks[l];
      const int C = s.d.C, O = s.d.O, A = s.d.A, off = in_off[l], ooff = in_off[l + 1];
      for (int c = 0; c < C; ++c) {
        blk.propagate_lanes(eall.data() + off, ctot, s.W, s.bias, c);
        for (int i = 0; i < N; ++i)
          for (int k = 0; k < O; ++k) vcat[i * C * O + c * O + k] = blk.h[i * s.d.D + 2 * A + k];
        blk.attention();
        const float inv = 0.5f / s.d.H;
        for (int p = 0; p < NP; ++p) {
          vf acc = vf{};
          for (int hd = 0; hd < s.d.H; ++hd)
            acc += blk.t[(hd * N + pi[p]) * N + pj[p]] + blk.t[(hd * N + pj[p]) * N + pi[p]];
          S[p * C + c] = acc * inv;
        }
      }
      // node MLP over the channels' values -> the next layer's X (the last layer's X is unused)
      if (l + 1 < nlay) {
        vf* xn = blocks[l + 1].X.data();
        const int fo = s.ndims[s.nn];
        for (int i = 0; i < N; ++i) {
          mlp_lanes(vcat.data() + i * C * O, s.ndims, s.nn, s.nparams, buf.data(), maxw, mout.data());
          for (int k = 0; k < fo; ++k) xn[i * fo + k] = tanh_fast(mout[k] * fl[i]);
        }
      }
      // edge MLP over [attention maps, input adjacencies] -> 2 * out, masked
      for (int p = 0; p < NP; ++p) {
        for (int c = 0; c < C; ++c) {
          ein[c] = S[p * C + c];
          ein[C + c] = eall[p * ctot + off + c];
        }
        mlp_lanes(ein.data(), s.edims, s.ne, s.eparams, buf.data(), maxw, mout.data());
        const vf m2 = 2.0f * pm[p];
        for (int c = 0; c < s.c_out; ++c) eall[p * ctot + ooff + c] = mout[c] * m2;
      }
    }
    // final MLP on all pair channels, masked; symmetric output with a zero diagonal
    for (int l = 0; l < nb; ++l) {
      float* o = out + (bb + l) * N * N;
      for (int i = 0; i < N; ++i) o[i * N + i] = 0.0f;
    }
    for (int p = 0; p < NP; ++p) {
      mlp_lanes(eall.data() + p * ctot, fdims, nf, fparams, buf.data(), maxw, mout.data());
      const vf v = mout[0] * pm[p];
      const float* vl = lanes(&v);
      for (int l = 0; l < nb; ++l) {
        float* o = out + (bb + l) * N * N;
        o[pi[p] * N + pj[p]] = vl[l];
        o[pj[p] * N + pi[p]] = vl[l];
      }
    }
  }
}

// ELU (alpha = 1) on elements [n0, n1): y = x > 0 ? x : exp(x) - 1
void elu_forward(const float* x, float* y, int64_t n0, int64_t n1) {
  int64_t i = n0;
  for (; i + L <= n1; i += L) {
    vf v;
    __builtin_memcpy(&v, x + i, sizeof(vf));
    const vf e = exp_neg(v < 0.0f ? v : 0.0f) - 1.0f;
    const vf out = v > 0.0f ? v : e;
    __builtin_memcpy(y + i, &out, sizeof(vf));
  }
  for (; i < n1; ++i) y[i] = x[i] > 0.0f ? x[i] : std::expm1(x[i]);
}

// dx = dy * ELU'(x), written with the output: ELU'(x) = 1 for y > 0, y + 1 otherwise
void elu_backward(const float* y, const float* dy, float* dx, int64_t n0, int64_t n1) {
  for (int64_t i = n0; i < n1; ++i) dx[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + 1.0f);
}

// Cell attention aggregate (molgen.nets.can.CANLayer, see CANBlock) for the blocks of graphs order[g0 .. g1),
// L graphs per block: out[row] (+)= the aggregate of each cell row of these graphs. h rows have stride h_stride
// (floats), score rows s_stride, bit-packed mark rows m_stride (bytes); out is [E][H*C], added to when
// accumulate != 0.
void can_attend_forward(const float* h, int64_t h_stride, const float* ssrc, const float* sdst,
                        int64_t s_stride, const uint8_t* marks, int64_t m_stride, const int64_t* gptr,
                        const int64_t* order, float* out, int64_t g0, int64_t g1, int H, int C, float slope,
                        int accumulate) {
  CANBlock blk(H, C);
  std::vector<vf> o;
  const int HC = H * C;
  for (int64_t gb = g0; gb < g1; gb += L) {
    blk.load(h, h_stride, ssrc, sdst, s_stride, marks, m_stride, gptr, order, gb, g1);
    const int K = blk.K;
    o.assign(static_cast<size_t>(HC) * K, vf{});
    for (int t = 0; t < K; ++t) {
      blk.marks_of(t);
      for (int k = 0; k < H; ++k) {
        const vf inv = 1.0f / blk.weights(t, k, slope);
        for (int c = 0; c < C; ++c) {
          const vf* hr = &blk.hq[(k * C + c) * K];
          vf acc = vf{};
          for (int s = 0; s < K; ++s) acc += blk.w[s] * hr[s];
          o[t * HC + k * C + c] = acc * inv;
        }
      }
    }
    for (int l = 0; l < L; ++l)
      for (int t = 0; t < blk.n[l]; ++t) {
        float* orow = out + (blk.first[l] + t) * HC;
        for (int q = 0; q < HC; ++q) {
          const float v = lanes(&o[t * HC + q])[l];
          orow[q] = accumulate ? orow[q] + v : v;
        }
      }
  }
}

// Backward of can_attend_forward (without accumulate) for the blocks of graphs order[g0 .. g1), given dout[E][H*C]
// and the forward's out. With alpha and e as above and d_ts = <dout_t, h_s> per head:
//   dh[s] += alpha_ts dout_t;   de_ts = alpha_ts (d_ts - <dout_t, out_t>) * (e_ts > 0 ? 1 : slope);
//   dsdst[t] += sum_s de_ts;    dssrc[s] += sum_t de_ts.
// Every neighbour lies in its target's graph, so the rows written (dh [E][H*C], dssrc and dsdst [E][H],
// contiguous, overwritten) are those of these graphs only: blocks can run on separate threads.
void can_attend_backward(const float* h, int64_t h_stride, const float* ssrc, const float* sdst,
                         int64_t s_stride, const uint8_t* marks, int64_t m_stride, const int64_t* gptr,
                         const int64_t* order, const float* out, const float* dout, float* dh, float* dssrc,
                         float* dsdst, int64_t g0, int64_t g1, int H, int C, float slope) {
  CANBlock blk(H, C);
  std::vector<vf> go, dhq, dsk, dd, dot;
  const int HC = H * C;
  for (int64_t gb = g0; gb < g1; gb += L) {
    blk.load(h, h_stride, ssrc, sdst, s_stride, marks, m_stride, gptr, order, gb, g1);
    const int K = blk.K;
    go.assign(static_cast<size_t>(HC) * K, vf{});
    dot.assign(static_cast<size_t>(H) * K, vf{});
    for (int l = 0; l < L; ++l)
      for (int t = 0; t < blk.n[l]; ++t) {
        const int64_t row = blk.first[l] + t;
        for (int k = 0; k < H; ++k) {
          float acc = 0.0f;
          for (int c = 0; c < C; ++c) {
            const float g = dout[row * HC + k * C + c];
            lanes(&go[t * HC + k * C + c])[l] = g;
            acc += g * out[row * HC + k * C + c];
          }
          lanes(&dot[k * K + t])[l] = acc;
        }
      }
    dhq.assign(static_cast<size_t>(HC) * K, vf{});
    dsk.assign(static_cast<size_t>(H) * K, vf{});
    dd.assign(static_cast<size_t>(H) * K, vf{});
    std::vector<vf> d(K), a(K);
    for (int t = 0; t < K; ++t) {
      blk.marks_of(t);
      for (int k = 0; k < H; ++k) {
        const vf inv = 1.0f / blk.weights(t, k, slope);
        for (int s = 0; s < K; ++s) d[s] = vf{}, a[s] = blk.w[s] * inv;
        for (int c = 0; c < C; ++c) {
          const vf g = go[t * HC + k * C + c];
          const vf* hr = &blk.hq[(k * C + c) * K];
          vf* dr = &dhq[(k * C + c) * K];
          for (int s = 0; s < K; ++s) {
            d[s] += g * hr[s];
            dr[s] += a[s] * g;
          }
        }
        const vf dt = dot[k * K + t], sd = blk.dk[k * K + t];
        const vf* sr = &blk.sk[k * K];
        vf* ds = &dsk[k * K];
        vf sum = vf{};
        for (int s = 0; s < K; ++s) {
          const vf z = sr[s] + sd;
          const vf de = a[s] * (d[s] - dt) * (z > 0.0f ? splat(1.0f) : splat(slope));
          ds[s] += de;
          sum += de;
        }
        dd[k * K + t] = sum;
      }
    }
    for (int l = 0; l < L; ++l)
      for (int s = 0; s < blk.n[l]; ++s) {
        const int64_t row = blk.first[l] + s;
        for (int q = 0; q < HC; ++q) dh[row * HC + q] = lanes(&dhq[q * K + s])[l];
        for (int k = 0; k < H; ++k) {
          dssrc[row * H + k] = lanes(&dsk[k * K + s])[l];
          dsdst[row * H + k] = lanes(&dd[k * K + s])[l];
        }
      }
  }
}

}  // extern "C"
