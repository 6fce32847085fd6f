#!/usr/bin/env bash
# compute-sanitizer on the GPU campaign's sanitizer cases, fastdepth's kernels only:
#
#   benchmarks/sanitize.sh PYTHON ARGS...   (ARGS: those of python -m fastdepth.checks)
#
# Every fastdepth kernel is named <op>_<pass>_kernel (fastdepth.registry): the filter "wd_kernel"
# takes the forward and backward kernels of every op, under memcheck and racecheck; "proj_kernel"
# the projection kernels, under memcheck (they share no memory between threads), on the ops that
# have one. A compute-sanitizer without the kernel filter runs each tool once on every kernel.
# PYTORCH_NO_CUDA_MEMORY_CACHING=1: the caching allocator would hide out-of-bounds accesses.
# Exit status 1 when any run failed. $COMPUTE_SANITIZER overrides the tool's path (the tests).
set -uo pipefail
python=${1:?usage: benchmarks/sanitize.sh PYTHON ARGS...}
shift
sanitizer=${COMPUTE_SANITIZER:-compute-sanitizer}
rc=0

run() {  # run TOOL [FILTER] -- CHECKS_ARGS...
  local tool=$1 filter=()
  shift
  [ "$1" != -- ] && filter=(--kernel-name "kns=$1") && shift
  shift
  echo "-- $tool ${filter[*]}"
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$sanitizer" --tool "$tool" "${filter[@]}" --error-exitcode 1 \
    --target-processes all "$python" -m fastdepth.checks "$@" || rc=1
}

if ! "$sanitizer" --help 2>&1 | grep -q -- --kernel-name; then
  for tool in memcheck racecheck; do run "$tool" -- "$@"; done
  exit $rc
fi
for tool in memcheck racecheck; do run "$tool" wd_kernel -- "$@"; done
proj_ops=$("$python" -c 'from fastdepth.registry import OPS; print(",".join(n for n, o in OPS.items() if "proj" in o.passes))')
[ -n "$proj_ops" ] && run memcheck proj_kernel -- "$@" --ops "$proj_ops"
exit $rc
