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

SGTL_HD float sgtl_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
// max/min as selects (fmaxf/fminf carry NaN rules that keep compilers from vectorizing them).
SGTL_HD float sgtl_max(float a, float b) { return a > b ? a : b; }
SGTL_HD float sgtl_min(float a, float b) { return a < b ? a : b; }
// tanh through expm1 (accurate near 0; |v| > 9 rounds to +-1 in float), much faster than tanhf.
SGTL_HD float sgtl_tanh(float v) {
  const float e = expm1f(2.0f * sgtl_min(sgtl_max(v, -9.0f), 9.0f));
  return e / (e + 2.0f);
}

// The functions below avoid data-dependent branches (min/max and selects between computed
// values) so that the CPU loops vectorize and do not mispredict on random signs.

// act(v)
SGTL_HD float act_value(int act, float v, float alpha) {
  switch (act) {
    case kRelu: return sgtl_max(v, 0.0f);
    case kLrelu: return sgtl_max(v, 0.0f) + alpha * sgtl_min(v, 0.0f);
    case kTanh: return sgtl_tanh(v);
    case kSigmoid: return sgtl_sigmoid(v);
    case kElu: {
      const float e = expm1f(sgtl_min(v, 0.0f));
      return v < 0.0f ? e : v;
    }
    case kSelu: {
      const float e = kSeluScale * kSeluAlpha * expm1f(sgtl_min(v, 0.0f));
      return v < 0.0f ? e : kSeluScale * v;
    }
    case kSoftplus: return sgtl_max(v, 0.0f) + log1pf(expf(-fabsf(v)));
    case kSwish: return v * sgtl_sigmoid(v);
    default: return v;
  }
}

// d act / dv (order 1) or d^2 act / dv^2 (order 2) at v.
SGTL_HD float act_derivative(int act, int order, float v, float alpha) {
  const bool first = order == 1;
  const float pos = v > 0.0f ? 1.0f : 0.0f;   // relu-style step (0 at v == 0)
  const float neg = v < 0.0f ? 1.0f : 0.0f;   // elu-style step (0 at v == 0)
  switch (act) {
    case kLinear: return first ? 1.0f : 0.0f;
    case kRelu: return first ? pos : 0.0f;
    case kLrelu: return first ? alpha + (1.0f - alpha) * pos : 0.0f;
    case kTanh: {
      const float t = sgtl_tanh(v);
      return first ? 1.0f - t * t : -2.0f * t * (1.0f - t * t);
    }
    case kSigmoid: {
      const float s = sgtl_sigmoid(v);
      return first ? s * (1.0f - s) : s * (1.0f - s) * (1.0f - 2.0f * s);
    }
    case kElu: {
      const float e = expf(sgtl_min(v, 0.0f));
      return first ? neg * e + (1.0f - neg) : neg * e;
    }
    case kSelu: {
      const float e = kSeluScale * kSeluAlpha * expf(sgtl_min(v, 0.0f));
      return first ? neg * e + (1.0f - neg) * kSeluScale : neg * e;
    }
    case kSoftplus: {
      const float s = sgtl_sigmoid(v);
      return first ? s : s * (1.0f - s);
    }
    case kSwish: {
      const float s = sgtl_sigmoid(v);
      return first ? s * (1.0f + v * (1.0f - s)) : s * (1.0f - s) * (2.0f + v * (1.0f - 2.0f * s));
    }
    default: return 0.0f;
  }
}

// One output element; `x` is the input (mode 0) or the upstream gradient (modes 1, 2),
// `ref` the forward input (modes 1, 2; ignored in mode 0), `bias` the broadcast bias value.
// `act` and `grad` are separate arguments so that callers passing constants get the switches
// folded away.
SGTL_HD float fused_bias_act_element(int act, int grad, const FusedBiasActParams& p,
                                            float x, float ref, float bias) {
  if (grad == 0) {
    const float y = act_value(act, x + bias, p.alpha) * p.gain;
    return p.clamp >= 0.0f ? sgtl_min(sgtl_max(y, -p.clamp), p.clamp) : y;
  }
  const float v = ref + bias;
  float inside = 1.0f;
  if (p.clamp >= 0.0f) {
    const float u = act_value(act, v, p.alpha) * p.gain;
    inside = (u >= -p.clamp && u <= p.clamp) ? 1.0f : 0.0f;
  }
  return x * p.gain * act_derivative(act, grad, v, p.alpha) * inside;
}

// CUDA launcher (fused_bias_act.cu). Pointers are device pointers to float, or to IEEE half
// when is_half; `stream` is a cudaStream_t. Returns 0 or a cudaError_t code.
int fused_bias_act_cuda(void* stream, const FusedBiasActParams& p, bool is_half, const void* x,
                        const void* b, const void* ref, void* y);

}  // namespace stylegan_tl

#endif  // STYLEGAN_TL_FUSED_BIAS_ACT_H_
