// Launchers shared by ops_cuda.cpp (torch binding) and ops_cuda_kernels.cu (kernels).
// Plain C++ types only, so the kernels compile with nvcc without torch headers.
#pragma once
#include <cstdint>

namespace insetgan_cuda {

enum DType { kHalf = 0, kFloat = 1, kDouble = 2 };

struct UpFirDnArgs {
  int64_t B, Cin;          // rows: NCHW -> B = N*C, Cin = 1; NHWC -> B = N, Cin = C
  int64_t in_h, in_w, out_h, out_w;
  int upx, upy, downx, downy;
  int padx0, pady0;
  int fh, fw;              // taps: [fh, fw] row-major, flip and gain applied
};

struct BiasActArgs {
  int64_t numel;
  int64_t C;               // bias length (1 when there is no bias)
  int64_t bias_stride;     // elements between consecutive bias indices (1 for NHWC)
  int act;
  double alpha, gain, clamp;  // clamp < 0: none
  bool grad;
};

// taps: float for kHalf/kFloat, double for kDouble. stream: a cudaStream_t.
void upfirdn2d_launch(DType dtype, const void* x, void* y, const void* taps, const UpFirDnArgs& a, void* stream);
void bias_act_launch(DType dtype, const void* x, const void* b, const void* dy, void* out, const BiasActArgs& a,
                     void* stream);

}  // namespace insetgan_cuda
