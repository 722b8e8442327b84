// Op StyleganTlFusedBiasAct: registration, shape function, CPU kernel (float, half) and, in
// CUDA builds (GOOGLE_CUDA=1), the GPU kernel registration (launcher in fused_bias_act.cu).
#include <algorithm>
#include <type_traits>

#include "fused_bias_act.h"
#include "tf_kernel.h"

namespace stylegan_tl {

REGISTER_OP("StyleganTlFusedBiasAct")
    .Input("x: T")
    .Input("b: T")
    .Input("xref: T")
    .Output("y: T")
    .Attr("T: {float, half}")
    .Attr("grad: int = 0")
    .Attr("axis: int = 1")
    .Attr("act: int = 0")
    .Attr("alpha: float = 0.0")
    .Attr("gain: float = 1.0")
    .Attr("clamp: float = -1.0")
    .SetShapeFn(tensorflow::shape_inference::UnchangedShape)
    .Doc(R"doc(
y = clip(act(x + b) * gain, -clamp, clamp) (grad=0), or its first (grad=1) / second (grad=2)
derivative times x, evaluated at xref + b. b is broadcast along `axis` (empty b: no bias);
xref is empty for grad=0 and shaped like x otherwise. clamp < 0 disables clamping.
)doc");

// Elements [begin, end) with compile-time activation and mode. The tensor is walked in spans
// that share one bias value (inner > 1) or that run along the bias (inner == 1), so the inner
// loops are simple enough to vectorize.
template <typename T, int ACT, int GRAD>
void FusedBiasActRange(const FusedBiasActParams& params, const T* __restrict x,
                       const T* __restrict b, const T* __restrict ref, T* __restrict y,
                       int64_t begin, int64_t end) {
  const FusedBiasActParams p = params;  // a local copy: stores to y cannot alias it
  auto one = [&](int64_t i, float bias) {
    const float r = GRAD ? static_cast<float>(ref[i]) : 0.0f;
    y[i] = static_cast<T>(fused_bias_act_element(ACT, GRAD, p, static_cast<float>(x[i]), r, bias));
  };
  if (p.channels == 0) {
    for (int64_t i = begin; i < end; ++i) one(i, 0.0f);
    return;
  }
  for (int64_t i = begin; i < end;) {
    if (p.inner == 1) {
      const int64_t c = i % p.channels, n = std::min(end - i, p.channels - c);
      const T* bc = b + c - i;
      for (int64_t j = i; j < i + n; ++j) one(j, static_cast<float>(bc[j]));
      i += n;
    } else {
      const int64_t n = std::min(end - i, p.inner - i % p.inner);
      const float bias = static_cast<float>(b[(i / p.inner) % p.channels]);
      for (int64_t j = i; j < i + n; ++j) one(j, bias);
      i += n;
    }
  }
}

template <typename T>
using FusedBiasActRangeFn = void (*)(const FusedBiasActParams&, const T*, const T*, const T*, T*,
                                     int64_t, int64_t);

template <typename T, int ACT>
FusedBiasActRangeFn<T> PickMode(int grad) {
  if (grad == 0) return &FusedBiasActRange<T, ACT, 0>;
  if (grad == 1) return &FusedBiasActRange<T, ACT, 1>;
  return &FusedBiasActRange<T, ACT, 2>;
}

template <typename T>
FusedBiasActRangeFn<T> PickRange(int act, int grad) {
  switch (act) {
    case kRelu: return PickMode<T, kRelu>(grad);
    case kLrelu: return PickMode<T, kLrelu>(grad);
    case kTanh: return PickMode<T, kTanh>(grad);
    case kSigmoid: return PickMode<T, kSigmoid>(grad);
    case kElu: return PickMode<T, kElu>(grad);
    case kSelu: return PickMode<T, kSelu>(grad);
    case kSoftplus: return PickMode<T, kSoftplus>(grad);
    case kSwish: return PickMode<T, kSwish>(grad);
    default: return PickMode<T, kLinear>(grad);
  }
}

template <typename Device, typename T>
struct FusedBiasActLaunch;

template <typename T>
struct FusedBiasActLaunch<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, const FusedBiasActParams& p, const T* x, const T* b,
                  const T* ref, T* y) {
    const FusedBiasActRangeFn<T> range = PickRange<T>(p.act, p.grad);
    const int64_t cost = (p.act == kLinear || p.act == kRelu || p.act == kLrelu) ? 2 : 30;
    ParallelFor(ctx, p.size, cost,
                [&](int64_t begin, int64_t end) { range(p, x, b, ref, y, begin, end); });
  }
};

#if GOOGLE_CUDA
template <typename T>
struct FusedBiasActLaunch<GPUDevice, T> {
  static void Run(OpKernelContext* ctx, const FusedBiasActParams& p, const T* x, const T* b,
                  const T* ref, T* y) {
    const bool half = std::is_same<T, Eigen::half>::value;
    OP_REQUIRES_OK(ctx, CudaStatus("StyleganTlFusedBiasAct",
                                   fused_bias_act_cuda(CudaStream(ctx), p, half, x, b, ref, y)));
  }
};
#endif

template <typename Device, typename T>
class FusedBiasActOp : public OpKernel {
 public:
  explicit FusedBiasActOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("grad", &grad_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("axis", &axis_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("act", &act_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("alpha", &alpha_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("gain", &gain_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clamp", &clamp_));
    OP_REQUIRES(ctx, grad_ >= 0 && grad_ <= 2,
                absl::InvalidArgumentError("StyleganTlFusedBiasAct: grad must be 0, 1 or 2"));
    OP_REQUIRES(ctx, act_ >= 0 && act_ < kNumActivations,
                absl::InvalidArgumentError("StyleganTlFusedBiasAct: unknown activation code"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& b = ctx->input(1);
    const Tensor& xref = ctx->input(2);
    const int rank = x.dims();
    const int axis = axis_ < 0 ? axis_ + rank : axis_;
    FusedBiasActParams p;
    p.size = x.NumElements();
    p.channels = b.NumElements();
    p.inner = 1;
    p.grad = grad_;
    p.act = act_;
    p.alpha = alpha_;
    p.gain = gain_;
    p.clamp = clamp_;
    OP_REQUIRES(ctx, b.dims() == 1,
                absl::InvalidArgumentError("StyleganTlFusedBiasAct: b must be 1-D"));
    if (p.channels > 0) {
      OP_REQUIRES(ctx, axis >= 0 && axis < rank,
                  absl::InvalidArgumentError("StyleganTlFusedBiasAct: axis out of range"));
      OP_REQUIRES(ctx, x.dim_size(axis) == p.channels,
                  absl::InvalidArgumentError(
                      "StyleganTlFusedBiasAct: b's length differs from x.shape[axis]"));
      for (int i = axis + 1; i < rank; ++i) p.inner *= x.dim_size(i);
    }
    OP_REQUIRES(ctx, grad_ == 0 ? xref.NumElements() == 0 : xref.shape() == x.shape(),
                absl::InvalidArgumentError(
                    "StyleganTlFusedBiasAct: xref must be empty (grad=0) or shaped like x"));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    if (p.size == 0) return;
    FusedBiasActLaunch<Device, T>::Run(ctx, p, x.flat<T>().data(), b.flat<T>().data(),
                                       xref.flat<T>().data(), y->flat<T>().data());
  }

 private:
  int grad_, axis_, act_;
  float alpha_, gain_, clamp_;
};

SGTL_REGISTER_KERNELS("StyleganTlFusedBiasAct", FusedBiasActOp);

}  // namespace stylegan_tl
