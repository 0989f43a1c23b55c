// CPU kernel of bias_act (insetgan), bound to Python in ops_cpu.cpp. Float32 and float64.
//
// The bias runs along one dimension; long runs of one bias value and rows with an expanded
// bias pattern are spread over threads with at::parallel_for.
#include "ops_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace insetgan_cpu {
namespace {

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

}  // namespace

// grad=false: y = clamp(act(x + b) * gain); grad=true: dx = dy * d/dx[...] (0 where clamped).
// The bias runs along `dim`; x may be contiguous or channels_last (then dim must be 1).
at::Tensor bias_act(at::Tensor x, at::Tensor b, at::Tensor dy, int64_t act, double alpha, double gain, double clamp,
                    int64_t dim, bool grad, bool poison) {
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
  auto out = at::empty_like(x, x.options().memory_format(fmt));
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

}  // namespace insetgan_cpu
