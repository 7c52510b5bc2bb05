#!/usr/bin/env bash
# The test command: sets up a fresh Debian machine (packages, models), builds, and runs
# the whole suite through CTest, a test per core (-j1 after it runs one at a time). Extra arguments
# go to ctest (e.g. -R tokenizer).
# SLM_SANITIZE=1 builds with ASan+UBSan into build-asan instead.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/packaging/setup.sh"
build=${SLM_BUILD_DIR:-$top/build}
flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "${SLM_SANITIZE:-0}" = 1 ]; then
  # Without nvcc's objects (SLM_CUDA=OFF): the sanitizers see none of their code, and the tests that
  # read them (test_sass_mix, test_cuda_resources, the *_gpu ones) run in the plain build; the CUDA
  # kernels still build for the emulator, instrumented, and run in the emulated tests.
  build=${SLM_BUILD_DIR:-$top/build-asan}
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLM_SANITIZE=ON -DSLM_CUDA=OFF)
fi
cmake -S "$top" -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
