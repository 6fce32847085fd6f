#!/usr/bin/env bash
# Everything a session with a GPU runs, in one command:
#   benchmarks/gpu_campaign.sh OUTDIR [check|bench|all]
# check: `fastdepth info`, the whole test suite on CUDA, compute-sanitizer memcheck and racecheck
#        over the GPU tests of each kernel, the AOT/nvcc compile report       (~5 min on an H100)
# bench: the full benchmark (all sizes, fp32 and bf16) into OUTDIR/results      (~5 min on an H100)
# all (default): both. Where one command may run at most 10 minutes, run `check` and `bench` as
# two calls. Logs go to OUTDIR; the exit status is non-zero if any step failed.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_campaign.sh OUTDIR [check|bench|all]}
step=${2:-all}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
status=0
run() {  # run NAME CMD...: log to OUTDIR/NAME.log, remember failures
  local name=$1
  shift
  echo "== $name: $*"
  local start=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - start)) s"
  [ $rc -eq 0 ] || status=1
}

if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
  export TORCH_CUDA_ARCH_LIST
fi
export FASTDEPTH_BUILD_EXTENSION=1  # build the CUDA extension once, up front

if [ "$step" = check ] || [ "$step" = all ]; then
  nvidia-smi >"$out/nvidia-smi.txt" 2>&1
  run info python3 -m fastdepth info
  run pytest python3 -m pytest -q -ra
  # the GPU tests only (FASTDEPTH_GPU_TESTS_ONLY keeps tests whose device is cuda), per kernel
  for tool in memcheck racecheck; do
    run "sanitizer-$tool" env FASTDEPTH_GPU_TESTS_ONLY=1 compute-sanitizer --tool "$tool" --error-exitcode 1 \
      --target-processes all python3 -m pytest -q -x tests/test_warp.py tests/test_photometric.py \
      -k "float32_matches_reference or min_reprojection_matches_reference or edge_cases"
  done
  run compile-report python3 -m fastdepth.compile_report
fi
if [ "$step" = bench ] || [ "$step" = all ]; then
  run bench python3 -m fastdepth.benchmarks.run --device cuda --out "$out/results"
fi
echo "logs and results in $out (status $status)"
exit $status
