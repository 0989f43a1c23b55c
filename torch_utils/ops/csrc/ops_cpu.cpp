// CPU kernels for upfirdn2d, bias_act and filtered_lrelu (insetgan). Float32 and float64.
//
// Tensors are viewed as rows: NCHW -> [B=N*C, H, W, Cin=1], NHWC (channels_last) ->
// [B=N, H, W, Cin=C]; each row (b, y) is W*Cin contiguous values. The innermost loops run
// over contiguous memory so the compiler can vectorise them; rows are spread over threads
// with at::parallel_for.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

// ------------------------------------------------------------------------------------------
// upfirdn2d

struct AxisParams {
  int64_t in_len, out_len, up, down, pad0;
};

// First tap index t >= 0 with (o*down + t - pad0) divisible by up, and the matching input index.
inline bool first_tap(const AxisParams& p, int64_t o, int64_t taps, int64_t* t0, int64_t* i0) {
  int64_t j = o * p.down - p.pad0;  // upsampled index of tap 0
  int64_t r = ((-j) % p.up + p.up) % p.up;  // smallest t with (j + t) % up == 0
  if (r >= taps) return false;
  *t0 = r;
  *i0 = (j + r) / p.up;  // exact
  return true;
}

// out[c] (+)= sum_j w[j] * src[j][c] for c < len, one pass over memory (n taps, any n).
template <typename T>
void combine(T* __restrict__ out, const T* const* src, const T* w, int n, int64_t len, bool accumulate) {
  if (!accumulate) {
    if (n == 0) { std::fill(out, out + len, T(0)); return; }
    if (n == 1) { const T* a = src[0]; const T wa = w[0]; for (int64_t c = 0; c < len; ++c) out[c] = wa * a[c]; return; }
    if (n == 2) {
      const T *a = src[0], *b = src[1]; const T wa = w[0], wb = w[1];
      for (int64_t c = 0; c < len; ++c) out[c] = wa * a[c] + wb * b[c];
      return;
    }
    if (n == 4) {
      const T *a = src[0], *b = src[1], *d = src[2], *e = src[3];
      const T wa = w[0], wb = w[1], wd = w[2], we = w[3];
      for (int64_t c = 0; c < len; ++c) out[c] = wa * a[c] + wb * b[c] + wd * d[c] + we * e[c];
      return;
    }
    std::fill(out, out + len, T(0));
  }
  for (int j = 0; j < n; ++j) {
    const T* a = src[j];
    const T wa = w[j];
    for (int64_t c = 0; c < len; ++c) out[c] += wa * a[c];
  }
}

constexpr int kMaxTaps = 64;

// y_row[o*inner + c] (+)= sum_t g[t] * x_row[i(o,t)*inner + c] along one axis.
template <typename T>
void axis_pass(const T* x_row, T* y_row, const AxisParams& p, int64_t inner, const T* g, int64_t taps,
               bool accumulate) {
  const T* src[kMaxTaps];
  T w[kMaxTaps];
  for (int64_t o = 0; o < p.out_len; ++o) {
    int n = 0;
    int64_t t, i;
    if (first_tap(p, o, taps, &t, &i)) {
      for (; t < taps; t += p.up, ++i) {
        if (i < 0) continue;
        if (i >= p.in_len) break;
        src[n] = x_row + i * inner;
        w[n++] = g[t];
      }
    }
    combine(y_row + o * inner, src, w, n, inner, accumulate);
  }
}

// Specialisation of axis_pass for inner == 1 (NCHW rows): outputs are grouped by o mod up, so
// each filter tap becomes one strided axpy y[q + k*up] += g[t] * x[i0 + k*down] over k.
template <typename T>
void axis_pass_scalar(const T* __restrict__ x_row, T* __restrict__ y_row, const AxisParams& p, const T* g,
                      int64_t taps) {
  std::fill(y_row, y_row + p.out_len, T(0));
  const int64_t up = p.up, down = p.down;
  for (int64_t q = 0; q < up && q < p.out_len; ++q) {
    const int64_t n_out = (p.out_len - q + up - 1) / up;  // outputs o = q + k*up, k in [0, n_out)
    for (int64_t t = ((p.pad0 - q * down) % up + up) % up; t < taps; t += up) {
      // input index i(k) = i0 + k*down with i0 = (q*down + t - pad0) / up (exact)
      const int64_t i0 = (q * down + t - p.pad0) / up;
      const int64_t k_lo = i0 >= 0 ? 0 : (-i0 + down - 1) / down;
      const int64_t last = p.in_len - 1 - i0;  // need k*down <= last
      if (last < 0) continue;
      const int64_t k_hi = std::min<int64_t>(n_out, last / down + 1);
      const T w = g[t];
      T* yq = y_row + q;
      const T* xq = x_row + i0;
      if (up == 1 && down == 1) {
        for (int64_t k = k_lo; k < k_hi; ++k) yq[k] += w * xq[k];
      } else if (up == 1) {
        for (int64_t k = k_lo; k < k_hi; ++k) yq[k] += w * xq[k * down];
      } else if (down == 1) {
        for (int64_t k = k_lo; k < k_hi; ++k) yq[k * up] += w * xq[k];
      } else {
        for (int64_t k = k_lo; k < k_hi; ++k) yq[k * up] += w * xq[k * down];
      }
    }
  }
}

