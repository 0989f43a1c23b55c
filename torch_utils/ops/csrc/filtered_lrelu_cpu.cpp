// CPU kernel of filtered_lrelu (insetgan), bound to Python in ops_cpu.cpp. Float32 and float64.
//
// One call computes out = B(step(A(x + b))) plane by plane, where A and B are upfirdn passes
// along both axes (A never downsamples, B never upsamples) and `step` is pointwise:
//  - act (forward): v -> clamp(lrelu(v, slope) * gain, -clamp, clamp), recording a 2-bit code
//    per value in `mask` (0: v > 0, 1: v <= 0, 2: clamped), 4 codes per byte, rows padded to
//    whole bytes: mask is [N*C, mid_h, ceil(mid_w / 4)] uint8;
//  - mask (gradients): v -> v * factor[code] with factor = {gain, gain * slope, 0, 0}.
// Forward: A = the up-FIR, B = the down-FIR. dx = (down-FIR)^T, mask, (up-FIR)^T is the same
// call with the transposed passes; the double-backward product is the forward passes with
// the mask step. Intermediate rows are made once each, in order, and the last fh(B) of them
// are kept in a ring, so no plane is ever held whole at the intermediate rate.
//
// Row filters work on polyphase components so every multiply-add loop runs over contiguous
// memory: an upsampling FIR computes each output phase (o mod up) from the input row
// directly; a downsampling FIR first splits its zero-padded input row into `down` phases.
// Sums over taps or rows go 4 sources per pass over the output (weighted_sum).
#include "ops_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace insetgan_cpu {
namespace {

// out[k] = (accumulate ? out[k] : 0) + sum_j w[j] * src[j][k] for k < len, 4 sources per pass.
template <typename T>
void weighted_sum(T* __restrict__ out, const T* const* src, const T* w, int64_t n, int64_t len, bool accumulate) {
  int64_t j = 0;
  if (!accumulate) {
    const int64_t first = std::min<int64_t>(n, 4);
    const T* a = first > 0 ? src[0] : nullptr;
    const T* b = first > 1 ? src[1] : nullptr;
    const T* c = first > 2 ? src[2] : nullptr;
    const T* d = first > 3 ? src[3] : nullptr;
    switch (first) {
      case 0: std::fill(out, out + len, T(0)); return;
      case 1: for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k]; break;
      case 2: for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k] + w[1] * b[k]; break;
      case 3: for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k] + w[1] * b[k] + w[2] * c[k]; break;
      default:
        for (int64_t k = 0; k < len; ++k) out[k] = w[0] * a[k] + w[1] * b[k] + w[2] * c[k] + w[3] * d[k];
    }
    j = first;
  }
  for (; j + 4 <= n; j += 4) {
    const T *a = src[j], *b = src[j + 1], *c = src[j + 2], *d = src[j + 3];
    const T wa = w[j], wb = w[j + 1], wc = w[j + 2], wd = w[j + 3];
    for (int64_t k = 0; k < len; ++k) out[k] += wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k];
  }
  for (; j < n; ++j) {
    const T* a = src[j];
    const T wa = w[j];
    for (int64_t k = 0; k < len; ++k) out[k] += wa * a[k];
  }
}

// Geometry of a row FIR: out[o] = sum_t taps[t] * in_up[o * down + t - pad0], with in_up the
// input with up - 1 zeros after each sample (0 outside the row). Either up or down is 1.
struct RowFir {
  int64_t in_len, out_len, up, down, pad0, taps;

  // Downsampling (up == 1): the padded input m in [0, padded_len()) reads in[m - pad0]; split
  // into `down` phases of phase_len() values each: phase r, index i <-> m = i * down + r.
  int64_t padded_len() const { return (out_len - 1) * down + taps; }
  int64_t phase_len() const { return (padded_len() + down - 1) / down; }
  int64_t phases_size() const { return down * phase_len(); }
};

