// Shared by the CPU kernel files (insetgan): the ATen headers, the geometry of one axis of an
// upfirdn pass (upfirdn2d_cpu.cpp, filtered_lrelu_cpu.cpp) and the entry points that ops_cpu.cpp
// binds to Python. Float32 and float64.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <vector>

namespace insetgan_cpu {

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

constexpr int kMaxTaps = 64;  // filter taps per axis that the kernels take

// upfirdn2d_cpu.cpp
at::Tensor upfirdn2d(at::Tensor x, at::Tensor fy, at::Tensor fx, at::Tensor f2d, int64_t upx, int64_t upy,
                     int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                     bool poison);
// bias_act_cpu.cpp
at::Tensor bias_act(at::Tensor x, at::Tensor b, at::Tensor dy, int64_t act, double alpha, double gain, double clamp,
                    int64_t dim, bool grad, bool poison);
// filtered_lrelu_cpu.cpp
std::vector<at::Tensor> filtered_lrelu(at::Tensor x, at::Tensor b, at::Tensor mask, at::Tensor fa_y, at::Tensor fa_x,
                                       at::Tensor fa_2d, int64_t up, int64_t pad_ax0, int64_t pad_ay0, at::Tensor fb_y,
                                       at::Tensor fb_x, at::Tensor fb_2d, int64_t down, int64_t pad_bx0,
                                       int64_t pad_by0, int64_t mid_h, int64_t mid_w, int64_t out_h, int64_t out_w,
                                       double gain, double slope, double clamp, bool act, bool poison);

}  // namespace insetgan_cpu
