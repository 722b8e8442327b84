// CUDA launcher of StyleganTlFusedBiasAct: one thread per element (grid-stride loop), float or
// IEEE half storage, float arithmetic. No TensorFlow headers: the .cc passes raw pointers.
#include "cuda_common.cuh"
#include "fused_bias_act.h"

namespace stylegan_tl {
namespace {

template <typename T>
__global__ void FusedBiasActKernel(FusedBiasActParams p, const T* x, const T* b, const T* ref,
                                   T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.size;
       i += int64_t(blockDim.x) * gridDim.x) {
    float bias = p.channels ? load(b, (i / p.inner) % p.channels) : 0.0f;
    float r = p.grad ? load(ref, i) : 0.0f;
    store(y, i, fused_bias_act_element(p.act, p.grad, p, load(x, i), r, bias));
  }
}

template <typename T>
int Launch(void* stream, const FusedBiasActParams& p, const void* x, const void* b,
           const void* ref, void* y) {
  FusedBiasActKernel<T><<<GridSize(p.size), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      p, static_cast<const T*>(x), static_cast<const T*>(b), static_cast<const T*>(ref),
      static_cast<T*>(y));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int fused_bias_act_cuda(void* stream, const FusedBiasActParams& p, bool is_half, const void* x,
                        const void* b, const void* ref, void* y) {
  return is_half ? Launch<__half>(stream, p, x, b, ref, y) : Launch<float>(stream, p, x, b, ref, y);
}

}  // namespace stylegan_tl
