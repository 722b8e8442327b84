// Helpers shared by the CUDA launchers.
#include <cuda_runtime.h>

#include "common.h"

namespace stylegan_tl {

const char* cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace stylegan_tl
