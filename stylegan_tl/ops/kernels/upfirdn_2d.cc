// Op StyleganTlUpfirdn2d: registration, shape function, multi-threaded CPU kernel (float, half)
// and, in CUDA builds (GOOGLE_CUDA=1), the GPU kernel registration (launcher in upfirdn_2d.cu).
#include <algorithm>
#include <numeric>
#include <type_traits>
#include <vector>

#include "tf_kernel.h"
#include "upfirdn_2d.h"

// Compile the hot loops for AVX-512, AVX2 and the baseline; the loader picks by CPU feature at
// run time (feature names, not "arch=" names, which only match one exact CPU model).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SGTL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SGTL_CLONES
#endif

namespace stylegan_tl {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

struct UpFirDnAttrs {
  int upx, upy, downx, downy, padx0, padx1, pady0, pady1;
};

template <typename Context>
absl::Status ReadAttrs(Context* c, UpFirDnAttrs* a) {
  const char* names[] = {"upx", "upy", "downx", "downy", "padx0", "padx1", "pady0", "pady1"};
  int* fields[] = {&a->upx, &a->upy, &a->downx, &a->downy,
                   &a->padx0, &a->padx1, &a->pady0, &a->pady1};
  for (int i = 0; i < 8; ++i) TF_RETURN_IF_ERROR(c->GetAttr(names[i], fields[i]));
  if (std::min({a->upx, a->upy, a->downx, a->downy}) < 1)
    return absl::InvalidArgumentError("StyleganTlUpfirdn2d: up/down factors must be >= 1");
  return absl::OkStatus();
}

absl::Status UpFirDn2DShape(InferenceContext* c) {
  UpFirDnAttrs a;
  TF_RETURN_IF_ERROR(ReadAttrs(c, &a));
  ShapeHandle x, k;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &k));
  auto out_dim = [&](DimensionHandle in, DimensionHandle taps, int up, int down, int p0, int p1,
                     DimensionHandle* out) -> absl::Status {
    if (!c->ValueKnown(in) || !c->ValueKnown(taps)) {
      *out = c->UnknownDim();
      return absl::OkStatus();
    }
    if (c->Value(in) * up + p0 + p1 < c->Value(taps))
      return absl::InvalidArgumentError(
          "StyleganTlUpfirdn2d: upsampled and padded input is smaller than the kernel");
    *out = c->MakeDim(upfirdn_out_size(c->Value(in), up, down, p0, p1, c->Value(taps)));
    return absl::OkStatus();
  };
  DimensionHandle h, w;
  TF_RETURN_IF_ERROR(out_dim(c->Dim(x, 1), c->Dim(k, 0), a.upy, a.downy, a.pady0, a.pady1, &h));
  TF_RETURN_IF_ERROR(out_dim(c->Dim(x, 2), c->Dim(k, 1), a.upx, a.downx, a.padx0, a.padx1, &w));
  c->set_output(0, c->MakeShape({c->Dim(x, 0), h, w, c->Dim(x, 3)}));
  return absl::OkStatus();
}

