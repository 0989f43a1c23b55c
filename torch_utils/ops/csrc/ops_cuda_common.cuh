// Device helpers shared by the CUDA kernel files (insetgan): accumulation types, float16
// loads/stores, floor division and the grid size of grid-stride loops.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace insetgan_cuda {

// Accumulation type: float16 values are computed in float32.
template <typename T> struct Acc { using type = T; };
template <> struct Acc<__half> { using type = float; };

template <typename T> __device__ __forceinline__ typename Acc<T>::type load(const T* p) { return *p; }
template <> __device__ __forceinline__ float load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> __device__ __forceinline__ void store(T* p, typename Acc<T>::type v) { *p = v; }
template <> __device__ __forceinline__ void store<__half>(__half* p, float v) { *p = __float2half_rn(v); }

__device__ __forceinline__ int floor_div(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }

// Blocks for a grid-stride loop over `total` items.
inline int grid_for(int64_t total, int threads) {
  int64_t blocks = (total + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace insetgan_cuda