inline int64_t floor_div64(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Scratch of the row filters, one per thread.
template <typename T>
struct RowScratch {
  std::vector<T> padded;        // a zero-padded input row (upsampling)
  std::vector<T> phase;         // one output phase (upsampling)
  std::vector<const T*> src;    // sources and weights of weighted_sum
  std::vector<T> w;
};

// Upsampling FIR (down == 1): out (+)= FIR(in). Output phase q (o = q + k * up) uses the taps
// t = pad0 - q (mod up), each reading in[k + (q + t - pad0) / up].
template <typename T>
void up_fir(const T* in, const RowFir& g, const T* taps, T* out, bool accumulate, RowScratch<T>& s) {
  const int64_t lo = floor_div64(-g.pad0, g.up);                                // smallest input index read
  const int64_t hi = floor_div64(g.out_len + g.taps - 2 - g.pad0, g.up) + 1;    // one past the largest
  const T* row = in + lo;  // row[i - lo] = in[i]
  if (lo < 0 || hi > g.in_len) {
    s.padded.assign(hi - lo, T(0));
    const int64_t a = std::max<int64_t>(lo, 0), b = std::min<int64_t>(hi, g.in_len);
    if (a < b) std::copy(in + a, in + b, s.padded.begin() + (a - lo));
    row = s.padded.data();
  }
  for (int64_t q = 0; q < std::min(g.up, g.out_len); ++q) {
    const int64_t n_out = (g.out_len - q + g.up - 1) / g.up;
    s.src.clear();
    s.w.clear();
    for (int64_t t = ((g.pad0 - q) % g.up + g.up) % g.up; t < g.taps; t += g.up) {
      s.src.push_back(row + (q + t - g.pad0) / g.up - lo);
      s.w.push_back(taps[t]);
    }
    if (g.up == 1) {
      weighted_sum(out, s.src.data(), s.w.data(), s.src.size(), n_out, accumulate);
      continue;
    }
    s.phase.resize(n_out);
    weighted_sum(s.phase.data(), s.src.data(), s.w.data(), s.src.size(), n_out, false);
    T* o = out + q;
    if (accumulate) {
      for (int64_t k = 0; k < n_out; ++k) o[k * g.up] += s.phase[k];
    } else {
      for (int64_t k = 0; k < n_out; ++k) o[k * g.up] = s.phase[k];
    }
  }
}

// Downsampling FIR, step 1 (up == 1): the zero-padded input row split into phases. Phase r
// holds padded[i * down + r] = in[i * down + r - pad0] for i < phase_len() (0 outside the row).
template <typename T>
void to_phases(const T* in, const RowFir& g, T* phases) {
  const int64_t len = g.phase_len(), padded = g.padded_len();
  for (int64_t r = 0; r < g.down; ++r) {
    T* ph = phases + r * len;
    const int64_t s0 = r - g.pad0;  // input index of ph[0]
    // i in [i_lo, i_hi) reads inside the row and inside the padded length
    const int64_t i_lo = std::min(len, std::max<int64_t>(0, -floor_div64(s0, g.down)));
    const int64_t i_hi = std::max(i_lo, std::min({len, -floor_div64(s0 - g.in_len, g.down),
                                                  -floor_div64(r - padded, g.down)}));
    std::fill(ph, ph + i_lo, T(0));
    if (i_lo < i_hi) {
      const T* src = in + (s0 + i_lo * g.down);  // in[s0 + i * down] for i = i_lo
      if (g.down == 1) {
        std::copy(src, src + (i_hi - i_lo), ph + i_lo);
      } else {
        for (int64_t i = 0; i < i_hi - i_lo; ++i) ph[i_lo + i] = src[i * g.down];
      }
    }
    std::fill(ph + i_hi, ph + len, T(0));
  }
}

// Downsampling FIR, step 2: the sources of out[k] = sum_t taps[t] * padded[k * down + t] in the
// phases (appended to s.src / s.w, so several rows can be summed at once).
template <typename T>
void add_phase_sources(const T* phases, const RowFir& g, const T* taps, RowScratch<T>& s) {
  const int64_t len = g.phase_len();
  for (int64_t t = 0; t < g.taps; ++t) {
    s.src.push_back(phases + (t % g.down) * len + t / g.down);
    s.w.push_back(taps[t]);
  }
}

template <typename T>
struct FirPass {
  RowFir ax;                 // horizontal geometry
  AxisParams ay;             // vertical geometry
  const T* fy;               // separable taps: fy [fh], fx [fw] (f2d null) ...
  const T* fx;
  const T* f2d;              // ... or a full [fh, fw] filter (fy, fx null); flip and gain applied
  int64_t fh, fw;
};

struct Strides {
  int64_t n, c, h, w;        // element strides of an [N, C, H, W] tensor
};

enum FlreluStep { kStepAct = 0, kStepMask = 1 };

inline uint8_t mask_code(const uint8_t* packed, int64_t k) { return (packed[k >> 2] >> ((k & 3) * 2)) & 3; }

// Per-thread buffers, sized once per parallel chunk.
template <typename T>
struct FlreluWork {
  std::vector<T> plane;      // the input plane (+ bias), rows of ax.in_len values
  std::vector<T> tmp;        // vertical combination of input rows (separable A)
  std::vector<T> mid;        // one intermediate row
  std::vector<T> phases;     // one intermediate row split into B's phases
  std::vector<T> ring;       // the last fh(B) intermediate rows: after B's horizontal pass (separable) or as phases
  std::vector<T> row;        // one output row, when the output is not contiguous along W
  std::vector<uint8_t> codes;
  RowScratch<T> rs;
};

// Intermediate row j of pass A, from the input plane.
template <typename T>
void pass_a_row(const T* plane, int64_t j, const FirPass<T>& A, T* mid, FlreluWork<T>& w) {
  const int64_t in_w = A.ax.in_len;
  int64_t t, i;
  bool any = first_tap(A.ay, j, A.fh, &t, &i);
  if (A.f2d == nullptr) {
    w.rs.src.clear();
    w.rs.w.clear();
    for (; any && t < A.fh; t += A.ay.up, ++i) {
      if (i < 0) continue;
      if (i >= A.ay.in_len) break;
      w.rs.src.push_back(plane + i * in_w);
      w.rs.w.push_back(A.fy[t]);
    }
    if (w.rs.src.empty()) {
      std::fill(mid, mid + A.ax.out_len, T(0));
      return;
    }
    weighted_sum(w.tmp.data(), w.rs.src.data(), w.rs.w.data(), w.rs.src.size(), in_w, false);
    up_fir(w.tmp.data(), A.ax, A.fx, mid, false, w.rs);
  } else {
    std::fill(mid, mid + A.ax.out_len, T(0));
    for (; any && t < A.fh; t += A.ay.up, ++i) {
      if (i < 0) continue;
      if (i >= A.ay.in_len) break;
      up_fir(plane + i * in_w, A.ax, A.f2d + t * A.fw, mid, true, w.rs);
    }
  }
}

// v -> clamp(lrelu(v) * gain); codes[k] = 0 (v > 0), 1 (v <= 0) or 2 (clamped).
template <typename T, bool CLAMP>
void act_row(T* __restrict__ v, uint8_t* __restrict__ codes, int64_t len, T slope, T gain, T clamp) {
  for (int64_t k = 0; k < len; ++k) {
    const T u = v[k];
    // leaky ReLU written branch-free (exact: one of the two terms is 0)
    T a = (std::max(u, T(0)) + slope * std::min(u, T(0))) * gain;
    uint8_t code = u > T(0) ? 0 : 1;
    if (CLAMP) {
      code = std::abs(a) > clamp ? 2 : code;
      a = std::min(std::max(a, -clamp), clamp);
    }
    v[k] = a;
    codes[k] = code;
  }
}

inline void pack_codes(const uint8_t* __restrict__ codes, int64_t len, uint8_t* __restrict__ packed) {
  const int64_t full = len / 4;
  for (int64_t k = 0; k < full; ++k) {
    const uint8_t* c = codes + 4 * k;
    packed[k] = static_cast<uint8_t>(c[0] | (c[1] << 2) | (c[2] << 4) | (c[3] << 6));
  }
  if (full * 4 < len) {
    uint8_t byte = 0;
    for (int64_t q = 0; full * 4 + q < len; ++q) byte |= static_cast<uint8_t>(codes[full * 4 + q] << (2 * q));
    packed[full] = byte;
  }
}

inline void unpack_codes(const uint8_t* __restrict__ packed, int64_t len, uint8_t* __restrict__ codes) {
  const int64_t full = len / 4;
  for (int64_t k = 0; k < full; ++k) {
    const uint8_t byte = packed[k];
    uint8_t* c = codes + 4 * k;
    c[0] = byte & 3;
    c[1] = (byte >> 2) & 3;
    c[2] = (byte >> 4) & 3;
    c[3] = (byte >> 6) & 3;
  }
  for (int64_t k = full * 4; k < len; ++k) codes[k] = mask_code(packed, k);
}

// v *= gain (code 0), gain * slope (code 1) or 0 (clamped).
template <typename T>
void mask_row(T* __restrict__ v, const uint8_t* __restrict__ codes, int64_t len, T gain, T gain_slope) {
  for (int64_t k = 0; k < len; ++k) {
    const T f = codes[k] == 0 ? gain : (codes[k] == 1 ? gain_slope : T(0));
    v[k] *= f;
  }
}

struct FlreluStepParams {
  int step;                  // FlreluStep
  double gain, slope, clamp; // clamp < 0: none
};

// One plane: input plane `xp` (strides xs.h, xs.w), output plane `yp` (strides ys.h, ys.w),
// its mask rows `mask` ([mid_h, mask_w]).
template <typename T>
void flrelu_plane(const T* xp, Strides xs, T bias, T* yp, Strides ys, uint8_t* mask, int64_t mask_w,
                  const FirPass<T>& A, const FirPass<T>& B, const FlreluStepParams& sp, FlreluWork<T>& w) {
  const int64_t H = A.ay.in_len, W = A.ax.in_len;
  const int64_t mid_h = A.ay.out_len, mid_w = A.ax.out_len;
  const int64_t out_h = B.ay.out_len, out_w = B.ax.out_len;
  const bool separable_b = B.f2d == nullptr;
  const int64_t ring_w = separable_b ? out_w : B.ax.phases_size();
  const T gain = T(sp.gain), slope = T(sp.slope), clamp = T(sp.clamp);

  // Gather the input plane (any layout) into contiguous rows, bias added.
  for (int64_t i = 0; i < H; ++i) {
    const T* src = xp + i * xs.h;
    T* dst = w.plane.data() + i * W;
    if (xs.w == 1) {
      for (int64_t k = 0; k < W; ++k) dst[k] = src[k] + bias;
    } else {
      for (int64_t k = 0; k < W; ++k) dst[k] = src[k * xs.w] + bias;
    }
  }

  int64_t next_mid = 0;  // intermediate rows below this one are done (or not needed)
  for (int64_t o = 0; o < out_h; ++o) {
    const int64_t first = o * B.ay.down - B.ay.pad0;  // intermediate row of B's tap 0
    const int64_t lo = std::max<int64_t>(first, 0), hi = std::min<int64_t>(first + B.fh, mid_h);
    for (int64_t j = std::max(next_mid, lo); j < hi; ++j) {
      T* mid = w.mid.data();
      pass_a_row(w.plane.data(), j, A, mid, w);
      if (sp.step == kStepAct) {
        if (sp.clamp >= 0)
          act_row<T, true>(mid, w.codes.data(), mid_w, slope, gain, clamp);
        else
          act_row<T, false>(mid, w.codes.data(), mid_w, slope, gain, clamp);
        pack_codes(w.codes.data(), mid_w, mask + j * mask_w);
      } else {
        unpack_codes(mask + j * mask_w, mid_w, w.codes.data());
        mask_row(mid, w.codes.data(), mid_w, gain, gain * slope);
      }
      T* slot = w.ring.data() + (j % B.fh) * ring_w;
      if (separable_b) {
        to_phases(mid, B.ax, w.phases.data());
        w.rs.src.clear();
        w.rs.w.clear();
        add_phase_sources(w.phases.data(), B.ax, B.fx, w.rs);
        weighted_sum(slot, w.rs.src.data(), w.rs.w.data(), w.rs.src.size(), out_w, false);
      } else {
        to_phases(mid, B.ax, slot);
      }
    }
    next_mid = std::max(next_mid, hi);

    // Output row o: B's vertical taps over the ring rows (2-D: every tap of every row at once).
    T* out = ys.w == 1 ? yp + o * ys.h : w.row.data();
    w.rs.src.clear();
    w.rs.w.clear();
    for (int64_t t = 0; t < B.fh; ++t) {
      const int64_t j = first + t;
      if (j < 0 || j >= mid_h) continue;
      const T* slot = w.ring.data() + (j % B.fh) * ring_w;
      if (separable_b) {
        w.rs.src.push_back(slot);
        w.rs.w.push_back(B.fy[t]);
      } else {
        add_phase_sources(slot, B.ax, B.f2d + t * B.fw, w.rs);
      }
    }
    weighted_sum(out, w.rs.src.data(), w.rs.w.data(), w.rs.src.size(), out_w, false);
    if (ys.w != 1) {
      T* dst = yp + o * ys.h;
      for (int64_t k = 0; k < out_w; ++k) dst[k * ys.w] = out[k];
    }
  }
}

template <typename T>
void filtered_lrelu_kernel(const T* x, Strides xs, const T* b, T* y, Strides ys, uint8_t* mask, int64_t N, int64_t C,
                           const FirPass<T>& A, const FirPass<T>& B, const FlreluStepParams& sp) {
  const int64_t mid_h = A.ay.out_len, mid_w = A.ax.out_len, mask_w = (mid_w + 3) / 4;
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    FlreluWork<T> w;
    w.plane.resize(A.ay.in_len * A.ax.in_len);
    w.tmp.resize(A.ax.in_len);
    w.mid.resize(mid_w);
    w.phases.resize(B.ax.phases_size());
    w.ring.resize(B.fh * (B.f2d == nullptr ? B.ax.out_len : B.ax.phases_size()));
    w.row.resize(B.ax.out_len);
    w.codes.resize(mid_w);
    w.rs.src.reserve(B.fh * B.fw + A.fh + A.fw);
    w.rs.w.reserve(B.fh * B.fw + A.fh + A.fw);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / C, c = p % C;
      flrelu_plane(x + n * xs.n + c * xs.c, xs, b ? b[c] : T(0), y + n * ys.n + c * ys.c, ys,
                   mask + p * mid_h * mask_w, mask_w, A, B, sp, w);
    }
  });
}