REGISTER_OP("StyleganTlUpfirdn2d")
    .Input("x: T")
    .Input("k: float")
    .Output("y: T")
    .Attr("T: {float, half}")
    .Attr("upx: int = 1")
    .Attr("upy: int = 1")
    .Attr("downx: int = 1")
    .Attr("downy: int = 1")
    .Attr("padx0: int = 0")
    .Attr("padx1: int = 0")
    .Attr("pady0: int = 0")
    .Attr("pady1: int = 0")
    .SetShapeFn(UpFirDn2DShape)
    .Doc(R"doc(
Upsample x[major, inH, inW, minor] by inserting up-1 zeros after each pixel, pad by (pad0, pad1)
(negative crops), convolve with the 2-D kernel k (true convolution, VALID) and keep every
down-th pixel. Output [major, (inH*upy + pady0 + pady1 - kH) // downy + 1, ..., minor].
)doc");

// Average number of kernel taps that meet real input samples, per output value.
int64_t TapsPerOutput(const UpFirDn2DParams& p) {
  return std::max<int64_t>(1, int64_t(p.kernel_h) * p.kernel_w / (int64_t(p.upx) * p.upy));
}

// Taps of one flipped horizontal kernel column `a`: output columns ox0 + t*sx read input columns
// ix0 + t*dx, for t in [0, count).
struct TapRun {
  int64_t ox0, sx, ix0, dx, count;
};

TapRun HorizontalRun(const UpFirDn2DParams& p, int a) {
  TapRun r{0, 0, 0, 0, 0};
  const int g = std::gcd(p.downx, p.upx);
  r.sx = p.upx / g;
  r.dx = p.downx / g;
  int64_t ox0 = 0;  // first output column whose tap `a` lands on a real (non-inserted) sample
  while (ox0 < r.sx && ((ox0 * p.downx + a - p.padx0) % p.upx + p.upx) % p.upx != 0) ++ox0;
  if (ox0 == r.sx) return r;  // this tap only ever meets inserted zeros
  const int64_t ix0 = (ox0 * p.downx + a - p.padx0) / p.upx;  // exact, may be negative
  const int64_t t_lo = ix0 < 0 ? (-ix0 + r.dx - 1) / r.dx : 0;
  if (p.in_w - 1 - ix0 < 0 || p.out_w - 1 - ox0 < 0) return r;
  const int64_t t_hi = std::min((p.in_w - 1 - ix0) / r.dx, (p.out_w - 1 - ox0) / r.sx);
  if (t_hi < t_lo) return r;
  r.ox0 = ox0 + t_lo * r.sx;
  r.ix0 = ix0 + t_lo * r.dx;
  r.count = t_hi - t_lo + 1;
  return r;
}

// out[t*os] += w * in[t*is] for t < count, with the common unit/2 strides spelled out so the
// compiler vectorizes them.
SGTL_CLONES void AxpyStrided(float* out, int64_t os, const float* in, int64_t is, int64_t count,
                             float w) {
  if (os == 1 && is == 1) {
    for (int64_t t = 0; t < count; ++t) out[t] += w * in[t];
  } else if (os == 2 && is == 1) {
    for (int64_t t = 0; t < count; ++t) out[2 * t] += w * in[t];
  } else if (os == 1 && is == 2) {
    for (int64_t t = 0; t < count; ++t) out[t] += w * in[2 * t];
  } else {
    for (int64_t t = 0; t < count; ++t) out[t * os] += w * in[t * is];
  }
}

// Same on blocks of `minor` contiguous values (channels-last layout).
SGTL_CLONES void AxpyBlocks(float* out, int64_t os, const float* in, int64_t is, int64_t count,
                            int64_t minor, float w) {
  for (int64_t t = 0; t < count; ++t) {
    float* o = out + t * os;
    const float* s = in + t * is;
    for (int64_t c = 0; c < minor; ++c) o[c] += w * s[c];
  }
}

// One output pixel of `minor` channels: out[c] = sum_t w[t] * src[t][c]. Channels are processed
// in chunks of kVecs 8-float vectors held in registers (several independent FMA chains), so each
// output value is written once. GCC vector types keep the accumulators in registers; the
// aligned(4) variant allows unaligned loads and stores.
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec8u __attribute__((vector_size(32), aligned(4), may_alias));
constexpr int kMinChunk = 16;

template <int kVecs>
__attribute__((always_inline)) inline int64_t DotTapsChunks(float* out, const float* const* src,
                                                            const float* w, int taps,
                                                            int64_t c0, int64_t minor) {
  for (; c0 + 8 * kVecs <= minor; c0 += 8 * kVecs) {
    Vec8 acc[kVecs];
    for (int i = 0; i < kVecs; ++i) acc[i] = Vec8{};
    for (int t = 0; t < taps; ++t) {
      const Vec8u* s = reinterpret_cast<const Vec8u*>(src[t] + c0);
      const Vec8 wt = Vec8{} + w[t];
      for (int i = 0; i < kVecs; ++i) acc[i] += wt * s[i];
    }
    Vec8u* o = reinterpret_cast<Vec8u*>(out + c0);
    for (int i = 0; i < kVecs; ++i) o[i] = acc[i];
  }
  return c0;
}

SGTL_CLONES void DotTaps(float* out, const float* const* src, const float* w, int taps,
                         int64_t minor) {
  int64_t c0 = DotTapsChunks<8>(out, src, w, taps, 0, minor);
  c0 = DotTapsChunks<kMinChunk / 8>(out, src, w, taps, c0, minor);
  for (; c0 < minor; ++c0) {
    float acc = 0.0f;
    for (int t = 0; t < taps; ++t) acc += w[t] * src[t][c0];
    out[c0] = acc;
  }
}

template <typename T>
void DotTaps(T* out, const T* const* src, const float* w, int taps, int64_t minor) {
  for (int64_t c = 0; c < minor; ++c) {
    float acc = 0.0f;
    for (int t = 0; t < taps; ++t) acc += w[t] * static_cast<float>(src[t][c]);
    out[c] = static_cast<T>(acc);
  }
}

// Channels-last path (minor >= kMinChunk / 2): per output pixel, gather the (at most kh * kw) input
// pixels its taps read and combine them channel-chunk by channel-chunk.
template <typename T>
void UpFirDn2DChannelsLast(OpKernelContext* ctx, const UpFirDn2DParams& p, const T* x,
                           const float* k, T* y) {
  // Horizontal taps of every output column: offset of the input column in a row, and the
  // kernel column it is weighted by.
  std::vector<int64_t> h_begin(p.out_w + 1, 0), h_offset;
  std::vector<int> h_kx;
  for (int64_t ox = 0; ox < p.out_w; ++ox) {
    for (int a = 0; a < p.kernel_w; ++a) {
      const int64_t ix = upfirdn_source(ox, a, p.upx, p.downx, p.padx0, p.in_w);
      if (ix < 0) continue;
      h_offset.push_back(ix * p.minor);
      h_kx.push_back(p.kernel_w - 1 - a);
    }
    h_begin[ox + 1] = static_cast<int64_t>(h_offset.size());
  }
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<const T*> src(p.kernel_h * p.kernel_w), v_row(p.kernel_h);
    std::vector<float> w(p.kernel_h * p.kernel_w);
    std::vector<const float*> v_k(p.kernel_h);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t m = row / p.out_h, oy = row % p.out_h;
      T* y_row = y + row * p.out_w * p.minor;
      int rows = 0;  // vertical taps of this output row: input row and kernel row
      for (int b = 0; b < p.kernel_h; ++b) {
        const int64_t iy = upfirdn_source(oy, b, p.upy, p.downy, p.pady0, p.in_h);
        if (iy < 0) continue;
        v_row[rows] = x + (m * p.in_h + iy) * p.in_w * p.minor;
        v_k[rows++] = k + (p.kernel_h - 1 - b) * p.kernel_w;
      }
      for (int64_t ox = 0; ox < p.out_w; ++ox) {
        int taps = 0;
        for (int r = 0; r < rows; ++r) {
          for (int64_t j = h_begin[ox]; j < h_begin[ox + 1]; ++j) {
            src[taps] = v_row[r] + h_offset[j];
            w[taps++] = v_k[r][h_kx[j]];
          }
        }
        T* out = y_row + ox * p.minor;
        if (taps == 0)
          std::fill(out, out + p.minor, static_cast<T>(0.0f));
        else
          DotTaps(out, src.data(), w.data(), taps, p.minor);
      }
    }
  };
  ParallelFor(ctx, p.major * p.out_h, p.out_w * p.minor * TapsPerOutput(p) * 2, work);
}

