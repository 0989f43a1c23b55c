// Torch binding of the CUDA kernels (insetgan): same Python signatures as ops_cpu.cpp.
#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d (CUDA)");
  m.def("bias_act", &bias_act, "bias + activation + gain + clamp and its gradient (CUDA)");
}
