// CUDA kernel of bias_act (insetgan): float16, float32, float64. Bound to torch in ops_cuda.cpp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "ops_cuda.h"
#include "ops_cuda_common.cuh"

namespace insetgan_cuda {
namespace {

enum Act { LINEAR = 0, RELU, LRELU, TANH, SIGMOID, ELU, SELU, SOFTPLUS, SWISH };

template <typename A>
__device__ __forceinline__ void act_value_and_grad(int act, A v, A alpha, A* y, A* g) {
  const A selu_scale = A(1.0507009873554805), selu_alpha = A(1.6732632423543772);
  switch (act) {
    case RELU: *y = v > A(0) ? v : A(0); *g = v > A(0) ? A(1) : A(0); break;
    case LRELU: *y = v > A(0) ? v : v * alpha; *g = v > A(0) ? A(1) : alpha; break;
    case TANH: { A t = tanh(v); *y = t; *g = A(1) - t * t; break; }
    case SIGMOID: { A s = A(1) / (A(1) + exp(-v)); *y = s; *g = s * (A(1) - s); break; }
    case ELU: *y = v > A(0) ? v : expm1(v); *g = v > A(0) ? A(1) : exp(v); break;
    case SELU:
      *y = v > A(0) ? selu_scale * v : selu_scale * selu_alpha * expm1(v);
      *g = v > A(0) ? selu_scale : selu_scale * selu_alpha * exp(v);
      break;
    case SOFTPLUS: *y = v > A(20) ? v : log1p(exp(v)); *g = v > A(20) ? A(1) : A(1) / (A(1) + exp(-v)); break;
    case SWISH: { A s = A(1) / (A(1) + exp(-v)); *y = v * s; *g = s + v * s * (A(1) - s); break; }
    default: *y = v; *g = A(1); break;
  }
}

template <typename T>
__global__ void bias_act_kernel(const T* __restrict__ x, const T* __restrict__ b, const T* __restrict__ dy,
                                T* __restrict__ out, BiasActArgs a) {
  using A = typename Acc<T>::type;
  const A alpha = A(a.alpha), gain = A(a.gain), clamp = A(a.clamp);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.numel;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    A v = load(x + i);
    if (b != nullptr) v += load(b + (i / a.bias_stride) % a.C);
    A y, g;
    act_value_and_grad<A>(a.act, v, alpha, &y, &g);
    y *= gain;
    if (!a.grad) {
      if (a.clamp >= 0) y = y < -clamp ? -clamp : (y > clamp ? clamp : y);
      store(out + i, y);
    } else {
      A d = load(dy + i) * g * gain;
      if (a.clamp >= 0 && (y < -clamp || y > clamp)) d = A(0);
      store(out + i, d);
    }
  }
}

template <typename T>
void bias_act_typed(const void* x, const void* b, const void* dy, void* out, const BiasActArgs& a,
                    cudaStream_t stream) {
  const int threads = 256;
  bias_act_kernel<T><<<grid_for(a.numel, threads), threads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(b), static_cast<const T*>(dy), static_cast<T*>(out), a);
}

}  // namespace

void bias_act_launch(DType dtype, const void* x, const void* b, const void* dy, void* out, const BiasActArgs& a,
                     void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kHalf: bias_act_typed<__half>(x, b, dy, out, a, s); break;
    case kFloat: bias_act_typed<float>(x, b, dy, out, a, s); break;
    case kDouble: bias_act_typed<double>(x, b, dy, out, a, s); break;
  }
}

}  // namespace insetgan_cuda
