#!/usr/bin/env bash
# The GPU campaign: everything a session with a GPU runs, in one call of at most 9.5 minutes on a
# bare machine (cold Triton cache, the extension build included; the first, on an H200, took 7.5):
#
#   benchmarks/gpu_campaign.sh OUTDIR [--rehearse]
#
# Steps, in order of value, each under its own timeout (seconds; they add up to 570), plus whatever
# the steps before it left unused (a build done in 40 s leaves 80 s more to the checks):
#   1 env        20  imports, versions (torch, Triton, CUDA, driver), nvcc / ninja / compute-sanitizer / ncu, CUDA_HOME
#   2 build     120  the CUDA extension, once (its time is logged); fails if built without its CUDA kernels
#   3 checks    110  python -m fastdepth.checks: triton and cuda against the float64 reference on the GPU
#   4 bench     170  the benchmark at B=12 3x192x640, fp32 and bf16, fwd+bwd, every peer (a row at a time),
#                    of the works the issues set targets for (not the ways in from ManyDepth and MVSNet)
#   5 sanitizer  60  compute-sanitizer memcheck and racecheck on a few small cases, fastdepth's kernels
#                    only (benchmarks/sanitize.sh)
#   6 host       30  where the host time of the fused calls goes (benchmarks/host_profile.py: the Python
#                    functions of repeated fwd+bwd calls at B=12, by own time), into the step's log
#   7 kernels    60  Nsight Compute on the fused objective's forward and backward kernels, one launch
#                    each per backend (benchmarks/kernel_profile.py): occupancy, throughput, stalls
# Every step writes what it has as it goes; the exit status has bit N-1 set when step N failed
# (0: all passed). OUTDIR receives at most 8 files, at most 2 folders down:
#   summary.txt  one line per step (status, seconds), rewritten after each step
#   logs.tar.gz  every step's log, repacked after each step
#   checks.json  the correctness cases, rewritten after each case
#   results/<device>-<date>.json and .md  the benchmark, rewritten after each row
# The git revision comes from $FASTDEPTH_GIT_REVISION where .git did not travel (the staging sets it).
# --rehearse: the same lines on the CPU with tiny sizes (Triton's interpreter and the CPU twin, no
# sanitizer, generous timeouts); the tests run it so that CI proves every line runs.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_campaign.sh OUTDIR [--rehearse]}
rehearse=0
[ "${2:-}" = --rehearse ] && rehearse=1
cd "$(dirname "$0")/.."
mkdir -p "$out/results"
out=$(cd "$out" && pwd)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
python=${PYTHON:-python3}
status=0
step_no=0
: >"$out/summary.txt"

works=warp,photometric,reprojection,depth_loss,cost_volume,objective
if [ $rehearse = 1 ]; then
  device=cpu
  export TRITON_INTERPRET=1
  limits=(120 600 600 600 300 300 300)
  checks_args=(--device cpu --quick --dtypes fp32)  # the fused backends that run here
  bench_args=(--device cpu --quick --works $works)
  host_args=(--device cpu --quick --calls 3)
  profile_args=(--device cpu --quick)
else
  device=cuda
  limits=(20 120 110 170 60 30 60)
  checks_args=(--device cuda --backends triton,cuda)  # named: a backend that cannot run fails its cases
  bench_args=(--device cuda --sizes kitti --dtypes fp32,bf16 --works $works)
  host_args=(--device cuda --calls 30)
  profile_args=(--device cuda)
fi

spare=0  # seconds earlier steps left of their limits: the next step may use them
step() {  # step NAME CMD...: run under the step's timeout, log, record in summary.txt, repack the logs
  local name=$1
  shift
  local limit=$((${limits[$step_no]} + spare))
  step_no=$((step_no + 1))
  echo "== step $step_no $name (limit ${limit} s)"
  local start=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$logs/$step_no-$name.log" 2>&1
  local rc=$?
  local verdict=ok
  [ $rc -eq 0 ] || { verdict="FAILED rc=$rc"; status=$((status | (1 << (step_no - 1)))); }
  [ $rc -eq 124 ] && verdict="TIMED OUT after ${limit} s"
  echo "step $step_no $name: $verdict in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  spare=$((limit - (SECONDS - start)))
  [ $spare -gt 0 ] || spare=0
  tail -n 3 "$logs/$step_no-$name.log" | sed 's/^/   /'
  tar -czf "$out/logs.tar.gz" -C "$logs" .
  return $rc
}