template <typename T>
void hpass(const T* x_row, T* y_row, const AxisParams& p, int64_t inner, const T* g, int64_t taps, bool accumulate,
           std::vector<T>& scratch) {
  if (inner == 1) {
    if (!accumulate) {
      axis_pass_scalar(x_row, y_row, p, g, taps);
    } else {
      scratch.resize(p.out_len);
      axis_pass_scalar(x_row, scratch.data(), p, g, taps);
      for (int64_t o = 0; o < p.out_len; ++o) y_row[o] += scratch[o];
    }
    return;
  }
  axis_pass(x_row, y_row, p, inner, g, taps, accumulate);
}

template <typename T>
void upfirdn2d_kernel(const T* x, T* y, int64_t B, int64_t Cin, const AxisParams& px, const AxisParams& py,
                      const T* fy, const T* fx, const T* f2d, int64_t fh, int64_t fw) {
  const int64_t in_row = px.in_len * Cin, out_row = px.out_len * Cin;
  at::parallel_for(0, B * py.out_len, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> tmp(f2d ? 0 : in_row), scratch;
    for (int64_t k = begin; k < end; ++k) {
      const int64_t b = k / py.out_len, oy = k % py.out_len;
      const T* xb = x + b * py.in_len * in_row;
      T* yr = y + b * py.out_len * out_row + oy * out_row;
      int64_t t, i;
      bool any = first_tap(py, oy, fh, &t, &i);
      if (f2d == nullptr) {  // separable: vertical combination of input rows, then one horizontal pass
        const T* src[kMaxTaps];
        T w[kMaxTaps];
        int n = 0;
        for (; any && t < fh; t += py.up, ++i) {
          if (i < 0) continue;
          if (i >= py.in_len) break;
          src[n] = xb + i * in_row;
          w[n++] = fy[t];
        }
        combine(tmp.data(), src, w, n, in_row, false);
        hpass(tmp.data(), yr, px, Cin, fx, fw, false, scratch);
      } else {  // full 2-D filter: one horizontal pass per contributing filter row
        std::fill(yr, yr + out_row, T(0));
        for (; any && t < fh; t += py.up, ++i) {
          if (i < 0) continue;
          if (i >= py.in_len) break;
          hpass(xb + i * in_row, yr, px, Cin, f2d + t * fw, fw, true, scratch);
        }
      }
    }
  });
}

// x: [N, C, H, W] (contiguous or channels_last). fy/fx: 1-D taps (separable) or f2d: [fh, fw].
// Taps are used as given (flip and gain are applied by the caller).
torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor fy, torch::Tensor fx, torch::Tensor f2d, int64_t upx,
                        int64_t upy, int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                        int64_t pady1, bool poison) {
  TORCH_CHECK(x.device().is_cpu(), "upfirdn2d (cpp): x must be a CPU tensor");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d (cpp): x must be 4-D");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "upfirdn2d (cpp): float32 or float64 only");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d (cpp): bad scaling");
  TORCH_CHECK(std::max({fy.numel(), fx.numel(), f2d.dim() == 2 ? f2d.size(0) : 0, f2d.dim() == 2 ? f2d.size(1) : 0}) <= kMaxTaps,
              "upfirdn2d (cpp): at most 64 taps per axis");
  const bool separable = f2d.numel() == 0;
  const int64_t fh = separable ? fy.numel() : f2d.size(0);
  const int64_t fw = separable ? fx.numel() : f2d.size(1);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t outH = (H * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t outW = (W * upx + padx0 + padx1 - fw) / downx + 1;
  TORCH_CHECK(H * upy + pady0 + pady1 >= fh && W * upx + padx0 + padx1 >= fw && outH >= 1 && outW >= 1,
              "upfirdn2d (cpp): output would be empty");
  const bool nhwc = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast) && C > 1;
  if (!nhwc) x = x.contiguous();
  auto fmt = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto y = torch::empty({N, C, outH, outW}, x.options().memory_format(fmt));
  if (poison) y.fill_(std::numeric_limits<double>::quiet_NaN());
  const int64_t B = nhwc ? N : N * C, Cin = nhwc ? C : 1;
  AxisParams px{W, outW, upx, downx, padx0}, py{H, outH, upy, downy, pady0};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "upfirdn2d_cpu", [&] {
    auto fyc = fy.to(x.scalar_type()).contiguous(), fxc = fx.to(x.scalar_type()).contiguous();
    auto f2c = f2d.to(x.scalar_type()).contiguous();
    upfirdn2d_kernel<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), B, Cin, px, py,
                               separable ? fyc.data_ptr<scalar_t>() : nullptr,
                               separable ? fxc.data_ptr<scalar_t>() : nullptr,
                               separable ? nullptr : f2c.data_ptr<scalar_t>(), fh, fw);
  });
  return y;
}

// ------------------------------------------------------------------------------------------
// bias_act

enum Act { LINEAR = 0, RELU, LRELU, TANH, SIGMOID, ELU, SELU, SOFTPLUS, SWISH };

template <typename T, int ACT>
inline T act_fwd(T v, T alpha) {
  if (ACT == RELU) return std::max(v, T(0));
  if (ACT == LRELU) return std::max(v, T(0)) + alpha * std::min(v, T(0));  // branch-free: vectorises
  if (ACT == TANH) return std::tanh(v);
  if (ACT == SIGMOID) return T(1) / (T(1) + std::exp(-v));
  if (ACT == ELU) return v > T(0) ? v : std::expm1(v);
  if (ACT == SELU) return v > T(0) ? T(1.0507009873554805) * v : T(1.0507009873554805 * 1.6732632423543772) * std::expm1(v);
  if (ACT == SOFTPLUS) return v > T(20) ? v : std::log1p(std::exp(v));
  if (ACT == SWISH) return v / (T(1) + std::exp(-v));
  return v;
}

