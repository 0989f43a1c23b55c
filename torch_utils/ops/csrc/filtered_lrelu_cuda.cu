// CUDA kernels of filtered_lrelu (insetgan): float16 (computed in float32), float32, float64. Bound to torch in
// ops_cuda.cpp.
//
// Straightforward and correct rather than fast: pass A (up-FIR of x + b, then the pointwise
// step) writes the whole intermediate map of the batch into a scratch buffer, one thread per
// mask byte (4 neighbouring values, so the packed codes need no atomics); pass B (down-FIR)
// reads it, one thread per output value. Both visit only the taps that meet real samples.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ops_cuda.h"
#include "ops_cuda_common.cuh"

namespace insetgan_cuda {
namespace {

template <typename T>
__global__ void flrelu_pass_a(const T* __restrict__ x, const T* __restrict__ b,
                              const typename Acc<T>::type* __restrict__ taps, typename Acc<T>::type* __restrict__ mid,
                              uint8_t* __restrict__ mask, FilteredLReluArgs a, int64_t total) {
  using A = typename Acc<T>::type;
  const int64_t mask_w = (a.mid_w + 3) / 4;
  const A gain = A(a.gain), slope = A(a.slope), clamp = A(a.clamp);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t kb = i % mask_w;
    const int64_t row = i / mask_w;          // plane * mid_h + j
    const int j = static_cast<int>(row % a.mid_h);
    const int64_t plane = row / a.mid_h;
    const int64_t n = plane / a.C, c = plane % a.C;
    const T* xp = x + n * a.in_sn + c * a.in_sc;
    const A bias = b != nullptr ? load(b + c) : A(0);
    const int jy = j - a.pa_y0;              // upsampled row of tap 0
    const int ty0 = ((-jy) % a.up + a.up) % a.up;
    uint8_t byte = a.act ? 0 : mask[i];
    for (int q = 0; q < 4; ++q) {
      const int64_t col = kb * 4 + q;
      if (col >= a.mid_w) break;
      const int jx = static_cast<int>(col) - a.pa_x0;
      const int tx0 = ((-jx) % a.up + a.up) % a.up;
      A acc = A(0);
      for (int ty = ty0; ty < a.fa_h; ty += a.up) {
        const int iy = floor_div(jy + ty, a.up);
        if (iy < 0) continue;
        if (iy >= a.in_h) break;
        for (int tx = tx0; tx < a.fa_w; tx += a.up) {
          const int ix = floor_div(jx + tx, a.up);
          if (ix < 0) continue;
          if (ix >= a.in_w) break;
          acc += taps[ty * a.fa_w + tx] * (load(xp + iy * a.in_sh + ix * a.in_sw) + bias);
        }
      }
      if (a.act) {
        A v = (acc > A(0) ? acc : acc * slope) * gain;
        unsigned code = acc > A(0) ? 0u : 1u;
        if (a.clamp >= 0 && (v > clamp || v < -clamp)) {
          code = 2u;
          v = v > clamp ? clamp : -clamp;
        }
        byte |= static_cast<uint8_t>(code << (2 * q));
        acc = v;
      } else {
        const unsigned code = (byte >> (2 * q)) & 3u;
        acc *= code == 0u ? gain : (code == 1u ? gain * slope : A(0));
      }
      mid[row * a.mid_w + col] = acc;
    }
    if (a.act) mask[i] = byte;
  }
}

template <typename T>
__global__ void flrelu_pass_b(const typename Acc<T>::type* __restrict__ mid,
                              const typename Acc<T>::type* __restrict__ taps, T* __restrict__ y, FilteredLReluArgs a,
                              int64_t total) {
  using A = typename Acc<T>::type;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int ox = static_cast<int>(i % a.out_w);
    const int oy = static_cast<int>((i / a.out_w) % a.out_h);
    const int64_t plane = i / (a.out_w * a.out_h);
    const int64_t n = plane / a.C, c = plane % a.C;
    const A* mp = mid + plane * a.mid_h * a.mid_w;
    const int jy = oy * a.down - a.pb_y0, jx = ox * a.down - a.pb_x0;  // intermediate row/column of tap 0
    A acc = A(0);
    for (int ty = 0; ty < a.fb_h; ++ty) {
      const int iy = jy + ty;
      if (iy < 0) continue;
      if (iy >= a.mid_h) break;
      for (int tx = 0; tx < a.fb_w; ++tx) {
        const int ix = jx + tx;
        if (ix < 0) continue;
        if (ix >= a.mid_w) break;
        acc += taps[ty * a.fb_w + tx] * mp[static_cast<int64_t>(iy) * a.mid_w + ix];
      }
    }
    store(y + n * a.out_sn + c * a.out_sc + oy * a.out_sh + ox * a.out_sw, acc);
  }
}

template <typename T>
void filtered_lrelu_typed(const void* x, const void* b, const void* taps_a, const void* taps_b, void* mid,
                          uint8_t* mask, void* y, const FilteredLReluArgs& a, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  const int threads = 256;
  const int64_t total_a = a.N * a.C * a.mid_h * ((a.mid_w + 3) / 4);
  const int64_t total_b = a.N * a.C * a.out_h * a.out_w;
  flrelu_pass_a<T><<<grid_for(total_a, threads), threads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(b), static_cast<const A*>(taps_a), static_cast<A*>(mid), mask,
      a, total_a);
  flrelu_pass_b<T><<<grid_for(total_b, threads), threads, 0, stream>>>(
      static_cast<const A*>(mid), static_cast<const A*>(taps_b), static_cast<T*>(y), a, total_b);
}

}  // namespace

void filtered_lrelu_launch(DType dtype, const void* x, const void* b, const void* taps_a, const void* taps_b,
                           void* mid, uint8_t* mask, void* y, const FilteredLReluArgs& a, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kHalf: filtered_lrelu_typed<__half>(x, b, taps_a, taps_b, mid, mask, y, a, s); break;
    case kFloat: filtered_lrelu_typed<float>(x, b, taps_a, taps_b, mid, mask, y, a, s); break;
    case kDouble: filtered_lrelu_typed<double>(x, b, taps_a, taps_b, mid, mask, y, a, s); break;
  }
}

}  // namespace insetgan_cuda
