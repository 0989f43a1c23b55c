// The CPU plugin of the ops (insetgan): binds the kernels of upfirdn2d_cpu.cpp, bias_act_cpu.cpp
// and filtered_lrelu_cpu.cpp to Python. Float32 and float64.
#include <torch/extension.h>

#include "ops_cpu.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &insetgan_cpu::upfirdn2d, "upfirdn2d (CPU)");
  m.def("bias_act", &insetgan_cpu::bias_act, "bias + activation + gain + clamp and its gradient (CPU)");
  m.def("filtered_lrelu", &insetgan_cpu::filtered_lrelu,
        "bias, up-FIR, leaky ReLU, clamp, down-FIR and its gradient passes (CPU)");
}