Strides strides_of(const at::Tensor& t) { return Strides{t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

}  // namespace

// x: [N, C, H, W] in any layout; b: [C] or empty. Pass A: taps (fa_y, fa_x) or fa_2d, upsampling
// by `up` with padding (pad_ax0, pad_ay0) before, giving [mid_h, mid_w]; pass B: taps (fb_y, fb_x)
// or fb_2d, downsampling by `down` with padding (pad_bx0, pad_by0), giving [out_h, out_w]. Taps
// are used as given (a correlation; flip and gain applied by the caller). act: the activation
// step, returning [y, mask]; otherwise the mask step with the given mask, returning [y, mask].
// The output has the layout of x (channels_last stays channels_last).
std::vector<at::Tensor> filtered_lrelu(at::Tensor x, at::Tensor b, at::Tensor mask, at::Tensor fa_y, at::Tensor fa_x,
                                       at::Tensor fa_2d, int64_t up, int64_t pad_ax0, int64_t pad_ay0, at::Tensor fb_y,
                                       at::Tensor fb_x, at::Tensor fb_2d, int64_t down, int64_t pad_bx0,
                                       int64_t pad_by0, int64_t mid_h, int64_t mid_w, int64_t out_h, int64_t out_w,
                                       double gain, double slope, double clamp, bool act, bool poison) {
  TORCH_CHECK(x.device().is_cpu(), "filtered_lrelu (cpp): x must be a CPU tensor");
  TORCH_CHECK(x.dim() == 4, "filtered_lrelu (cpp): x must be 4-D");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "filtered_lrelu (cpp): float32 or float64 only");
  TORCH_CHECK(up >= 1 && down >= 1, "filtered_lrelu (cpp): bad scaling");
  TORCH_CHECK(mid_h >= 1 && mid_w >= 1 && out_h >= 1 && out_w >= 1, "filtered_lrelu (cpp): empty output");
  const bool sep_a = fa_2d.numel() == 0, sep_b = fb_2d.numel() == 0;
  const int64_t fa_h = sep_a ? fa_y.numel() : fa_2d.size(0), fa_w = sep_a ? fa_x.numel() : fa_2d.size(1);
  const int64_t fb_h = sep_b ? fb_y.numel() : fb_2d.size(0), fb_w = sep_b ? fb_x.numel() : fb_2d.size(1);
  TORCH_CHECK(std::max({fa_h, fa_w, fb_h, fb_w}) <= kMaxTaps && std::min({fa_h, fa_w, fb_h, fb_w}) >= 1,
              "filtered_lrelu (cpp): 1 to 64 taps per axis");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.numel() == C), "filtered_lrelu (cpp): b must have C elements");
  const int64_t mask_w = (mid_w + 3) / 4;
  if (act) {
    mask = at::zeros({N * C, mid_h, mask_w}, x.options().dtype(at::kByte));
  } else {
    TORCH_CHECK(mask.scalar_type() == at::kByte && mask.is_contiguous() && mask.dim() == 3 &&
                    mask.size(0) == N * C && mask.size(1) == mid_h && mask.size(2) == mask_w,
                "filtered_lrelu (cpp): mask does not match");
  }
  const bool nhwc = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  auto fmt = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto y = at::empty({N, C, out_h, out_w}, x.options().memory_format(fmt));
  if (poison) y.fill_(std::numeric_limits<double>::quiet_NaN());
  if (y.numel() == 0) return {y, mask};
  const FlreluStepParams sp{act ? kStepAct : kStepMask, gain, slope, clamp};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "filtered_lrelu_cpu", [&] {
    auto cast = [&](const at::Tensor& f) { return f.to(x.scalar_type()).contiguous(); };
    auto ay = cast(fa_y), ax = cast(fa_x), a2 = cast(fa_2d), by = cast(fb_y), bx = cast(fb_x), b2 = cast(fb_2d);
    auto bc = b.numel() ? cast(b) : b;
    FirPass<scalar_t> A{RowFir{W, mid_w, up, 1, pad_ax0, fa_w}, AxisParams{H, mid_h, up, 1, pad_ay0},
                        sep_a ? ay.data_ptr<scalar_t>() : nullptr, sep_a ? ax.data_ptr<scalar_t>() : nullptr,
                        sep_a ? nullptr : a2.data_ptr<scalar_t>(), fa_h, fa_w};
    FirPass<scalar_t> B{RowFir{mid_w, out_w, 1, down, pad_bx0, fb_w}, AxisParams{mid_h, out_h, 1, down, pad_by0},
                        sep_b ? by.data_ptr<scalar_t>() : nullptr, sep_b ? bx.data_ptr<scalar_t>() : nullptr,
                        sep_b ? nullptr : b2.data_ptr<scalar_t>(), fb_h, fb_w};
    filtered_lrelu_kernel<scalar_t>(x.data_ptr<scalar_t>(), strides_of(x),
                                    b.numel() ? bc.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(),
                                    strides_of(y), mask.data_ptr<uint8_t>(), N, C, A, B, sp);
  });
  return {y, mask};
}

}  // namespace insetgan_cpu
