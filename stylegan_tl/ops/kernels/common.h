// Definitions shared by every kernel source (plain C++, usable from .cc and .cu files).
#ifndef STYLEGAN_TL_COMMON_H_
#define STYLEGAN_TL_COMMON_H_

// SGTL_HD: inline function callable from host and device code, always inlined (so that constant
// arguments, e.g. the activation code, fold away in the CPU loops).
#ifdef __CUDACC__
#define SGTL_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define SGTL_HD __attribute__((always_inline)) inline
#else
#define SGTL_HD inline
#endif

namespace stylegan_tl {

// Text of a cudaError_t code returned by the CUDA launchers (cuda_common.cu).
const char* cuda_error_string(int code);

}  // namespace stylegan_tl

#endif  // STYLEGAN_TL_COMMON_H_
