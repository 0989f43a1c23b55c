// CUDA kernels of upfirdn2d (insetgan): float16, float32, float64. Bound to torch in ops_cuda.cpp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "ops_cuda.h"
#include "ops_cuda_common.cuh"

namespace insetgan_cuda {
namespace {

// Decompose a linear output index into (row b, oy, ox, channel c) for the two layouts.
__device__ __forceinline__ void decompose(int64_t i, const UpFirDnArgs& a, int64_t* b, int* oy, int* ox, int64_t* c) {
  *c = i % a.Cin;
  i /= a.Cin;
  *ox = static_cast<int>(i % a.out_w);
  i /= a.out_w;
  *oy = static_cast<int>(i % a.out_h);
  *b = i / a.out_h;
}

// Generic kernel: one thread per output element, visiting only taps that meet a real sample.
template <typename T>
__global__ void upfirdn2d_generic(const T* __restrict__ x, T* __restrict__ y,
                                  const typename Acc<T>::type* __restrict__ taps, UpFirDnArgs a, int64_t total) {
  using A = typename Acc<T>::type;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int64_t b, c;
    int oy, ox;
    decompose(i, a, &b, &oy, &ox, &c);
    // Upsampled coordinate of tap 0; first tap whose coordinate is a multiple of up.
    const int jy = oy * a.downy - a.pady0, jx = ox * a.downx - a.padx0;
    const int ty0 = ((-jy) % a.upy + a.upy) % a.upy, tx0 = ((-jx) % a.upx + a.upx) % a.upx;
    A acc = A(0);
    for (int ty = ty0; ty < a.fh; ty += a.upy) {
      const int iy = floor_div(jy + ty, a.upy);
      if (iy < 0) continue;
      if (iy >= a.in_h) break;
      const T* xrow = x + ((b * a.in_h + iy) * a.in_w) * a.Cin + c;
      for (int tx = tx0; tx < a.fw; tx += a.upx) {
        const int ix = floor_div(jx + tx, a.upx);
        if (ix < 0) continue;
        if (ix >= a.in_w) break;
        acc += taps[ty * a.fw + tx] * load(xrow + static_cast<int64_t>(ix) * a.Cin);
      }
    }
    store(y + i, acc);
  }
}

// Specialised kernel for the common case: square K x K taps, the same factor on both axes,
// compile-time UP/DOWN/K so every tap loop unrolls; taps staged in shared memory.
template <typename T, int UP, int DOWN, int K>
__global__ void upfirdn2d_fixed(const T* __restrict__ x, T* __restrict__ y,
                                const typename Acc<T>::type* __restrict__ taps, UpFirDnArgs a, int64_t total) {
  using A = typename Acc<T>::type;
  __shared__ A f[K * K];
  for (int k = threadIdx.x; k < K * K; k += blockDim.x) f[k] = taps[k];
  __syncthreads();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int64_t b, c;
    int oy, ox;
    decompose(i, a, &b, &oy, &ox, &c);
    const int jy = oy * DOWN - a.pady0, jx = ox * DOWN - a.padx0;
    const int ty0 = ((-jy) % UP + UP) % UP, tx0 = ((-jx) % UP + UP) % UP;
    A acc = A(0);
#pragma unroll
    for (int q = 0; q < (K + UP - 1) / UP; ++q) {
      const int ty = ty0 + q * UP;
      const int iy = floor_div(jy + ty, UP);
      if (ty >= K || iy < 0 || iy >= a.in_h) continue;
      const T* xrow = x + ((b * a.in_h + iy) * a.in_w) * a.Cin + c;
#pragma unroll
      for (int r = 0; r < (K + UP - 1) / UP; ++r) {
        const int tx = tx0 + r * UP;
        const int ix = floor_div(jx + tx, UP);
        if (tx >= K || ix < 0 || ix >= a.in_w) continue;
        acc += f[ty * K + tx] * load(xrow + static_cast<int64_t>(ix) * a.Cin);
      }
    }
    store(y + i, acc);
  }
}

template <typename T>
void upfirdn2d_typed(const void* x, void* y, const void* taps, const UpFirDnArgs& a, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  const int64_t total = a.B * a.out_h * a.out_w * a.Cin;
  const int threads = 256;
  const int grid = grid_for(total, threads);
  const T* xp = static_cast<const T*>(x);
  T* yp = static_cast<T*>(y);
  const A* tp = static_cast<const A*>(taps);
  const bool square4 = a.fh == 4 && a.fw == 4 && a.upx == a.upy && a.downx == a.downy;
  if (square4 && a.upx == 2 && a.downx == 1) {
    upfirdn2d_fixed<T, 2, 1, 4><<<grid, threads, 0, stream>>>(xp, yp, tp, a, total);
  } else if (square4 && a.upx == 1 && a.downx == 2) {
    upfirdn2d_fixed<T, 1, 2, 4><<<grid, threads, 0, stream>>>(xp, yp, tp, a, total);
  } else if (square4 && a.upx == 1 && a.downx == 1) {
    upfirdn2d_fixed<T, 1, 1, 4><<<grid, threads, 0, stream>>>(xp, yp, tp, a, total);
  } else {
    upfirdn2d_generic<T><<<grid, threads, 0, stream>>>(xp, yp, tp, a, total);
  }
}

}  // namespace

void upfirdn2d_launch(DType dtype, const void* x, void* y, const void* taps, const UpFirDnArgs& a, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kHalf: upfirdn2d_typed<__half>(x, y, taps, a, s); break;
    case kFloat: upfirdn2d_typed<float>(x, y, taps, a, s); break;
    case kDouble: upfirdn2d_typed<double>(x, y, taps, a, s); break;
  }
}

}  // namespace insetgan_cuda
