// Launchers shared by ops_cuda.cpp (torch binding) and the kernel files upfirdn2d_cuda.cu,
// bias_act_cuda.cu and filtered_lrelu_cuda.cu.
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

// filtered_lrelu: out = B(step(A(x + b))) per plane, as the CPU kernel (filtered_lrelu_cpu.cpp) computes it.
// Pass A upsamples by `up` (no downsampling), pass B downsamples by `down` (no upsampling). The
// step is the activation (act: clamp(lrelu(v, slope) * gain), writing 2-bit codes into mask:
// 0 v > 0, 1 v <= 0, 2 clamped; 4 per byte, rows of ceil(mid_w / 4) bytes) or the product with
// the factors {gain, gain * slope, 0} of the codes in mask (!act).
struct FilteredLReluArgs {
  int64_t N, C;
  int64_t in_h, in_w, mid_h, mid_w, out_h, out_w;
  int64_t in_sn, in_sc, in_sh, in_sw;     // element strides of x
  int64_t out_sn, out_sc, out_sh, out_sw; // element strides of the output
  int up, down;
  int pa_x0, pa_y0, pb_x0, pb_y0;         // padding before passes A and B (negative: crop)
  int fa_h, fa_w, fb_h, fb_w;             // taps [fh, fw] row-major (a correlation), flip and gain applied
  double gain, slope, clamp;              // clamp < 0: none
  bool act;
};

// taps: float for kHalf/kFloat, double for kDouble. stream: a cudaStream_t.
void upfirdn2d_launch(DType dtype, const void* x, void* y, const void* taps, const UpFirDnArgs& a, void* stream);
// b: [C] of the dtype or null; mid: [N*C, mid_h, mid_w] of the taps' type (scratch);
// mask: [N*C, mid_h, ceil(mid_w / 4)] bytes, written when a.act, read otherwise.
void filtered_lrelu_launch(DType dtype, const void* x, const void* b, const void* taps_a, const void* taps_b,
                           void* mid, uint8_t* mask, void* y, const FilteredLReluArgs& a, void* stream);
void bias_act_launch(DType dtype, const void* x, const void* b, const void* dy, void* out, const BiasActArgs& a,
                     void* stream);

}  // namespace insetgan_cuda
