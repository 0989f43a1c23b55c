// CPU kernels for upfirdn2d and bias_act (insetgan). Float32 and float64.
//
// Tensors are viewed as rows: NCHW -> [B=N*C, H, W, Cin=1], NHWC (channels_last) ->
// [B=N, H, W, Cin=C]; each row (b, y) is W*Cin contiguous values. The innermost loops run
// over contiguous memory so the compiler can vectorise them; rows are spread over threads
// with at::parallel_for.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d (CPU)");
  m.def("bias_act", &bias_act, "bias + activation + gain + clamp and its gradient (CPU)");
}