template <typename T, int ACT>
inline T act_grad(T v, T alpha) {
  // Masks as 0/1 arithmetic instead of selects so the loops vectorise (results are exact).
  if (ACT == RELU) return T(v > T(0));
  if (ACT == LRELU) { const T m = T(v > T(0)); return m + (T(1) - m) * alpha; }
  if (ACT == TANH) { T t = std::tanh(v); return T(1) - t * t; }
  if (ACT == SIGMOID) { T s = T(1) / (T(1) + std::exp(-v)); return s * (T(1) - s); }
  if (ACT == ELU) return v > T(0) ? T(1) : std::exp(v);
  if (ACT == SELU) return v > T(0) ? T(1.0507009873554805) : T(1.0507009873554805 * 1.6732632423543772) * std::exp(v);
  if (ACT == SOFTPLUS) return v > T(20) ? T(1) : T(1) / (T(1) + std::exp(-v));
  if (ACT == SWISH) { T s = T(1) / (T(1) + std::exp(-v)); return s + v * s * (T(1) - s); }
  return T(1);
}

// A run of `len` elements with per-element bias bias[k] (bias_scalar when bias is null).
template <typename T, int ACT, bool GRAD, bool CLAMP, bool BIAS_ARRAY>
void bias_act_loop(const T* __restrict__ x, const T* __restrict__ dy, const T* __restrict__ bias, T bias_scalar,
                   T* __restrict__ out, int64_t len, T alpha, T gain, T clamp) {
  for (int64_t k = 0; k < len; ++k) {
    const T v = x[k] + (BIAS_ARRAY ? bias[k] : bias_scalar);
    const T y = act_fwd<T, ACT>(v, alpha) * gain;
    if (!GRAD) {
      out[k] = CLAMP ? std::min(std::max(y, -clamp), clamp) : y;
    } else {
      const T d = dy[k] * act_grad<T, ACT>(v, alpha) * gain;
      out[k] = CLAMP ? d * T(std::abs(y) <= clamp) : d;
    }
  }
}

// Hoists the bias kind out of the loop so each variant vectorises.
template <typename T, int ACT, bool GRAD, bool CLAMP>
void bias_act_run(const T* x, const T* dy, const T* bias, T bias_scalar, T* out, int64_t len, T alpha, T gain,
                  T clamp) {
  if (bias)
    bias_act_loop<T, ACT, GRAD, CLAMP, true>(x, dy, bias, bias_scalar, out, len, alpha, gain, clamp);
  else
    bias_act_loop<T, ACT, GRAD, CLAMP, false>(x, dy, bias, bias_scalar, out, len, alpha, gain, clamp);
}

// Layout: numel = outer * C * inner, bias b[c] along C. Long constant-bias runs (inner large)
// are processed run by run; otherwise rows of C*inner elements use an expanded bias pattern.
template <typename T, int ACT, bool GRAD, bool CLAMP>
void bias_act_layout(const T* x, const T* dy, const T* b, T* out, int64_t outer, int64_t C, int64_t inner, T alpha,
                     T gain, T clamp) {
  const int64_t row = C * inner;
  if (b == nullptr || inner >= 256) {
    const int64_t runs = b ? outer * C : 1;
    const int64_t run_len = b ? inner : outer * row;
    const int64_t chunk = 16384;
    const int64_t pieces = (run_len + chunk - 1) / chunk;
    at::parallel_for(0, runs * pieces, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t r = k / pieces, s = (k % pieces) * chunk, n = std::min(chunk, run_len - s);
        const int64_t off = r * run_len + s;
        bias_act_run<T, ACT, GRAD, CLAMP>(x + off, GRAD ? dy + off : nullptr, nullptr, b ? b[r % C] : T(0),
                                          out + off, n, alpha, gain, clamp);
      }
    });
    return;
  }
  std::vector<T> pattern(row);
  for (int64_t c = 0; c < C; ++c) std::fill(pattern.begin() + c * inner, pattern.begin() + (c + 1) * inner, b[c]);
  const int64_t grain = std::max<int64_t>(1, 16384 / row);
  at::parallel_for(0, outer, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t off = r * row;
      bias_act_run<T, ACT, GRAD, CLAMP>(x + off, GRAD ? dy + off : nullptr, pattern.data(), T(0), out + off, row,
                                        alpha, gain, clamp);
    }
  });
}

template <typename T, int ACT>
void bias_act_dispatch(const T* x, const T* dy, const T* b, T* out, int64_t outer, int64_t C, int64_t inner, T alpha,
                       T gain, T clamp, bool grad) {
  const bool c = clamp >= T(0);
  if (!grad && !c) bias_act_layout<T, ACT, false, false>(x, dy, b, out, outer, C, inner, alpha, gain, clamp);
  if (!grad && c) bias_act_layout<T, ACT, false, true>(x, dy, b, out, outer, C, inner, alpha, gain, clamp);
  if (grad && !c) bias_act_layout<T, ACT, true, false>(x, dy, b, out, outer, C, inner, alpha, gain, clamp);
  if (grad && c) bias_act_layout<T, ACT, true, true>(x, dy, b, out, outer, C, inner, alpha, gain, clamp);
}