ENVIRONMENT=$(cat <<'EOF'
import importlib, os, shutil, subprocess, sys

for module in ("fastdepth", "fastdepth.kernels.warp", "fastdepth.kernels.photometric", "fastdepth.benchmarks.run",
               "kornia"):
    importlib.import_module(module)
import torch, triton, kornia

print("torch", torch.__version__, "| triton", triton.__version__, "| kornia", kornia.__version__,
      "| CUDA (torch build)", torch.version.cuda, "| git", os.environ.get("FASTDEPTH_GIT_REVISION", "from .git"))
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        sys.exit("no GPU visible to PyTorch")
    print("GPU", torch.cuda.get_device_name(), "| capability", torch.cuda.get_device_capability())
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem",
                          "--format=csv,noheader"], capture_output=True, text=True)
    print("driver:", smi.stdout.strip() or smi.stderr.strip())
for tool in ("nvcc", "ninja", "compute-sanitizer", "ncu"):
    print(f"{tool}: {shutil.which(tool) or 'NOT FOUND'}")
from torch.utils.cpp_extension import CUDA_HOME
print("CUDA_HOME, as PyTorch finds it:", CUDA_HOME)
EOF
)

BUILD='
import sys, time
from fastdepth import _cuda
start = time.perf_counter()
_cuda.load()
print(f"extension built and loaded in {time.perf_counter() - start:.1f} s:", _cuda.state())
if sys.argv[1] == "cuda" and not _cuda.state()["cuda"]:
    sys.exit(f"built without its CUDA kernels: {_cuda.cuda_build_reason()}")'

if [ $rehearse = 0 ] && [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$("$python" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null)
  export TORCH_CUDA_ARCH_LIST
fi

step env "$python" -c "$ENVIRONMENT" "$device" || { echo "environment incomplete: see $out/logs.tar.gz"; exit $status; }
# a build killed by its limit leaves PyTorch 2.11's build lock file, on which every later build would wait
step build "$python" -c "$BUILD" "$device" || "$python" -c 'from fastdepth import _cuda; _cuda.remove_stale_lock(0)'
step checks "$python" -m fastdepth.checks "${checks_args[@]}" --out "$out/checks.json"
step bench "$python" -m fastdepth.benchmarks.run "${bench_args[@]}" --modes fwd+bwd --no-charts --out "$out/results"
if [ $rehearse = 1 ] || ! command -v compute-sanitizer >/dev/null; then
  echo "compute-sanitizer not run (rehearsal or not found): the sanitizer cases alone"
  step sanitizer "$python" -m fastdepth.checks "${checks_args[@]}" --sanitizer
else
  step sanitizer benchmarks/sanitize.sh "$python" "${checks_args[@]}" --sanitizer
fi
step host "$python" -m fastdepth.benchmarks.host_profile "${host_args[@]}"
if [ $rehearse = 1 ] || ! command -v ncu >/dev/null; then
  echo "ncu not run (rehearsal or not found): the profiled calls alone"
  step kernels "$python" -m fastdepth.benchmarks.kernel_profile "${profile_args[@]}"
else
  kernels=$("$python" -c 'from fastdepth.benchmarks.kernel_profile import KERNELS; print(KERNELS)')
  step kernels ncu --clock-control none --kernel-name "regex:$kernels" --launch-count 4 --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    "$python" -m fastdepth.benchmarks.kernel_profile "${profile_args[@]}"
fi
echo "campaign done (status $status); results in $out"
exit $status
