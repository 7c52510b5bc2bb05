#!/bin/bash
# test_cuda_resources: no kernel of kernels/cuda spills registers to local memory, on any
# architecture the build compiles for; and every kernel's static shared memory keeps within what
# the launchers assume (kernels/cuda/kernels.h, "Shared memory"): at most
# SLM_CUDA_STATIC_SHARED_MAX, so that a launch of up to the default dynamic bytes needs no opt-in,
# and for the MMQ, which opts in to SLM_CUDA_MMQ_SMEM, that plus its static memory within the
# architecture's opt-in maximum (163 KiB sm_80, 99 KiB sm_86 / sm_89, 227 KiB sm_90). Reads the compiler's resource reports (nvcc
# -Xptxas=-v) that the build keeps in <build>/cuda-resources/<source>.cu.txt
# (kernels/cuda/ptxas-report.sh). Every kernel there is in the hot set: each one runs in
# every decode or prefill step. Skipped (77) when the build has no CUDA compiler.
# Run from the build directory (ctest does), or set SLM_BUILD_DIR.
set -u
build=${SLM_BUILD_DIR:-$PWD}
src=${SLM_TEST_DATA:-$(dirname "$0")}/..
cache=$build/CMakeCache.txt
[ -f "$cache" ] || { echo "test_cuda_resources: no CMakeCache.txt in $build"; exit 1; }
compiler=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$cache")
if [ -z "$compiler" ] || [ "${compiler%NOTFOUND}" != "$compiler" ] || grep -q '^SLM_CUDA:STRING=OFF' "$cache"; then
    echo "test_cuda_resources: this build compiles no CUDA (nvcc absent or SLM_CUDA=OFF): skipped"
    exit 77
fi

hdr=$src/kernels/cuda/kernels.h
static_max=$(sed -n 's/^#define SLM_CUDA_STATIC_SHARED_MAX \([0-9]*\).*/\1/p' "$hdr")
mmq_smem=$(sed -n 's/^#define SLM_CUDA_MMQ_SMEM \([0-9]*\).*/\1/p' "$hdr")
if [ -z "$static_max" ] || [ -z "$mmq_smem" ]; then
    echo "test_cuda_resources: expected SLM_CUDA_STATIC_SHARED_MAX and SLM_CUDA_MMQ_SMEM in $hdr"
    exit 1
fi

fail=0
entries=0
for cu in "$src"/kernels/cuda/*.cu; do
    name=$(basename "$cu")
    report=$build/cuda-resources/$name.txt
    if [ ! -f "$report" ]; then
        echo "$name: expected a resource report at $report, got none (is slm_kernels_cuda built?)"
        fail=1
        continue
    fi
    entries=$((entries + $(grep -c "Compiling entry function" "$report")))
    # "Compiling entry function 'K' for 'sm_XX'" names the arch; "Function properties for F"
    # is followed by "N bytes stack frame, S bytes spill stores, L bytes spill loads".
    bad=$(awk -v file="$name" '
        /Compiling entry function/ { match($0, /for .sm_[0-9a-z]+/); arch = substr($0, RSTART + 5, RLENGTH - 5) }
        /Function properties for/ { fn = $NF }
        /spill stores/ {
            stores = $5; loads = $9
            if (stores + 0 != 0 || loads + 0 != 0)
                printf "%s: %s (%s): expected no spills, got %s bytes spill stores, %s bytes spill loads\n", file, fn, arch, stores, loads
        }' "$report")
    if [ -n "$bad" ]; then
        echo "$bad"
        fail=1
    fi
    # "Used R registers, ..., S bytes smem, ..." follows the entry's name (no "bytes smem": none).
    bad=$(awk -v file="$name" -v smax="$static_max" -v mmq="$mmq_smem" '
        function optin_max(a) { return a == "sm_80" ? 166912 : a == "sm_90" || a == "sm_90a" ? 232448 : 101376 }
        /Compiling entry function/ {
            match($0, /for .sm_[0-9a-z]+/); arch = substr($0, RSTART + 5, RLENGTH - 5)
            match($0, /function .[^'"'"']+/); fn = substr($0, RSTART + 10, RLENGTH - 10)
            n_entries++
        }
        /Used [0-9]+ registers/ {
            smem = 0
            for (i = 1; i < NF; i++) if ($(i + 1) == "bytes" && $(i + 2) ~ /^smem/) smem = $i + 0
            if (smem > smax)
                printf "%s: %s (%s): %d bytes of static shared memory, expected at most SLM_CUDA_STATIC_SHARED_MAX = %d\n", file, fn, arch, smem, smax
            if (fn ~ /k_mmq/ && smem + mmq > optin_max(arch))
                printf "%s: %s (%s): %d bytes of static shared memory + SLM_CUDA_MMQ_SMEM %d > the opt-in maximum %d\n", file, fn, arch, smem, mmq, optin_max(arch)
            checked++
        }
        END { if (checked < n_entries) printf "%s: %d kernel compilations, %d resource lines read\n", file, n_entries, checked }' "$report")
    if [ -n "$bad" ]; then
        echo "$bad"
        fail=1
    fi
done
if [ "$entries" -eq 0 ]; then
    echo "test_cuda_resources: expected kernels in the reports, got none"
    fail=1
fi
[ "$fail" -eq 0 ] && echo "test_cuda_resources: $entries kernel compilations, no spills, static shared memory within $static_max bytes"
exit "$fail"
