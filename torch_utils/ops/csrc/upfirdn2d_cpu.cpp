// CPU kernel of upfirdn2d (insetgan), bound to Python in ops_cpu.cpp. Float32 and float64.
//
// Tensors are viewed as rows: NCHW -> [B=N*C, H, W, Cin=1], NHWC (channels_last) ->
// [B=N, H, W, Cin=C]; each row (b, y) is W*Cin contiguous values. The innermost loops run
// over contiguous memory so the compiler can vectorise them; rows are spread over threads
// with at::parallel_for.
#include "ops_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace insetgan_cpu {
namespace {

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

}  // namespace

// x: [N, C, H, W] (contiguous or channels_last). fy/fx: 1-D taps (separable) or f2d: [fh, fw].
// Taps are used as given (flip and gain are applied by the caller).
at::Tensor upfirdn2d(at::Tensor x, at::Tensor fy, at::Tensor fx, at::Tensor f2d, int64_t upx, int64_t upy,
                     int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                     bool poison) {
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
  auto y = at::empty({N, C, outH, outW}, x.options().memory_format(fmt));
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

}  // namespace insetgan_cpu
