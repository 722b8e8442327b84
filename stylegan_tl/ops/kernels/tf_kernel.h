// TensorFlow headers and names shared by the op sources (.cc files; needs TF's include path).
#ifndef STYLEGAN_TL_TF_KERNEL_H_
#define STYLEGAN_TL_TF_KERNEL_H_

#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <cstdint>
#include <string>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#include "common.h"

namespace stylegan_tl {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using CPUDevice = Eigen::ThreadPoolDevice;
#if GOOGLE_CUDA
using GPUDevice = Eigen::GpuDevice;

// The CUDA stream of the op's GPU device, as the launchers take it.
inline void* CudaStream(OpKernelContext* ctx) {
  return static_cast<void*>(ctx->eigen_device<GPUDevice>().stream());
}

// Status of a launcher's return code (0 = success).
inline absl::Status CudaStatus(const char* op, int code) {
  if (code == 0) return absl::OkStatus();
  return absl::InternalError(std::string(op) + " CUDA launch failed: " + cuda_error_string(code));
}
#endif

// Run work(begin, end) over [0, total) on the CPU device's thread pool; `cost` is the estimated
// cost of one unit (in cycles, roughly), which decides how finely the range is split.
template <typename Work>
void ParallelFor(OpKernelContext* ctx, int64_t total, int64_t cost, Work&& work) {
  const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(threads->num_threads, threads->workers, total, cost, work);
}

}  // namespace stylegan_tl

// Register OP_CLASS<Device, T> as the kernels of op OP_NAME for float and half, on the CPU and,
// in CUDA builds, on the GPU.
#define SGTL_REGISTER_ONE(OP_NAME, OP_CLASS, DEVICE, DEVICE_TYPE, T)                       \
  REGISTER_KERNEL_BUILDER(Name(OP_NAME).Device(DEVICE).TypeConstraint<T>("T"),            \
                          OP_CLASS<DEVICE_TYPE, T>)
#if GOOGLE_CUDA
#define SGTL_REGISTER_GPU(OP_NAME, OP_CLASS)                                              \
  SGTL_REGISTER_ONE(OP_NAME, OP_CLASS, tensorflow::DEVICE_GPU, GPUDevice, float);         \
  SGTL_REGISTER_ONE(OP_NAME, OP_CLASS, tensorflow::DEVICE_GPU, GPUDevice, Eigen::half)
#else
#define SGTL_REGISTER_GPU(OP_NAME, OP_CLASS)
#endif
#define SGTL_REGISTER_KERNELS(OP_NAME, OP_CLASS)                                          \
  SGTL_REGISTER_ONE(OP_NAME, OP_CLASS, tensorflow::DEVICE_CPU, CPUDevice, float);         \
  SGTL_REGISTER_ONE(OP_NAME, OP_CLASS, tensorflow::DEVICE_CPU, CPUDevice, Eigen::half);   \
  SGTL_REGISTER_GPU(OP_NAME, OP_CLASS)

#endif  // STYLEGAN_TL_TF_KERNEL_H_
