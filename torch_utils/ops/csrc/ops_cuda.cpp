// Torch binding of the CUDA kernels (insetgan): the same Python signatures as the CPU plugin (ops_cpu.h).
#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>
#include <vector>

#include "ops_cuda.h"

namespace {

insetgan_cuda::DType dtype_of(const torch::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kHalf: return insetgan_cuda::kHalf;
    case at::kFloat: return insetgan_cuda::kFloat;
    case at::kDouble: return insetgan_cuda::kDouble;
    default: TORCH_CHECK(false, "cuda ops: float16, float32 or float64 only");
  }
  return insetgan_cuda::kFloat;
}

at::MemoryFormat layout_of(const torch::Tensor& x) {
  const bool nhwc = x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  return nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor fy, torch::Tensor fx, torch::Tensor f2d, int64_t upx,
                        int64_t upy, int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                        int64_t pady1, bool poison) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "upfirdn2d (cuda): x must be a 4-D CUDA tensor");
  const c10::cuda::CUDAGuard guard(x.device());
  auto fmt = layout_of(x);
  x = x.contiguous(fmt);
  const auto tap_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  torch::Tensor taps = f2d.numel() ? f2d : torch::outer(fy, fx);
  taps = taps.to(x.device(), tap_type).contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t fh = taps.size(0), fw = taps.size(1);
  const int64_t outH = (H * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t outW = (W * upx + padx0 + padx1 - fw) / downx + 1;
  TORCH_CHECK(H * upy + pady0 + pady1 >= fh && W * upx + padx0 + padx1 >= fw && outH >= 1 && outW >= 1,
              "upfirdn2d (cuda): output would be empty");
  auto y = torch::empty({N, C, outH, outW}, x.options().memory_format(fmt));
  if (poison) y.fill_(std::numeric_limits<double>::quiet_NaN());
  const bool nhwc = fmt == at::MemoryFormat::ChannelsLast;
  insetgan_cuda::UpFirDnArgs a{nhwc ? N : N * C, nhwc ? C : 1, H, W, outH, outW,
                               static_cast<int>(upx), static_cast<int>(upy), static_cast<int>(downx),
                               static_cast<int>(downy), static_cast<int>(padx0), static_cast<int>(pady0),
                               static_cast<int>(fh), static_cast<int>(fw)};
  if (y.numel() > 0)
    insetgan_cuda::upfirdn2d_launch(dtype_of(x), x.data_ptr(), y.data_ptr(), taps.data_ptr(), a,
                                    c10::cuda::getCurrentCUDAStream().stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor dy, int64_t act, double alpha, double gain,
                       double clamp, int64_t dim, bool grad, bool poison) {
  TORCH_CHECK(x.is_cuda(), "bias_act (cuda): x must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(x.device());
  auto fmt = (x.dim() == 4 && dim == 1) ? layout_of(x) : at::MemoryFormat::Contiguous;
  x = x.contiguous(fmt);
  if (grad) {
    TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type(), "bias_act (cuda): dy mismatch");
    dy = dy.contiguous(fmt);
  }
  const bool has_b = b.numel() > 0;
  int64_t C = 1, stride = 1;
  if (has_b) {
    C = x.size(dim);
    TORCH_CHECK(b.dim() == 1 && b.numel() == C, "bias_act (cuda): bias must have x.shape[dim] elements");
    b = b.to(x.scalar_type()).contiguous();
    if (fmt != at::MemoryFormat::ChannelsLast)
      for (int64_t i = dim + 1; i < x.dim(); ++i) stride *= x.size(i);
  }
  auto out = torch::empty_like(x, x.options().memory_format(fmt));
  if (poison) out.fill_(std::numeric_limits<double>::quiet_NaN());
  insetgan_cuda::BiasActArgs a{x.numel(), C, stride, static_cast<int>(act), alpha, gain, clamp, grad};
  if (x.numel() > 0)
    insetgan_cuda::bias_act_launch(dtype_of(x), x.data_ptr(), has_b ? b.data_ptr() : nullptr,
                                   grad ? dy.data_ptr() : nullptr, out.data_ptr(), a,
                                   c10::cuda::getCurrentCUDAStream().stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// Same arguments and results as filtered_lrelu in filtered_lrelu_cpu.cpp.
std::vector<torch::Tensor> filtered_lrelu(torch::Tensor x, torch::Tensor b, torch::Tensor mask, torch::Tensor fa_y,
                                          torch::Tensor fa_x, torch::Tensor fa_2d, int64_t up, int64_t pad_ax0,
                                          int64_t pad_ay0, torch::Tensor fb_y, torch::Tensor fb_x, torch::Tensor fb_2d,
                                          int64_t down, int64_t pad_bx0, int64_t pad_by0, int64_t mid_h, int64_t mid_w,
                                          int64_t out_h, int64_t out_w, double gain, double slope, double clamp,
                                          bool act, bool poison) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "filtered_lrelu (cuda): x must be a 4-D CUDA tensor");
  TORCH_CHECK(up >= 1 && down >= 1, "filtered_lrelu (cuda): bad scaling");
  TORCH_CHECK(mid_h >= 1 && mid_w >= 1 && out_h >= 1 && out_w >= 1, "filtered_lrelu (cuda): empty output");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto tap_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto taps_of = [&](const torch::Tensor& fy, const torch::Tensor& fx, const torch::Tensor& f2d) {
    torch::Tensor taps = f2d.numel() ? f2d : torch::outer(fy, fx);
    return taps.to(x.device(), tap_type).contiguous();
  };
  auto taps_a = taps_of(fa_y, fa_x, fa_2d), taps_b = taps_of(fb_y, fb_x, fb_2d);
  const int64_t N = x.size(0), C = x.size(1);
  TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.numel() == C), "filtered_lrelu (cuda): b must have C elements");
  if (b.numel()) b = b.to(x.device(), x.scalar_type()).contiguous();
  const int64_t mask_w = (mid_w + 3) / 4;
  if (act) {
    mask = torch::zeros({N * C, mid_h, mask_w}, x.options().dtype(at::kByte));
  } else {
    TORCH_CHECK(mask.is_cuda() && mask.scalar_type() == at::kByte && mask.is_contiguous() && mask.dim() == 3 &&
                    mask.size(0) == N * C && mask.size(1) == mid_h && mask.size(2) == mask_w,
                "filtered_lrelu (cuda): mask does not match");
  }
  auto mid = torch::empty({N * C, mid_h, mid_w}, x.options().dtype(tap_type));
  auto y = torch::empty({N, C, out_h, out_w}, x.options().memory_format(layout_of(x)));
  if (poison) {
    y.fill_(std::numeric_limits<double>::quiet_NaN());
    mid.fill_(std::numeric_limits<double>::quiet_NaN());
  }
  insetgan_cuda::FilteredLReluArgs a{
      N, C, x.size(2), x.size(3), mid_h, mid_w, out_h, out_w,
      x.stride(0), x.stride(1), x.stride(2), x.stride(3), y.stride(0), y.stride(1), y.stride(2), y.stride(3),
      static_cast<int>(up), static_cast<int>(down), static_cast<int>(pad_ax0), static_cast<int>(pad_ay0),
      static_cast<int>(pad_bx0), static_cast<int>(pad_by0),
      static_cast<int>(taps_a.size(0)), static_cast<int>(taps_a.size(1)),
      static_cast<int>(taps_b.size(0)), static_cast<int>(taps_b.size(1)),
      gain, slope, clamp, act};
  if (y.numel() > 0)
    insetgan_cuda::filtered_lrelu_launch(dtype_of(x), x.data_ptr(), b.numel() ? b.data_ptr() : nullptr,
                                         taps_a.data_ptr(), taps_b.data_ptr(), mid.data_ptr(),
                                         mask.data_ptr<uint8_t>(), y.data_ptr(), a,
                                         c10::cuda::getCurrentCUDAStream().stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {y, mask};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d (CUDA)");
  m.def("bias_act", &bias_act, "bias + activation + gain + clamp and its gradient (CUDA)");
  m.def("filtered_lrelu", &filtered_lrelu, "bias, up-FIR, leaky ReLU, clamp, down-FIR and its gradient passes (CUDA)");
}
