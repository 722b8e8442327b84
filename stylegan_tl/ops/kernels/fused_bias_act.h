// Elementwise bias + activation + gain + clamp, shared by the CPU (.cc) and CUDA (.cu) kernels.
// Plain C++ (no TensorFlow headers) so that the .cu file compiles quickly and on its own.
//
// Modes ("grad" attribute) for x, bias b (broadcast along one axis) and reference input r:
//   0: y = clip(act(x + b) * gain, -clamp, clamp)                       (forward)
//   1: y = x * gain * act'(r + b)  * inside(r + b)                        (x is the upstream gradient)
//   2: y = x * gain * act''(r + b) * inside(r + b)
// where inside(v) = 1 when clamp < 0 or -clamp <= act(v) * gain <= clamp, else 0.
#ifndef STYLEGAN_TL_FUSED_BIAS_ACT_H_
#define STYLEGAN_TL_FUSED_BIAS_ACT_H_

#include <cmath>
#include <cstdint>

#include "common.h"

namespace stylegan_tl {

enum Activation {
  kLinear = 0, kRelu = 1, kLrelu = 2, kTanh = 3, kSigmoid = 4,
  kElu = 5, kSelu = 6, kSoftplus = 7, kSwish = 8, kNumActivations = 9
};

struct FusedBiasActParams {
  int64_t size;      // number of elements of x
  int64_t channels;  // length of b (0: no bias)
  int64_t inner;     // product of x's dimensions after the bias axis
  int grad;          // 0, 1 or 2 (see above)
  int act;           // Activation
  float alpha;       // lrelu slope
  float gain;
  float clamp;       // < 0: no clamping
};

constexpr float kSeluScale = 1.0507009873554804934193349852946f;
constexpr float kSeluAlpha = 1.6732632423543772848170429916717f;

SGTL_HD inline float sgtl_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// act(v)
SGTL_HD inline float act_value(int act, float v, float alpha) {
  switch (act) {
    case kRelu: return v > 0.0f ? v : 0.0f;
    case kLrelu: return v > 0.0f ? v : v * alpha;
    case kTanh: return tanhf(v);
    case kSigmoid: return sgtl_sigmoid(v);
    case kElu: return v < 0.0f ? expm1f(v) : v;
    case kSelu: return v < 0.0f ? kSeluScale * kSeluAlpha * expm1f(v) : kSeluScale * v;
    case kSoftplus: return v > 0.0f ? v + log1pf(expf(-v)) : log1pf(expf(v));
    case kSwish: return v * sgtl_sigmoid(v);
    default: return v;
  }
}

// d act / dv (order 1) or d^2 act / dv^2 (order 2) at v.
SGTL_HD inline float act_derivative(int act, int order, float v, float alpha) {
  bool first = order == 1;
  switch (act) {
    case kLinear: return first ? 1.0f : 0.0f;
    case kRelu: return first ? (v > 0.0f ? 1.0f : 0.0f) : 0.0f;
    case kLrelu: return first ? (v > 0.0f ? 1.0f : alpha) : 0.0f;
    case kTanh: {
      float t = tanhf(v);
      return first ? 1.0f - t * t : -2.0f * t * (1.0f - t * t);
    }
    case kSigmoid: {
      float s = sgtl_sigmoid(v);
      return first ? s * (1.0f - s) : s * (1.0f - s) * (1.0f - 2.0f * s);
    }
    case kElu:
      if (v < 0.0f) return expf(v);
      return first ? 1.0f : 0.0f;
    case kSelu:
      if (v < 0.0f) return kSeluScale * kSeluAlpha * expf(v);
      return first ? kSeluScale : 0.0f;
    case kSoftplus: {
      float s = sgtl_sigmoid(v);
      return first ? s : s * (1.0f - s);
    }
    case kSwish: {
      float s = sgtl_sigmoid(v);
      return first ? s * (1.0f + v * (1.0f - s)) : s * (1.0f - s) * (2.0f + v * (1.0f - 2.0f * s));
    }
    default: return 0.0f;
  }
}

// One output element; `x` is the input (mode 0) or the upstream gradient (modes 1, 2),
// `ref` the forward input (modes 1, 2; ignored in mode 0), `bias` the broadcast bias value.
SGTL_HD inline float fused_bias_act_element(const FusedBiasActParams& p, float x, float ref,
                                            float bias) {
  if (p.grad == 0) {
    float y = act_value(p.act, x + bias, p.alpha) * p.gain;
    if (p.clamp >= 0.0f) y = y < -p.clamp ? -p.clamp : (y > p.clamp ? p.clamp : y);
    return y;
  }
  float v = ref + bias;
  if (p.clamp >= 0.0f) {
    float u = act_value(p.act, v, p.alpha) * p.gain;
    if (!(u >= -p.clamp && u <= p.clamp)) return 0.0f;
  }
  return x * p.gain * act_derivative(p.act, p.grad, v, p.alpha);
}

// CUDA launcher (fused_bias_act.cu). Pointers are device pointers to float, or to IEEE half
// when is_half; `stream` is a cudaStream_t. Returns 0 or a cudaError_t code.
int fused_bias_act_cuda(void* stream, const FusedBiasActParams& p, bool is_half, const void* x,
                        const void* b, const void* ref, void* y);

}  // namespace stylegan_tl

#endif  // STYLEGAN_TL_FUSED_BIAS_ACT_H_
