// Definitions shared by every kernel source (plain C++, usable from .cc and .cu files).
#ifndef STYLEGAN_TL_COMMON_H_
#define STYLEGAN_TL_COMMON_H_

#ifdef __CUDACC__
#define SGTL_HD __host__ __device__
#else
#define SGTL_HD
#endif

namespace stylegan_tl {

// Text of a cudaError_t code returned by the CUDA launchers (cuda_common.cu).
const char* cuda_error_string(int code);

}  // namespace stylegan_tl

#endif  // STYLEGAN_TL_COMMON_H_
