// Standalone check of the CUDA kernels of stylegan_tl's custom ops (no TensorFlow): the launchers
// of stylegan_tl/ops/kernels/{fused_bias_act,upfirdn_2d}.cu run on random inputs, float and half,
// forward and gradient modes, and their outputs are compared with
//   1. host references built here: fused_bias_act through the same element function the CPU
//      kernel uses (fused_bias_act.h), upfirdn_2d written out independently (zero insertion,
//      padding, true convolution, decimation as separate steps);
//   2. optionally (--golden DIR) the outputs of the TensorFlow CPU kernels on the same inputs,
//      dumped by dump_cpu_goldens.py.
// Then it times the CUDA kernels on large inputs (CUDA events). Exit status 0 = every check passed.
//
// Build and run: bench/cuda_check/run.sh (see README.md). Compiled with -DCUDA_CHECK_HOST_ONLY by a
// host C++ compiler (run.sh --host-only), the "device" results are the host references instead: that
// build needs no GPU and checks the references and the golden files against the TF CPU kernels.
#include <cuda_fp16.h>
#ifndef CUDA_CHECK_HOST_ONLY
#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fused_bias_act.h"
#include "upfirdn_2d.h"

namespace sg = stylegan_tl;

// ------------------------------------------------------------------------------------------------
// Small utilities.

float RoundToHalf(float v) { return __half2float(__float2half_rn(v)); }

std::vector<float> RoundedToHalf(std::vector<float> v) {
  for (auto& x : v) x = RoundToHalf(x);
  return v;
}

#ifndef CUDA_CHECK_HOST_ONLY
#define CUDA_OK(call)                                                                        \
  do {                                                                                       \
    cudaError_t err_ = (call);                                                               \
    if (err_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(err_), __FILE__,   \
                   __LINE__);                                                                \
      std::exit(2);                                                                          \
    }                                                                                        \
  } while (0)

// Values as stored on the device: float, or half (then read back as float).
struct DeviceArray {
  void* ptr = nullptr;
  size_t count = 0;
  bool half = false;

  DeviceArray(const std::vector<float>& host, bool is_half) : count(host.size()), half(is_half) {
    CUDA_OK(cudaMalloc(&ptr, std::max<size_t>(count, 1) * (half ? 2 : 4)));
    if (half) {
      std::vector<__half> h(count);
      for (size_t i = 0; i < count; ++i) h[i] = __float2half_rn(host[i]);
      CUDA_OK(cudaMemcpy(ptr, h.data(), count * 2, cudaMemcpyHostToDevice));
    } else if (count) {
      CUDA_OK(cudaMemcpy(ptr, host.data(), count * 4, cudaMemcpyHostToDevice));
    }
  }
  DeviceArray(size_t n, bool is_half) : DeviceArray(std::vector<float>(n, 0.0f), is_half) {}
  ~DeviceArray() { cudaFree(ptr); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  std::vector<float> Read() const {  // device -> host, as float
    std::vector<float> out(count);
    if (half) {
      std::vector<__half> h(count);
      CUDA_OK(cudaMemcpy(h.data(), ptr, count * 2, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < count; ++i) out[i] = __half2float(h[i]);
    } else if (count) {
      CUDA_OK(cudaMemcpy(out.data(), ptr, count * 4, cudaMemcpyDeviceToHost));
    }
    return out;
  }
};
#endif  // CUDA_CHECK_HOST_ONLY

std::vector<float> RandomValues(size_t n, std::mt19937& rng, float scale, bool half) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = half ? RoundToHalf(dist(rng)) : dist(rng);
  return v;
}

// Compares `got` with `want`: |got - want| <= atol + rtol * |want| everywhere.
struct Checker {
  int checks = 0, failures = 0;

