#!/usr/bin/env bash
# Build and run the CUDA kernel check of stylegan_tl's custom ops (see README.md).
#
#   bench/cuda_check/run.sh               build, dump TF CPU goldens if TensorFlow imports, run
#   bench/cuda_check/run.sh --build-only  compile only (works without a GPU)
#   bench/cuda_check/run.sh --no-golden   skip the TensorFlow CPU goldens
#   bench/cuda_check/run.sh --host-only   no GPU needed: a build without the kernels whose "device"
#                                         results are the host references, checked against the TF
#                                         CPU goldens
#
# Environment: NVCC (default: nvcc on PATH or $CUDA_HOME/bin), CUDA_CHECK_ARCH (e.g. 90; default:
# the GPU's own with -arch=native when nvidia-smi sees one, else sm_75 ... sm_90 plus PTX),
# CUDA_CHECK_OUT (default: bench/out/cuda_check).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${CUDA_CHECK_OUT:-$root/bench/out/cuda_check}
nvcc=${NVCC:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}
build_only=0
golden=1
host_only=0
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    --no-golden) golden=0 ;;
    --host-only) host_only=1 ;;
    *) echo "usage: $0 [--build-only] [--no-golden] [--host-only]" >&2; exit 2 ;;
  esac
done
kernels="$root/stylegan_tl/ops/kernels"
mkdir -p "$out"

if [[ -n "${CUDA_CHECK_ARCH:-}" ]]; then
  arch=(-gencode "arch=compute_${CUDA_CHECK_ARCH},code=sm_${CUDA_CHECK_ARCH}")
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  arch=(-arch=native)
else
  arch=()
  for a in 75 80 86 89 90; do arch+=(-gencode "arch=compute_$a,code=sm_$a"); done
  arch+=(-gencode "arch=compute_90,code=compute_90")
fi

if [[ $host_only == 1 ]]; then
  echo "building $out/cuda_check (host only, no kernels) with $nvcc"
  "$nvcc" -O2 --std=c++17 -DCUDA_CHECK_HOST_ONLY -I"$kernels" -o "$out/cuda_check" "$here/cuda_check.cu"
else
  echo "building $out/cuda_check with $nvcc ${arch[*]}"
  "$nvcc" -O3 --std=c++17 -DNDEBUG "${arch[@]}" -I"$kernels" -o "$out/cuda_check" "$here/cuda_check.cu" \
    "$kernels/fused_bias_act.cu" "$kernels/upfirdn_2d.cu" "$kernels/cuda_common.cu"
fi
[[ $build_only == 1 ]] && exit 0

args=()
if [[ $golden == 1 ]] && (cd "$root" && python3 -c "import tensorflow" >/dev/null 2>&1); then
  (cd "$root" && CUDA_VISIBLE_DEVICES="" python3 "$here/dump_cpu_goldens.py" "$out/golden")
  args+=(--golden "$out/golden")
else
  echo "TensorFlow CPU goldens skipped (no TensorFlow, or --no-golden): host references only"
fi
"$out/cuda_check" "${args[@]}" | tee "$out/result.txt"
