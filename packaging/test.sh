#!/usr/bin/env bash
# The test command: sets up a fresh Debian machine (packages, models), builds, and runs
# the whole suite through CTest. Extra arguments go to ctest (e.g. -R tokenizer).
# SLM_SANITIZE=1 builds with ASan+UBSan into build-asan instead.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/packaging/setup.sh"
build=${SLM_BUILD_DIR:-$top/build}
flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "${SLM_SANITIZE:-0}" = 1 ]; then
  build=${SLM_BUILD_DIR:-$top/build-asan}
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLM_SANITIZE=ON)
fi
cmake -S "$top" -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure "$@"