template <typename T>
void bias_act_kernel(const T* x, const T* dy, const T* b, T* out, int64_t outer, int64_t C, int64_t inner, int act,
                     T alpha, T gain, T clamp, bool grad) {
  switch (act) {
#define INSETGAN_ACT_CASE(A) \
  case A: bias_act_dispatch<T, A>(x, dy, b, out, outer, C, inner, alpha, gain, clamp, grad); break;
    INSETGAN_ACT_CASE(LINEAR) INSETGAN_ACT_CASE(RELU) INSETGAN_ACT_CASE(LRELU) INSETGAN_ACT_CASE(TANH)
    INSETGAN_ACT_CASE(SIGMOID) INSETGAN_ACT_CASE(ELU) INSETGAN_ACT_CASE(SELU) INSETGAN_ACT_CASE(SOFTPLUS)
    INSETGAN_ACT_CASE(SWISH)
#undef INSETGAN_ACT_CASE
    default: TORCH_CHECK(false, "bias_act (cpp): unknown activation");
  }
}

// grad=false: y = clamp(act(x + b) * gain); grad=true: dx = dy * d/dx[...] (0 where clamped).
// The bias runs along `dim`; x may be contiguous or channels_last (then dim must be 1).
torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor dy, int64_t act, double alpha, double gain,
                       double clamp, int64_t dim, bool grad, bool poison) {
  TORCH_CHECK(x.device().is_cpu(), "bias_act (cpp): x must be a CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "bias_act (cpp): float32 or float64 only");
  TORCH_CHECK(dim >= 0 && dim < std::max<int64_t>(x.dim(), 1), "bias_act (cpp): bad dim");
  const bool nhwc = x.dim() == 4 && dim == 1 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  auto fmt = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  x = x.contiguous(fmt);
  if (grad) {
    TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type(), "bias_act (cpp): dy mismatch");
    dy = dy.contiguous(fmt);
  }
  const bool has_b = b.numel() > 0;
  int64_t C = 1, inner = 1, outer = x.numel();
  if (has_b) {
    C = x.size(dim);
    TORCH_CHECK(b.dim() == 1 && b.numel() == C, "bias_act (cpp): bias must have x.shape[dim] elements");
    if (!nhwc) {
      for (int64_t i = dim + 1; i < x.dim(); ++i) inner *= x.size(i);
    }
    outer = C * inner > 0 ? x.numel() / (C * inner) : 0;
  }
  auto out = torch::empty_like(x, x.options().memory_format(fmt));
  if (poison) out.fill_(std::numeric_limits<double>::quiet_NaN());
  if (x.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_act_cpu", [&] {
    auto bc = has_b ? b.to(x.scalar_type()).contiguous() : b;
    bias_act_kernel<scalar_t>(x.data_ptr<scalar_t>(), grad ? dy.data_ptr<scalar_t>() : nullptr,
                              has_b ? bc.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), outer, C, inner,
                              static_cast<int>(act), static_cast<scalar_t>(alpha), static_cast<scalar_t>(gain),
                              static_cast<scalar_t>(clamp), grad);
  });
  return out;
}

// ------------------------------------------------------------------------------------------
// filtered_lrelu
//
// One call computes out = B(step(A(x + b))) plane by plane, where A and B are upfirdn passes
// along both axes (A never downsamples, B never upsamples) and `step` is pointwise:
//  - act (forward): v -> clamp(lrelu(v, slope) * gain, -clamp, clamp), recording a 2-bit code
//    per value in `mask` (0: v > 0, 1: v <= 0, 2: clamped), 4 codes per byte, rows padded to
//    whole bytes: mask is [N*C, mid_h, ceil(mid_w / 4)] uint8;
//  - mask (gradients): v -> v * factor[code] with factor = {gain, gain * slope, 0, 0}.
// Forward: A = the up-FIR, B = the down-FIR. dx = (down-FIR)^T, mask, (up-FIR)^T is the same
// call with the transposed passes; the double-backward product is the forward passes with
// the mask step. Intermediate rows are made once each, in order, and the last fh(B) of them
// are kept in a ring, so no plane is ever held whole at the intermediate rate.
//
// Row filters work on polyphase components so every multiply-add loop runs over contiguous
// memory: an upsampling FIR computes each output phase (o mod up) from the input row
// directly; a downsampling FIR first splits its zero-padded input row into `down` phases.
// Sums over taps or rows go 4 sources per pass over the output (weighted_sum).

// out[k] = (accumulate ? out[k] : 0) + sum_j w[j] * src[j][k] for k < len, 4 sources per pass.
template <typename T>
void weighted_sum(T* __restrict__ out, const T* const* src, const T* w, int64_t n, int64_t len, bool accumulate) {
  int64_t j = 0;
  if (!accumulate) {
    const int64_t first = std::min<int64_t>(n, 4);
    const T* a = first > 0 ? src[0] : nullptr;
    const T* b = first > 1 ? src[1] : nullptr;
    const T* c = first > 2 ? src[2] : nullptr;
    const T* d = first > 3 ? src[3] : nullptr;
    switch (first) {
      case 0: std::fill(out, out + len, T(0)); return;
      case 1: for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k]; break;
      case 2: for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k] + w[1] * b[k]; break;
      case 3: for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k] + w[1] * b[k] + w[2] * c[k]; break;
      default:
        for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k] + w[1] * b[k] + w[2] * c[k] + w[3] * d[k];
    }
    j = first;
  }
  for (; j + 4 <= n; j += 4) {
    const T *a = src[j], *b = src[j + 1], *c = src[j + 2], *d = src[j + 3];
    const T wa = w[j], wb = w[j + 1], wc = w[j + 2], wd = w[j + 3];
    for (int64_t k = 0; k < len; ++k) out[k] += wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k];
  }
  for (; j < n; ++j) {
    const T* a = src[j];
    const T wa = w[j];
    for (int64_t k = 0; k < len; ++k) out[k] += wa * a[k];
  }
}