  void Compare(const std::string& name, const std::vector<float>& got, const std::vector<float>& want,
               float atol, float rtol) {
    ++checks;
    double worst = 0.0;
    size_t worst_i = 0;
    bool ok = got.size() == want.size();
    for (size_t i = 0; ok && i < got.size(); ++i) {
      const double err = std::fabs(double(got[i]) - double(want[i]));
      const double excess = err - (atol + rtol * std::fabs(double(want[i])));
      if (!(excess <= 0.0)) ok = false;  // NaN fails too
      if (err > worst || std::isnan(err)) worst = err, worst_i = i;
    }
    if (!ok) ++failures;
    std::printf("%-4s %-58s max|err| %.3g%s\n", ok ? "ok" : "FAIL", name.c_str(), worst,
                ok ? "" : (" at " + std::to_string(worst_i)).c_str());
  }
};

// ------------------------------------------------------------------------------------------------
// fused_bias_act.

std::vector<float> FusedBiasActHost(const sg::FusedBiasActParams& p, const std::vector<float>& x,
                                    const std::vector<float>& b, const std::vector<float>& ref) {
  std::vector<float> y(x.size());
  for (int64_t i = 0; i < p.size; ++i) {
    const float bias = p.channels ? b[(i / p.inner) % p.channels] : 0.0f;
    y[i] = sg::fused_bias_act_element(p.act, p.grad, p, x[i], p.grad ? ref[i] : 0.0f, bias);
  }
  return y;
}

std::vector<float> FusedBiasActDevice(const sg::FusedBiasActParams& p, bool half, const std::vector<float>& x,
                                      const std::vector<float>& b, const std::vector<float>& ref) {
#ifdef CUDA_CHECK_HOST_ONLY
  auto y = FusedBiasActHost(p, x, b, ref);
  return half ? RoundedToHalf(y) : y;
#else
  DeviceArray dx(x, half), db(b, half), dref(ref, half), dy(x.size(), half);
  const int err = sg::fused_bias_act_cuda(nullptr, p, half, dx.ptr, db.ptr, dref.ptr, dy.ptr);
  if (err) std::printf("launch error: %s\n", cudaGetErrorString(static_cast<cudaError_t>(err)));
  CUDA_OK(cudaDeviceSynchronize());
  return dy.Read();
#endif
}

const char* kActNames[] = {"linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"};
const float kActGains[] = {1.0f, 1.41421356f, 1.41421356f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.41421356f};

void CheckFusedBiasAct(Checker& check, std::mt19937& rng) {
  // x [N=3, C=17, H=5, W=7] with the bias along C (inner 35), and a [N=6, C=40] dense layout (inner 1).
  struct Layout { int64_t size, channels, inner; const char* name; };
  const Layout layouts[] = {{3 * 17 * 35, 17, 35, "NCHW"}, {6 * 40, 40, 1, "NC"}, {3 * 17 * 35, 0, 1, "nobias"}};
  for (bool half : {false, true}) {
    for (int act = 0; act < sg::kNumActivations; ++act) {
      for (int grad = 0; grad <= 2; ++grad) {
        for (float clamp : {-1.0f, 0.7f}) {
          for (const Layout& l : layouts) {
            sg::FusedBiasActParams p{l.size, l.channels, l.inner, grad, act, 0.2f, kActGains[act], clamp};
            auto x = RandomValues(l.size, rng, 1.5f, half);
            auto b = RandomValues(l.channels, rng, 0.5f, half);
            auto ref = RandomValues(l.size, rng, 1.5f, half);
            auto want = FusedBiasActHost(p, x, b, ref);
            if (half) want = RoundedToHalf(want);
            auto got = FusedBiasActDevice(p, half, x, b, ref);
            char name[160];
            std::snprintf(name, sizeof(name), "fused_bias_act %s %s grad=%d clamp=%g %s", half ? "half" : "float",
                          kActNames[act], grad, clamp, l.name);
            // Device and host evaluate the same float expression; transcendental functions may
            // differ by a few float ulps; half outputs by one half ulp after rounding.
            check.Compare(name, got, want, 1e-6f, half ? 2e-3f : 2e-5f);
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// upfirdn_2d.

// Independent host version: zero-insert, pad (negative crops), true convolution, keep every down-th.
std::vector<float> UpFirDnHost(const sg::UpFirDn2DParams& p, const std::vector<float>& x, const std::vector<float>& k) {
  const int64_t uh = p.in_h * p.upy, uw = p.in_w * p.upx;
  const int64_t ph = uh + p.pady0 + p.pady1, pw = uw + p.padx0 + p.padx1;
  std::vector<float> y(p.major * p.out_h * p.out_w * p.minor, 0.0f);
  std::vector<float> padded(ph * pw);
  for (int64_t m = 0; m < p.major; ++m) {
    for (int64_t c = 0; c < p.minor; ++c) {
      std::fill(padded.begin(), padded.end(), 0.0f);
      for (int64_t iy = 0; iy < p.in_h; ++iy) {
        for (int64_t ix = 0; ix < p.in_w; ++ix) {
          const int64_t py = iy * p.upy + p.pady0, px = ix * p.upx + p.padx0;
          if (py >= 0 && py < ph && px >= 0 && px < pw)
            padded[py * pw + px] = x[((m * p.in_h + iy) * p.in_w + ix) * p.minor + c];
        }
      }
      for (int64_t oy = 0; oy < p.out_h; ++oy) {
        for (int64_t ox = 0; ox < p.out_w; ++ox) {
          double acc = 0.0;
          for (int a = 0; a < p.kernel_h; ++a)
            for (int bb = 0; bb < p.kernel_w; ++bb)  // true convolution: flipped kernel
              acc += double(k[(p.kernel_h - 1 - a) * p.kernel_w + (p.kernel_w - 1 - bb)]) *
                     padded[(oy * p.downy + a) * pw + (ox * p.downx + bb)];
          y[((m * p.out_h + oy) * p.out_w + ox) * p.minor + c] = float(acc);
        }
      }
    }
  }
  return y;
}

sg::UpFirDn2DParams MakeParams(int64_t major, int64_t in_h, int64_t in_w, int64_t minor, int kh, int kw, int upx,
                               int upy, int downx, int downy, int padx0, int padx1, int pady0, int pady1) {
  sg::UpFirDn2DParams p{major, in_h, in_w, minor, 0, 0, kh, kw, upx, upy, downx, downy, padx0, padx1, pady0, pady1};
  p.out_h = sg::upfirdn_out_size(in_h, upy, downy, pady0, pady1, kh);
  p.out_w = sg::upfirdn_out_size(in_w, upx, downx, padx0, padx1, kw);
  return p;
}

// The gradient of upfirdn_2d (ops/custom.py): flipped kernel, up <-> down, pads from the forward sizes.
sg::UpFirDn2DParams AdjointParams(const sg::UpFirDn2DParams& f) {
  const int padx0 = f.kernel_w - 1 - f.padx0, pady0 = f.kernel_h - 1 - f.pady0;
  return MakeParams(f.major, f.out_h, f.out_w, f.minor, f.kernel_h, f.kernel_w, f.downx, f.downy, f.upx, f.upy,
                    padx0, int(f.in_w * f.upx - f.out_w * f.downx - padx0 + f.kernel_w - 1),
                    pady0, int(f.in_h * f.upy - f.out_h * f.downy - pady0 + f.kernel_h - 1));
}

std::vector<float> Flipped(const std::vector<float>& k) { return std::vector<float>(k.rbegin(), k.rend()); }

std::vector<float> UpFirDnDevice(const sg::UpFirDn2DParams& p, bool half, const std::vector<float>& x,
                                 const std::vector<float>& k) {
#ifdef CUDA_CHECK_HOST_ONLY
  auto y = UpFirDnHost(p, x, k);
  return half ? RoundedToHalf(y) : y;
#else
  DeviceArray dx(x, half), dk(k, false), dy(p.major * p.out_h * p.out_w * p.minor, half);
  const int err = sg::upfirdn_2d_cuda(nullptr, p, half, dx.ptr, static_cast<const float*>(dk.ptr), dy.ptr);
  if (err) std::printf("launch error: %s\n", cudaGetErrorString(static_cast<cudaError_t>(err)));
  CUDA_OK(cudaDeviceSynchronize());
  return dy.Read();
#endif
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

struct UpFirDnCase {
  const char* name;
  int kh, kw, up, down, pad0, pad1;
  int64_t minor;
};

void CheckUpFirDn(Checker& check, std::mt19937& rng) {
  // StyleGAN2 [1,3,3,1] resampling (upsample_2d, downsample_2d, the FIR of upsample_conv_2d and
  // conv_downsample_2d), a 12-tap separable pass, a large odd kernel, up/down by 4, crops.
  const UpFirDnCase cases[] = {
      {"upsample_2d k4", 4, 4, 2, 1, 2, 1, 8},       {"downsample_2d k4", 4, 4, 1, 2, 1, 1, 8},
      {"upsample_conv FIR k4", 4, 4, 1, 1, 1, 1, 1},  {"conv_downsample FIR k4", 4, 4, 1, 1, 2, 2, 16},
      {"sym6 1x12 up", 1, 12, 2, 1, 6, 5, 3},         {"7x7 filter", 7, 7, 1, 1, 3, 3, 5},
      {"up4 k8", 8, 8, 4, 1, 5, 2, 2},                {"down4 crop", 5, 5, 1, 4, -1, 2, 4},
      {"up2 down3", 6, 6, 2, 3, 2, 3, 1},
  };
  for (bool half : {false, true}) {
    for (const UpFirDnCase& c : cases) {
      for (int64_t major : {1, 5}) {
        auto f = MakeParams(major, 13, 11, c.minor, c.kh, c.kw, c.up, c.up, c.down, c.down, c.pad0, c.pad1, c.pad0,
                            c.pad1);
        auto x = RandomValues(f.major * f.in_h * f.in_w * f.minor, rng, 1.0f, half);
        auto k = RandomValues(size_t(c.kh) * c.kw, rng, 0.3f, false);
        auto want = UpFirDnHost(f, x, k);
        if (half) want = RoundedToHalf(want);
        char name[160];
        std::snprintf(name, sizeof(name), "upfirdn_2d %s %s major=%ld minor=%ld", half ? "half" : "float", c.name,
                      long(major), long(c.minor));
        check.Compare(name, UpFirDnDevice(f, half, x, k), want, 1e-5f, half ? 2e-3f : 1e-5f);
        // Gradient kernel: the adjoint configuration, checked on the device and by <Ax, y> = <x, A^T y>.
        auto g = AdjointParams(f);
        auto dy = RandomValues(f.major * f.out_h * f.out_w * f.minor, rng, 1.0f, half);
        auto grad_want = UpFirDnHost(g, dy, Flipped(k));
        if (half) grad_want = RoundedToHalf(grad_want);
        std::snprintf(name, sizeof(name), "upfirdn_2d %s %s gradient major=%ld", half ? "half" : "float", c.name,
                      long(major));
        auto grad_got = UpFirDnDevice(g, half, dy, Flipped(k));
        check.Compare(name, grad_got, grad_want, 1e-5f, half ? 2e-3f : 1e-5f);
        if (!half) {
          const double lhs = Dot(UpFirDnHost(f, x, k), dy), rhs = Dot(x, grad_got);
          std::vector<float> a{float(lhs)}, b{float(rhs)};
          std::snprintf(name, sizeof(name), "upfirdn_2d %s adjoint identity major=%ld", c.name, long(major));
          check.Compare(name, a, b, 1e-4f, 1e-4f);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Goldens from the TensorFlow CPU kernels (dump_cpu_goldens.py).

std::vector<float> ReadArray(const std::string& path, size_t n, bool half) {
  std::ifstream f(path, std::ios::binary);
  std::vector<float> out(n);
  if (half) {
    std::vector<__half> h(n);
    f.read(reinterpret_cast<char*>(h.data()), n * 2);
    for (size_t i = 0; i < n; ++i) out[i] = __half2float(h[i]);
  } else {
    f.read(reinterpret_cast<char*>(out.data()), n * 4);
  }
  if (!f) {
    std::fprintf(stderr, "cannot read %zu values from %s\n", n, path.c_str());
    std::exit(2);
  }
  return out;
}

// manifest.txt, one case per line:
//   fba NAME DTYPE SIZE CHANNELS INNER GRAD ACT ALPHA GAIN CLAMP
//   upfirdn NAME DTYPE MAJOR IN_H IN_W MINOR KH KW UPX UPY DOWNX DOWNY PADX0 PADX1 PADY0 PADY1
// with NAME.x/.b/.ref/.y (fba) or NAME.x/.k/.y (upfirdn) raw little-endian arrays beside it.
void CheckGoldens(Checker& check, const std::string& dir) {
  std::ifstream manifest(dir + "/manifest.txt");
  if (!manifest) {
    std::fprintf(stderr, "no %s/manifest.txt (run dump_cpu_goldens.py first)\n", dir.c_str());
    std::exit(2);
  }
  std::string line;
  while (std::getline(manifest, line)) {
    std::istringstream in(line);
    std::string op, name, dtype;
    in >> op >> name >> dtype;
    const bool half = dtype == "float16";
    const std::string base = dir + "/" + name;
    if (op == "fba") {
      sg::FusedBiasActParams p{};
      in >> p.size >> p.channels >> p.inner >> p.grad >> p.act >> p.alpha >> p.gain >> p.clamp;
      auto x = ReadArray(base + ".x", p.size, half);
      auto b = ReadArray(base + ".b", p.channels, half);
      auto ref = p.grad ? ReadArray(base + ".ref", p.size, half) : std::vector<float>(p.size, 0.0f);
      auto want = ReadArray(base + ".y", p.size, half);
      check.Compare("TF CPU golden " + name, FusedBiasActDevice(p, half, x, b, ref), want, 1e-6f, half ? 2e-3f : 2e-5f);
    } else if (op == "upfirdn") {
      int64_t major, in_h, in_w, minor;
      int kh, kw, upx, upy, downx, downy, px0, px1, py0, py1;
      in >> major >> in_h >> in_w >> minor >> kh >> kw >> upx >> upy >> downx >> downy >> px0 >> px1 >> py0 >> py1;
      auto p = MakeParams(major, in_h, in_w, minor, kh, kw, upx, upy, downx, downy, px0, px1, py0, py1);
      auto x = ReadArray(base + ".x", major * in_h * in_w * minor, half);
      auto k = ReadArray(base + ".k", size_t(kh) * kw, false);
      auto want = ReadArray(base + ".y", p.major * p.out_h * p.out_w * p.minor, half);
      check.Compare("TF CPU golden " + name, UpFirDnDevice(p, half, x, k), want, 1e-5f, half ? 2e-3f : 1e-5f);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Timing.
#ifndef CUDA_CHECK_HOST_ONLY

float TimeKernel(const std::function<int()>& launch, int iterations) {
  launch();  // warm-up
  CUDA_OK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  CUDA_OK(cudaEventRecord(start));
  for (int i = 0; i < iterations; ++i) launch();
  CUDA_OK(cudaEventRecord(stop));
  CUDA_OK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iterations;
}

void Timings(std::mt19937& rng) {
  std::printf("\n%-52s %10s %10s %10s\n", "kernel (shape)", "ms", "GB/s", "host ms");
  for (bool half : {false, true}) {
    // fused_bias_act: [32, 512, 64, 64] lrelu + bias along C (StyleGAN2 512-channel 64x64 layer).
    const int64_t n = 32LL * 512 * 64 * 64;
    sg::FusedBiasActParams p{n, 512, 64 * 64, 0, sg::kLrelu, 0.2f, 1.41421356f, 256.0f};
    auto x = RandomValues(n, rng, 1.0f, half);
    auto b = RandomValues(512, rng, 1.0f, half);
    DeviceArray dx(x, half), db(b, half), dy(n, half);
    const float ms = TimeKernel([&] { return sg::fused_bias_act_cuda(nullptr, p, half, dx.ptr, db.ptr, nullptr, dy.ptr); }, 20);
    const auto t0 = std::chrono::steady_clock::now();
    FusedBiasActHost(p, x, b, x);
    const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-52s %10.3f %10.1f %10.1f\n", half ? "fused_bias_act half [32,512,64,64]" : "fused_bias_act float [32,512,64,64]",
                ms, 2.0 * n * (half ? 2 : 4) / ms / 1e6, host_ms);
    // upfirdn_2d: upsample_2d of [16*512, 64, 64, 1] (NCHW view) with [1,3,3,1] -> 128x128.
    auto f = MakeParams(16 * 512, 64, 64, 1, 4, 4, 2, 2, 1, 1, 2, 1, 2, 1);
    auto ux = RandomValues(f.major * f.in_h * f.in_w, rng, 1.0f, half);
    auto k = RandomValues(16, rng, 0.3f, false);
    DeviceArray ddx(ux, half), dk(k, false), ddy(f.major * f.out_h * f.out_w, half);
    const float ums = TimeKernel([&] {
      return sg::upfirdn_2d_cuda(nullptr, f, half, ddx.ptr, static_cast<const float*>(dk.ptr), ddy.ptr); }, 20);
    const double bytes = double(f.major) * (f.in_h * f.in_w + f.out_h * f.out_w) * (half ? 2 : 4);
    std::printf("%-52s %10.3f %10.1f %10s\n", half ? "upfirdn_2d half up2 [8192,64,64,1]" : "upfirdn_2d float up2 [8192,64,64,1]",
                ums, bytes / ums / 1e6, "-");
  }
}

#endif  // CUDA_CHECK_HOST_ONLY

int main(int argc, char** argv) {
  std::string golden;
  bool timing = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--golden" && i + 1 < argc) golden = argv[++i];
    else if (arg == "--no-timing") timing = false;
    else {
      std::fprintf(stderr, "usage: %s [--golden DIR] [--no-timing]\n", argv[0]);
      return 2;
    }
  }
#ifdef CUDA_CHECK_HOST_ONLY
  std::printf("host-only build: the \"device\" results are the host references\n");
  timing = false;
#else
  int device = 0;
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDevice(&device));
  CUDA_OK(cudaGetDeviceProperties(&prop, device));
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
#endif
  std::mt19937 rng(1234);
  Checker check;
  CheckFusedBiasAct(check, rng);
  CheckUpFirDn(check, rng);
  if (!golden.empty()) CheckGoldens(check, golden);
#ifndef CUDA_CHECK_HOST_ONLY
  if (timing) Timings(rng);
#endif
  std::printf("\n%d of %d checks passed\n", check.checks - check.failures, check.checks);
  return check.failures ? 1 : 0;
}
