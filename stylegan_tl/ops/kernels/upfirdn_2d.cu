// CUDA launcher of StyleganTlUpfirdn2d: one thread per output element (grid-stride loop) over
// x[major, in_h, in_w, minor], summing the taps that land on real input samples.
#include "cuda_common.cuh"
#include "upfirdn_2d.h"

namespace stylegan_tl {
namespace {

template <typename T>
__global__ void UpFirDn2DKernel(UpFirDn2DParams p, const T* x, const float* k, T* y) {
  const int64_t total = p.major * p.out_h * p.out_w * p.minor;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = i % p.minor;
    const int64_t ox = (i / p.minor) % p.out_w;
    const int64_t oy = (i / (p.minor * p.out_w)) % p.out_h;
    const int64_t m = i / (p.minor * p.out_w * p.out_h);
    float acc = 0.0f;
    for (int b = 0; b < p.kernel_h; ++b) {
      const int64_t iy = upfirdn_source(oy, b, p.upy, p.downy, p.pady0, p.in_h);
      if (iy < 0) continue;
      const float* k_row = k + (p.kernel_h - 1 - b) * p.kernel_w;
      for (int a = 0; a < p.kernel_w; ++a) {
        const int64_t ix = upfirdn_source(ox, a, p.upx, p.downx, p.padx0, p.in_w);
        if (ix < 0) continue;
        acc += k_row[p.kernel_w - 1 - a] * load(x, ((m * p.in_h + iy) * p.in_w + ix) * p.minor + c);
      }
    }
    store(y, i, acc);
  }
}

template <typename T>
int Launch(void* stream, const UpFirDn2DParams& p, const void* x, const float* k, void* y) {
  const int64_t total = p.major * p.out_h * p.out_w * p.minor;
  UpFirDn2DKernel<T><<<GridSize(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      p, static_cast<const T*>(x), k, static_cast<T*>(y));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int upfirdn_2d_cuda(void* stream, const UpFirDn2DParams& p, bool is_half, const void* x,
                    const float* k, void* y) {
  return is_half ? Launch<__half>(stream, p, x, k, y) : Launch<float>(stream, p, x, k, y);
}

}  // namespace stylegan_tl