// Geometry of a row FIR: out[o] = sum_t taps[t] * in_up[o * down + t - pad0], with in_up the
// input with up - 1 zeros after each sample (0 outside the row). Either up or down is 1.
struct RowFir {
  int64_t in_len, out_len, up, down, pad0, taps;

  // Downsampling (up == 1): the padded input m in [0, padded_len()) reads in[m - pad0]; split
  // into `down` phases of phase_len() values each: phase r, index i <-> m = i * down + r.
  int64_t padded_len() const { return (out_len - 1) * down + taps; }
  int64_t phase_len() const { return (padded_len() + down - 1) / down; }
  int64_t phases_size() const { return down * phase_len(); }
};

inline int64_t floor_div64(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Scratch of the row filters, one per thread.
template <typename T>
struct RowScratch {
  std::vector<T> padded;        // a zero-padded input row (upsampling)
  std::vector<T> phase;         // one output phase (upsampling)
  std::vector<const T*> src;    // sources and weights of weighted_sum
  std::vector<T> w;
};

// Upsampling FIR (down == 1): out (+)= FIR(in). Output phase q (o = q + k * up) uses the taps
// t = pad0 - q (mod up), each reading in[k + (q + t - pad0) / up].
template <typename T>
void up_fir(const T* in, const RowFir& g, const T* taps, T* out, bool accumulate, RowScratch<T>& s) {
  const int64_t lo = floor_div64(-g.pad0, g.up);                                // smallest input index read
  const int64_t hi = floor_div64(g.out_len + g.taps - 2 - g.pad0, g.up) + 1;    // one past the largest
  const T* row = in + lo;  // row[i - lo] = in[i]
  if (lo < 0 || hi > g.in_len) {
    s.padded.assign(hi - lo, T(0));
    const int64_t a = std::max<int64_t>(lo, 0), b = std::min<int64_t>(hi, g.in_len);
    if (a < b) std::copy(in + a, in + b, s.padded.begin() + (a - lo));
    row = s.padded.data();
  }
  for (int64_t q = 0; q < std::min(g.up, g.out_len); ++q) {
    const int64_t n_out = (g.out_len - q + g.up - 1) / g.up;
    s.src.clear();
    s.w.clear();
    for (int64_t t = ((g.pad0 - q) % g.up + g.up) % g.up; t < g.taps; t += g.up) {
      s.src.push_back(row + (q + t - g.pad0) / g.up - lo);
      s.w.push_back(taps[t]);
    }
    if (g.up == 1) {
      weighted_sum(out, s.src.data(), s.w.data(), s.src.size(), n_out, accumulate);
      continue;
    }
    s.phase.resize(n_out);
    weighted_sum(s.phase.data(), s.src.data(), s.w.data(), s.src.size(), n_out, false);
    T* o = out + q;
    if (accumulate) {
      for (int64_t k = 0; k < n_out; ++k) o[k * g.up] += s.phase[k];
    } else {
      for (int64_t k = 0; k < n_out; ++k) o[k * g.up] = s.phase[k];
    }
  }
}

// Downsampling FIR, step 1 (up == 1): the zero-padded input row split into phases. Phase r
// holds padded[i * down + r] = in[i * down + r - pad0] for i < phase_len() (0 outside the row).
template <typename T>
void to_phases(const T* in, const RowFir& g, T* phases) {
  const int64_t len = g.phase_len(), padded = g.padded_len();
  for (int64_t r = 0; r < g.down; ++r) {
    T* ph = phases + r * len;
    const int64_t s0 = r - g.pad0;  // input index of ph[0]
    // i in [i_lo, i_hi) reads inside the row and inside the padded length
    const int64_t i_lo = std::min(len, std::max<int64_t>(0, -floor_div64(s0, g.down)));
    const int64_t i_hi = std::max(i_lo, std::min({len, -floor_div64(s0 - g.in_len, g.down),
                                                  -floor_div64(r - padded, g.down)}));
    std::fill(ph, ph + i_lo, T(0));
    if (i_lo < i_hi) {
      const T* src = in + (s0 + i_lo * g.down);  // in[s0 + i * down] for i = i_lo
      if (g.down == 1) {
        std::copy(src, src + (i_hi - i_lo), ph + i_lo);
      } else {
        for (int64_t i = 0; i < i_hi - i_lo; ++i) ph[i_lo + i] = src[i * g.down];
      }
    }
    std::fill(ph + i_hi, ph + len, T(0));
  }
}

// Downsampling FIR, step 2: the sources of out[k] = sum_t taps[t] * padded[k * down + t] in the
// phases (appended to s.src / s.w, so several rows can be summed at once).
template <typename T>
void add_phase_sources(const T* phases, const RowFir& g, const T* taps, RowScratch<T>& s) {
  const int64_t len = g.phase_len();
  for (int64_t t = 0; t < g.taps; ++t) {
    s.src.push_back(phases + (t % g.down) * len + t / g.down);
    s.w.push_back(taps[t]);
  }
}

template <typename T>
struct FirPass {
  RowFir ax;                 // horizontal geometry
  AxisParams ay;             // vertical geometry
  const T* fy;               // separable taps: fy [fh], fx [fw] (f2d null) ...
  const T* fx;
  const T* f2d;              // ... or a full [fh, fw] filter (fy, fx null); flip and gain applied
  int64_t fh, fw;
};

struct Strides {
  int64_t n, c, h, w;        // element strides of an [N, C, H, W] tensor
};

enum FlreluStep { kStepAct = 0, kStepMask = 1 };

inline uint8_t mask_code(const uint8_t* packed, int64_t k) { return (packed[k >> 2] >> ((k & 3) * 2)) & 3; }

// Per-thread buffers, sized once per parallel chunk.
template <typename T>
struct FlreluWork {
  std::vector<T> plane;      // the input plane (+ bias), rows of ax.in_len values
  std::vector<T> tmp;        // vertical combination of input rows (separable A)
  std::vector<T> mid;        // one intermediate row
  std::vector<T> phases;     // one intermediate row split into B's phases
  std::vector<T> ring;       // the last fh(B) intermediate rows: after B's horizontal pass (separable) or as phases
  std::vector<T> row;        // one output row, when the output is not contiguous along W
  std::vector<uint8_t> codes;
  RowScratch<T> rs;
};

// Intermediate row j of pass A, from the input plane.
template <typename T>
void pass_a_row(const T* plane, int64_t j, const FirPass<T>& A, T* mid, FlreluWork<T>& w) {
  const int64_t in_w = A.ax.in_len;
  int64_t t, i;
  bool any = first_tap(A.ay, j, A.fh, &t, &i);
  if (A.f2d == nullptr) {
    w.rs.src.clear();
    w.rs.w.clear();
    for (; any && t < A.fh; t += A.ay.up, ++i) {
      if (i < 0) continue;
      if (i >= A.ay.in_len) break;
      w.rs.src.push_back(plane + i * in_w);
      w.rs.w.push_back(A.fy[t]);
    }
    if (w.rs.src.empty()) {
      std::fill(mid, mid + A.ax.out_len, T(0));
      return;
    }
    weighted_sum(w.tmp.data(), w.rs.src.data(), w.rs.w.data(), w.rs.src.size(), in_w, false);
    up_fir(w.tmp.data(), A.ax, A.fx, mid, false, w.rs);
  } else {
    std::fill(mid, mid + A.ax.out_len, T(0));
    for (; any && t < A.fh; t += A.ay.up, ++i) {
      if (i < 0) continue;
      if (i >= A.ay.in_len) break;
      up_fir(plane + i * in_w, A.ax, A.f2d + t * A.fw, mid, true, w.rs);
    }
  }
}

// v -> clamp(lrelu(v) * gain); codes[k] = 0 (v > 0), 1 (v <= 0) or 2 (clamped).
template <typename T, bool CLAMP>
void act_row(T* __restrict__ v, uint8_t* __restrict__ codes, int64_t len, T slope, T gain, T clamp) {
  for (int64_t k = 0; k < len; ++k) {
    const T u = v[k];
    // leaky ReLU written branch-free (exact: one of the two terms is 0)
    T a = (std::max(u, T(0)) + slope * std::min(u, T(0))) * gain;
    uint8_t code = u > T(0) ? 0 : 1;
    if (CLAMP) {
      code = std::abs(a) > clamp ? 2 : code;
      a = std::min(std::max(a, -clamp), clamp);
    }
    v[k] = a;
    codes[k] = code;
  }
}

inline void pack_codes(const uint8_t* __restrict__ codes, int64_t len, uint8_t* __restrict__ packed) {
  const int64_t full = len / 4;
  for (int64_t k = 0; k < full; ++k) {
    const uint8_t* c = codes + 4 * k;
    packed[k] = static_cast<uint8_t>(c[0] | (c[1] << 2) | (c[2] << 4) | (c[3] << 6));
  }
  if (full * 4 < len) {
    uint8_t byte = 0;
    for (int64_t q = 0; full * 4 + q < len; ++q) byte |= static_cast<uint8_t>(codes[full * 4 + q] << (2 * q));
    packed[full] = byte;
  }
}

inline void unpack_codes(const uint8_t* __restrict__ packed, int64_t len, uint8_t* __restrict__ codes) {
  const int64_t full = len / 4;
  for (int64_t k = 0; k < full; ++k) {
    const uint8_t byte = packed[k];
    uint8_t* c = codes + 4 * k;
    c[0] = byte & 3;
    c[1] = (byte >> 2) & 3;
    c[2] = (byte >> 4) & 3;
    c[3] = (byte >> 6) & 3;
  }
  for (int64_t k = full * 4; k < len; ++k) codes[k] = mask_code(packed, k);
}

// v *= gain (code 0), gain * slope (code 1) or 0 (clamped).
template <typename T>
void mask_row(T* __restrict__ v, const uint8_t* __restrict__ codes, int64_t len, T gain, T gain_slope) {
  for (int64_t k = 0; k < len; ++k) {
    const T f = codes[k] == 0 ? gain : (codes[k] == 1 ? gain_slope : T(0));
    v[k] *= f;
  }
}

struct FlreluStepParams {
  int step;                  // FlreluStep
  double gain, slope, clamp; // clamp < 0: none
};

// One plane: input plane `xp` (strides xs.h, xs.w), output plane `yp` (strides ys.h, ys.w),
// its mask rows `mask` ([mid_h, mask_w]).
template <typename T>
void flrelu_plane(const T* xp, Strides xs, T bias, T* yp, Strides ys, uint8_t* mask, int64_t mask_w,
                  const FirPass<T>& A, const FirPass<T>& B, const FlreluStepParams& sp, FlreluWork<T>& w) {
  const int64_t H = A.ay.in_len, W = A.ax.in_len;
  const int64_t mid_h = A.ay.out_len, mid_w = A.ax.out_len;
  const int64_t out_h = B.ay.out_len, out_w = B.ax.out_len;
  const bool separable_b = B.f2d == nullptr;
  const int64_t ring_w = separable_b ? out_w : B.ax.phases_size();
  const T gain = T(sp.gain), slope = T(sp.slope), clamp = T(sp.clamp);

  // Gather the input plane (any layout) into contiguous rows, bias added.
  for (int64_t i = 0; i < H; ++i) {
    const T* src = xp + i * xs.h;
    T* dst = w.plane.data() + i * W;
    if (xs.w == 1) {
      for (int64_t k = 0; k < W; ++k) dst[k] = src[k] + bias;
    } else {
      for (int64_t k = 0; k < W; ++k) dst[k] = src[k * xs.w] + bias;
    }
  }

  int64_t next_mid = 0;  // intermediate rows below this one are done (or not needed)
  for (int64_t o = 0; o < out_h; ++o) {
    const int64_t first = o * B.ay.down - B.ay.pad0;  // intermediate row of B's tap 0
    const int64_t lo = std::max<int64_t>(first, 0), hi = std::min<int64_t>(first + B.fh, mid_h);
    for (int64_t j = std::max(next_mid, lo); j < hi; ++j) {
      T* mid = w.mid.data();
      pass_a_row(w.plane.data(), j, A, mid, w);
      if (sp.step == kStepAct) {
        if (sp.clamp >= 0)
          act_row<T, true>(mid, w.codes.data(), mid_w, slope, gain, clamp);
        else
          act_row<T, false>(mid, w.codes.data(), mid_w, slope, gain, clamp);
        pack_codes(w.codes.data(), mid_w, mask + j * mask_w);
      } else {
        unpack_codes(mask + j * mask_w, mid_w, w.codes.data());
        mask_row(mid, w.codes.data(), mid_w, gain, gain * slope);
      }
      T* slot = w.ring.data() + (j % B.fh) * ring_w;
      if (separable_b) {
        to_phases(mid, B.ax, w.phases.data());
        w.rs.src.clear();
        w.rs.w.clear();
        add_phase_sources(w.phases.data(), B.ax, B.fx, w.rs);
        weighted_sum(slot, w.rs.src.data(), w.rs.w.data(), w.rs.src.size(), out_w, false);
      } else {
        to_phases(mid, B.ax, slot);
      }
    }
    next_mid = std::max(next_mid, hi);

    // Output row o: B's vertical taps over the ring rows (2-D: every tap of every row at once).
    T* out = ys.w == 1 ? yp + o * ys.h : w.row.data();
    w.rs.src.clear();
    w.rs.w.clear();
    for (int64_t t = 0; t < B.fh; ++t) {
      const int64_t j = first + t;
      if (j < 0 || j >= mid_h) continue;
      const T* slot = w.ring.data() + (j % B.fh) * ring_w;
      if (separable_b) {
        w.rs.src.push_back(slot);
        w.rs.w.push_back(B.fy[t]);
      } else {
        add_phase_sources(slot, B.ax, B.f2d + t * B.fw, w.rs);
      }
    }
    weighted_sum(out, w.rs.src.data(), w.rs.w.data(), w.rs.src.size(), out_w, false);
    if (ys.w != 1) {
      T* dst = yp + o * ys.h;
      for (int64_t k = 0; k < out_w; ++k) dst[k * ys.w] = out[k];
    }
  }
}

template <typename T>
void filtered_lrelu_kernel(const T* x, Strides xs, const T* b, T* y, Strides ys, uint8_t* mask, int64_t N, int64_t C,
                           const FirPass<T>& A, const FirPass<T>& B, const FlreluStepParams& sp) {
  const int64_t mid_h = A.ay.out_len, mid_w = A.ax.out_len, mask_w = (mid_w + 3) / 4;
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    FlreluWork<T> w;
    w.plane.resize(A.ay.in_len * A.ax.in_len);
    w.tmp.resize(A.ax.in_len);
    w.mid.resize(mid_w);
    w.phases.resize(B.ax.phases_size());
    w.ring.resize(B.fh * (B.f2d == nullptr ? B.ax.out_len : B.ax.phases_size()));
    w.row.resize(B.ax.out_len);
    w.codes.resize(mid_w);
    w.rs.src.reserve(B.fh * B.fw + A.fh + A.fw);
    w.rs.w.reserve(B.fh * B.fw + A.fh + A.fw);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / C, c = p % C;
      flrelu_plane(x + n * xs.n + c * xs.c, xs, b ? b[c] : T(0), y + n * ys.n + c * ys.c, ys,
                   mask + p * mid_h * mask_w, mask_w, A, B, sp, w);
    }
  });
}

