// upfirdn_2d: upsample (zero insertion), pad/crop, true 2-D convolution with a FIR kernel,
// downsample - on x[major, in_h, in_w, minor]. Plain C++, shared by the .cc and .cu sources.
//
// For output (oy, ox), tap (b, a) of the flipped kernel reads the zero-upsampled, padded input at
// (oy * downy + b - pady0, ox * downx + a - padx0); that position holds input pixel
// (u / up) when it is a multiple of `up` and inside the image, else zero. The kernel value used
// is k[kernel_h - 1 - b][kernel_w - 1 - a] (true convolution).
#ifndef STYLEGAN_TL_UPFIRDN_2D_H_
#define STYLEGAN_TL_UPFIRDN_2D_H_

#include <cstdint>

#include "common.h"

namespace stylegan_tl {

struct UpFirDn2DParams {
  int64_t major, in_h, in_w, minor, out_h, out_w;
  int kernel_h, kernel_w;
  int upx, upy, downx, downy;
  int padx0, padx1, pady0, pady1;
};

// Output size along one axis: (in * up + pad0 + pad1 - taps) // down + 1 (0 when negative).
SGTL_HD int64_t upfirdn_out_size(int64_t in, int up, int down, int pad0, int pad1,
                                        int taps) {
  int64_t span = in * up + pad0 + pad1 - taps;
  return span < 0 ? 0 : span / down + 1;
}

// Input index read by output `o` through flipped tap `t`, or -1 for an inserted zero / padding.
SGTL_HD int64_t upfirdn_source(int64_t o, int t, int up, int down, int pad0, int64_t in) {
  int64_t u = o * down + t - pad0;
  if (u < 0 || u % up != 0) return -1;
  u /= up;
  return u < in ? u : -1;
}

// CUDA launcher (upfirdn_2d.cu): x, y device pointers to float or IEEE half (is_half); k a device
// pointer to kernel_h * kernel_w floats; `stream` a cudaStream_t. Returns 0 or a cudaError_t.
int upfirdn_2d_cuda(void* stream, const UpFirDn2DParams& p, bool is_half, const void* x,
                    const float* k, void* y);

}  // namespace stylegan_tl

#endif  // STYLEGAN_TL_UPFIRDN_2D_H_