// Row path (small minor, e.g. NCHW images viewed as [N*C, H, W, 1]): accumulate whole output rows
// tap by tap with strided axpy loops.
template <typename T>
void UpFirDn2DRows(OpKernelContext* ctx, const UpFirDn2DParams& p, const T* x, const float* k,
                   T* y) {
  std::vector<TapRun> runs(p.kernel_w);
  for (int a = 0; a < p.kernel_w; ++a) runs[a] = HorizontalRun(p, a);
  const int64_t row_in = p.in_w * p.minor, row_out = p.out_w * p.minor;
  constexpr bool kFloat = std::is_same<T, float>::value;

  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> acc_buf(kFloat ? 0 : row_out), in_buf(kFloat ? 0 : row_in);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t m = row / p.out_h, oy = row % p.out_h;
      T* y_row = y + row * row_out;
      float* acc = kFloat ? reinterpret_cast<float*>(y_row) : acc_buf.data();
      std::fill(acc, acc + row_out, 0.0f);
      for (int b = 0; b < p.kernel_h; ++b) {
        const int64_t iy = upfirdn_source(oy, b, p.upy, p.downy, p.pady0, p.in_h);
        if (iy < 0) continue;
        const T* x_row = x + (m * p.in_h + iy) * row_in;
        const float* in;
        if constexpr (kFloat) {
          in = x_row;
        } else {
          for (int64_t i = 0; i < row_in; ++i) in_buf[i] = static_cast<float>(x_row[i]);
          in = in_buf.data();
        }
        const float* k_row = k + (p.kernel_h - 1 - b) * p.kernel_w;
        for (int a = 0; a < p.kernel_w; ++a) {
          const float w = k_row[p.kernel_w - 1 - a];
          const TapRun& r = runs[a];
          if (w == 0.0f || r.count == 0) continue;
          if (p.minor == 1)
            AxpyStrided(acc + r.ox0, r.sx, in + r.ix0, r.dx, r.count, w);
          else
            AxpyBlocks(acc + r.ox0 * p.minor, r.sx * p.minor, in + r.ix0 * p.minor,
                       r.dx * p.minor, r.count, p.minor, w);
        }
      }
      if constexpr (!kFloat) {
        for (int64_t i = 0; i < row_out; ++i) y_row[i] = static_cast<T>(acc[i]);
      }
    }
  };
  ParallelFor(ctx, p.major * p.out_h, row_out * TapsPerOutput(p) * 2 + row_in, work);
}

