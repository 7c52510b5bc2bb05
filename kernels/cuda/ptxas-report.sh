#!/bin/sh
# kernels/cuda/ptxas-report.sh DIR COMPILER ARGS... - the CUDA compiler launcher of
# slm_kernels_cuda: runs the compile as it is and keeps its stderr (nvcc -Xptxas=-v: the
# registers, stack frame and spills of every kernel for every architecture) in
# DIR/<source>.txt, while still showing it. tests/test_cuda_resources.sh reads the reports.
dir=$1
shift
obj=
prev=
for a in "$@"; do
    [ "$prev" = "-o" ] && obj=$a
    prev=$a
done
[ -n "$obj" ] || exec "$@"
mkdir -p "$dir"
report="$dir/$(basename "$obj" .o).txt"
"$@" 2>"$report.tmp"
rc=$?
cat "$report.tmp" >&2
if [ "$rc" -eq 0 ]; then mv "$report.tmp" "$report"; else rm -f "$report.tmp" "$report"; fi
exit "$rc"
