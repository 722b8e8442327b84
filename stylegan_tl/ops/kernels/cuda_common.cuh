// Device helpers shared by the CUDA launchers: float/half loads and stores, grid size.
#ifndef STYLEGAN_TL_CUDA_COMMON_CUH_
#define STYLEGAN_TL_CUDA_COMMON_CUH_

#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace stylegan_tl {

__device__ inline float load(const float* p, int64_t i) { return p[i]; }
__device__ inline float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ inline void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ inline void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `total` elements.
inline int GridSize(int64_t total) {
  const int64_t wanted = (total + kThreads - 1) / kThreads;
  return static_cast<int>(wanted < 65536 ? (wanted > 0 ? wanted : 1) : 65536);
}

}  // namespace stylegan_tl

#endif  // STYLEGAN_TL_CUDA_COMMON_CUH_