template <typename Device, typename T>
struct UpFirDn2DLaunch;

template <typename T>
struct UpFirDn2DLaunch<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, const UpFirDn2DParams& p, const T* x, const float* k,
                  T* y) {
    if (p.minor >= kMinChunk / 2)
      UpFirDn2DChannelsLast<T>(ctx, p, x, k, y);
    else
      UpFirDn2DRows<T>(ctx, p, x, k, y);
  }
};

#if GOOGLE_CUDA
template <typename T>
struct UpFirDn2DLaunch<GPUDevice, T> {
  static void Run(OpKernelContext* ctx, const UpFirDn2DParams& p, const T* x, const float* k,
                  T* y) {
    const bool half = std::is_same<T, Eigen::half>::value;
    OP_REQUIRES_OK(ctx, CudaStatus("StyleganTlUpfirdn2d",
                                   upfirdn_2d_cuda(CudaStream(ctx), p, half, x, k, y)));
  }
};
#endif

template <typename Device, typename T>
class UpFirDn2DOp : public OpKernel {
 public:
  explicit UpFirDn2DOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadAttrs(ctx, &a_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& k = ctx->input(1);
    OP_REQUIRES(ctx, x.dims() == 4,
                absl::InvalidArgumentError("StyleganTlUpfirdn2d: x must be 4-D"));
    OP_REQUIRES(ctx, k.dims() == 2 && k.NumElements() > 0,
                absl::InvalidArgumentError("StyleganTlUpfirdn2d: k must be a non-empty 2-D"));
    UpFirDn2DParams p;
    p.major = x.dim_size(0);
    p.in_h = x.dim_size(1);
    p.in_w = x.dim_size(2);
    p.minor = x.dim_size(3);
    p.kernel_h = static_cast<int>(k.dim_size(0));
    p.kernel_w = static_cast<int>(k.dim_size(1));
    p.upx = a_.upx; p.upy = a_.upy; p.downx = a_.downx; p.downy = a_.downy;
    p.padx0 = a_.padx0; p.padx1 = a_.padx1; p.pady0 = a_.pady0; p.pady1 = a_.pady1;
    OP_REQUIRES(ctx,
                p.in_h * p.upy + p.pady0 + p.pady1 >= p.kernel_h &&
                    p.in_w * p.upx + p.padx0 + p.padx1 >= p.kernel_w,
                absl::InvalidArgumentError(
                    "StyleganTlUpfirdn2d: upsampled and padded input is smaller than the kernel"));
    p.out_h = upfirdn_out_size(p.in_h, p.upy, p.downy, p.pady0, p.pady1, p.kernel_h);
    p.out_w = upfirdn_out_size(p.in_w, p.upx, p.downx, p.padx0, p.padx1, p.kernel_w);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0, tensorflow::TensorShape({p.major, p.out_h, p.out_w, p.minor}), &y));
    if (y->NumElements() == 0) return;
    UpFirDn2DLaunch<Device, T>::Run(ctx, p, x.flat<T>().data(), k.flat<float>().data(),
                                    y->flat<T>().data());
  }

 private:
  UpFirDnAttrs a_;
};

SGTL_REGISTER_KERNELS("StyleganTlUpfirdn2d", UpFirDn2DOp);

}  // namespace stylegan_tl