Strides strides_of(const torch::Tensor& t) { return Strides{t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// x: [N, C, H, W] in any layout; b: [C] or empty. Pass A: taps (fa_y, fa_x) or fa_2d, upsampling
// by `up` with padding (pad_ax0, pad_ay0) before, giving [mid_h, mid_w]; pass B: taps (fb_y, fb_x)
// or fb_2d, downsampling by `down` with padding (pad_bx0, pad_by0), giving [out_h, out_w]. Taps
// are used as given (a correlation; flip and gain applied by the caller). act: the activation
// step, returning [y, mask]; otherwise the mask step with the given mask, returning [y, mask].
// The output has the layout of x (channels_last stays channels_last).
std::vector<torch::Tensor> filtered_lrelu(torch::Tensor x, torch::Tensor b, torch::Tensor mask, torch::Tensor fa_y,
                                          torch::Tensor fa_x, torch::Tensor fa_2d, int64_t up, int64_t pad_ax0,
                                          int64_t pad_ay0, torch::Tensor fb_y, torch::Tensor fb_x, torch::Tensor fb_2d,
                                          int64_t down, int64_t pad_bx0, int64_t pad_by0, int64_t mid_h, int64_t mid_w,
                                          int64_t out_h, int64_t out_w, double gain, double slope, double clamp,
                                          bool act, bool poison) {
  TORCH_CHECK(x.device().is_cpu(), "filtered_lrelu (cpp): x must be a CPU tensor");
  TORCH_CHECK(x.dim() == 4, "filtered_lrelu (cpp): x must be 4-D");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "filtered_lrelu (cpp): float32 or float64 only");
  TORCH_CHECK(up >= 1 && down >= 1, "filtered_lrelu (cpp): bad scaling");
  TORCH_CHECK(mid_h >= 1 && mid_w >= 1 && out_h >= 1 && out_w >= 1, "filtered_lrelu (cpp): empty output");
  const bool sep_a = fa_2d.numel() == 0, sep_b = fb_2d.numel() == 0;
  const int64_t fa_h = sep_a ? fa_y.numel() : fa_2d.size(0), fa_w = sep_a ? fa_x.numel() : fa_2d.size(1);
  const int64_t fb_h = sep_b ? fb_y.numel() : fb_2d.size(0), fb_w = sep_b ? fb_x.numel() : fb_2d.size(1);
  TORCH_CHECK(std::max({fa_h, fa_w, fb_h, fb_w}) <= kMaxTaps && std::min({fa_h, fa_w, fb_h, fb_w}) >= 1,
              "filtered_lrelu (cpp): 1 to 64 taps per axis");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.numel() == C), "filtered_lrelu (cpp): b must have C elements");
  const int64_t mask_w = (mid_w + 3) / 4;
  if (act) {
    mask = torch::zeros({N * C, mid_h, mask_w}, x.options().dtype(at::kByte));
  } else {
    TORCH_CHECK(mask.scalar_type() == at::kByte && mask.is_contiguous() && mask.dim() == 3 &&
                    mask.size(0) == N * C && mask.size(1) == mid_h && mask.size(2) == mask_w,
                "filtered_lrelu (cpp): mask does not match");
  }
  const bool nhwc = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  auto fmt = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto y = torch::empty({N, C, out_h, out_w}, x.options().memory_format(fmt));
  if (poison) y.fill_(std::numeric_limits<double>::quiet_NaN());
  if (y.numel() == 0) return {y, mask};
  const FlreluStepParams sp{act ? kStepAct : kStepMask, gain, slope, clamp};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "filtered_lrelu_cpu", [&] {
    auto cast = [&](const torch::Tensor& f) { return f.to(x.scalar_type()).contiguous(); };
    auto ay = cast(fa_y), ax = cast(fa_x), a2 = cast(fa_2d), by = cast(fb_y), bx = cast(fb_x), b2 = cast(fb_2d);
    auto bc = b.numel() ? cast(b) : b;
    FirPass<scalar_t> A{RowFir{W, mid_w, up, 1, pad_ax0, fa_w}, AxisParams{H, mid_h, up, 1, pad_ay0},
                        sep_a ? ay.data_ptr<scalar_t>() : nullptr, sep_a ? ax.data_ptr<scalar_t>() : nullptr,
                        sep_a ? nullptr : a2.data_ptr<scalar_t>(), fa_h, fa_w};
    FirPass<scalar_t> B{RowFir{mid_w, out_w, 1, down, pad_bx0, fb_w}, AxisParams{mid_h, out_h, 1, down, pad_by0},
                        sep_b ? by.data_ptr<scalar_t>() : nullptr, sep_b ? bx.data_ptr<scalar_t>() : nullptr,
                        sep_b ? nullptr : b2.data_ptr<scalar_t>(), fb_h, fb_w};
    filtered_lrelu_kernel<scalar_t>(x.data_ptr<scalar_t>(), strides_of(x),
                                    b.numel() ? bc.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(),
                                    strides_of(y), mask.data_ptr<uint8_t>(), N, C, A, B, sp);
  });
  return {y, mask};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d (CPU)");
  m.def("bias_act", &bias_act, "bias + activation + gain + clamp and its gradient (CPU)");
  m.def("filtered_lrelu", &filtered_lrelu, "bias, up-FIR, leaky ReLU, clamp, down-FIR and its gradient passes (CPU)");
}
