#!/usr/bin/env bash
# Build the reference implementation (llama.cpp, as vendored by the PyPI sdist of
# llama-cpp-python) outside the repository, CPU only, and make the sdist's pure-Python
# `llama_cpp` package importable against that build without a second compile.
#
# Usage: bench/peer/build-llama-cpp.sh
# Env:   SLM_PEER_DIR   where to unpack and build   (default ~/.cache/slmd/peer)
#        SLM_DL_DIR     where the sdist is cached    (default ~/.cache/slmd/dl)
#        SLM_PEER_JOBS  parallel build jobs          (default 2)
#        SLM_PEER_FORCE=1  rebuild even when READY says the build is there
#        SLM_PEER_AMX   on: keep llama.cpp's AMX kernels on a CPU that has AMX (default off:
#                       on such a CPU it is built with -mno-amx-tile -mno-amx-int8 -mno-amx-bf16;
#                       0.3.36's AMX matmul, taken for pp512, died with SIGILL in
#                       tinygemm_kernel_amx on our build machine, a KVM guest on a Xeon with AMX,
#                       though a lone tilezero after ldtilecfg runs there: docs/performance.md)
#        SLM_PEER_ISA   native (default: GGML_NATIVE, the build a user of this CPU gets) or avx2
#                       (AVX2, FMA, F16C, BMI2 and nothing newer, whatever the CPU: the build an
#                       AVX2 machine gets, so that slmd's AVX2 tier, SLM_CPU_KERNELS=avx2, can be
#                       measured against it on an AVX-512 CPU); give it its own SLM_PEER_DIR
# Idempotent: when $SLM_PEER_DIR/READY names this version and its binaries and Python package
# are present, it prints the paths and exits at once; otherwise it reuses the download, the
# unpacked tree and the build tree.
# On success it writes $SLM_PEER_DIR/READY holding the bin/ and python/ paths.
# Afterwards:
#   $PEER/bin/llama-bench, llama-server ...    (executables, RUNPATH finds the .so files)
#   PYTHONPATH=$PEER/python python3 -c 'import llama_cpp'
set -euo pipefail

VERSION=0.3.36
PEER=${SLM_PEER_DIR:-$HOME/.cache/slmd/peer}
DL=${SLM_DL_DIR:-$HOME/.cache/slmd/dl}
JOBS=${SLM_PEER_JOBS:-2}
SDIST=$DL/llama_cpp_python-$VERSION.tar.gz
SRC=$PEER/llama_cpp_python-$VERSION
BUILD=$PEER/build
# AMX: what this build does about it, recorded in READY (a change rebuilds).
case "${SLM_PEER_AMX:-off}" in
    on|off) ;;
    *) echo "build-llama-cpp: SLM_PEER_AMX must be on or off, not '${SLM_PEER_AMX}'" >&2; exit 2;;
esac
# ISA: the instruction sets the build may use, recorded in READY (a change rebuilds).
ISA=${SLM_PEER_ISA:-native}
case "$ISA" in
    native) ISA_FLAGS=(-DGGML_NATIVE=ON);;
    avx2) ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
                     -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF
                     -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF);;
    *) echo "build-llama-cpp: SLM_PEER_ISA must be native or avx2, not '${SLM_PEER_ISA}'" >&2; exit 2;;
esac
AMX=none
[ "$ISA" = native ] && grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && AMX=${SLM_PEER_AMX:-off}
AMX_FLAGS=
[ "$AMX" = off ] && AMX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
TARGETS=(llama llama-tokenize llama-bench llama-batched-bench llama-perplexity llama-simple llama-server)

case "$PEER" in
    "$(git rev-parse --show-toplevel 2>/dev/null || echo /nonexistent)"*)
        echo "build-llama-cpp: SLM_PEER_DIR must be outside the repository" >&2; exit 1;;
esac

ready_ok() {
    [ -f "$PEER/READY" ] && grep -qx "version=$VERSION" "$PEER/READY" || return 1
    [ "$(sed -n 's/^amx=//p' "$PEER/READY")" = "$AMX" ] || [ "$AMX" = none ] || return 1
    [ "$(sed -n 's/^isa=//p' "$PEER/READY")" = "$ISA" ] || { [ "$ISA" = native ] && ! grep -q '^isa=' "$PEER/READY"; } ||
        return 1
    local t
    for t in "${TARGETS[@]}"; do
        [ "$t" = llama ] && t=libllama.so
        [ -e "$PEER/bin/$t" ] || return 1
    done
    [ -f "$PEER/python/llama_cpp/__init__.py" ]
}
if [ "${SLM_PEER_FORCE:-0}" != 1 ] && ready_ok; then
    echo "llama.cpp (llama-cpp-python $VERSION) already built: $PEER/READY"
    exit 0
fi

# A READY of this version stays while targets are added to its build: the programs it names
# are still there, and a compare script running meanwhile must not start a second build.
grep -qsx "version=$VERSION" "$PEER/READY" || rm -f "$PEER/READY"
mkdir -p "$PEER" "$DL"

if [ ! -s "$SDIST" ]; then
    pip download --no-deps --no-binary :all: --dest "$DL" "llama-cpp-python==$VERSION"
fi
[ -s "$SDIST" ] || { echo "build-llama-cpp: $SDIST missing after download" >&2; exit 1; }

if [ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]; then
    tar -xzf "$SDIST" -C "$PEER"
fi

# Configured anew when absent or configured without llama-server (older versions of this script).
# The web UI is left out (LLAMA_BUILD_UI=OFF, no prebuilt download): llama-server then embeds
# an empty asset table and serves only its API, which is all the benchmark uses.
# Configured anew, too, when its AMX flags or instruction sets are not this run's.
NATIVE=$([ "$ISA" = native ] && echo ON || echo OFF)
if ! grep -qsx 'LLAMA_BUILD_SERVER:BOOL=ON' "$BUILD/CMakeCache.txt" ||
   ! grep -qsx "CMAKE_C_FLAGS:STRING=$AMX_FLAGS" "$BUILD/CMakeCache.txt" ||
   ! grep -qsx "GGML_NATIVE:BOOL=$NATIVE" "$BUILD/CMakeCache.txt"; then
    cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS="$AMX_FLAGS" -DCMAKE_CXX_FLAGS="$AMX_FLAGS" \
        -DBUILD_SHARED_LIBS=ON \
        "${ISA_FLAGS[@]}" \
        -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_RPC=OFF \
        -DGGML_BACKEND_DL=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_COMMON=ON \
        -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_EXAMPLES=ON \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_APP=OFF
fi
cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}"

# Executables and shared libraries both land in $BUILD/bin (llama.cpp sets both output dirs).
ln -sfn "$BUILD/bin" "$PEER/bin"

# Python package: copy the pure-Python sources; llama_cpp.py and _ggml.py load
# lib{llama,ggml}.so from <package>/lib, which we point at the build's bin/.
PY=$PEER/python
mkdir -p "$PY"
rm -rf "$PY/llama_cpp.tmp"
cp -r "$SRC/llama_cpp" "$PY/llama_cpp.tmp"
ln -sfn "$BUILD/bin" "$PY/llama_cpp.tmp/lib"
rm -rf "$PY/llama_cpp"
mv "$PY/llama_cpp.tmp" "$PY/llama_cpp"

# Runtime dependencies of the package (pyproject: typing-extensions, numpy, diskcache, jinja2):
# whichever the system python lacks is installed from PyPI into $PY, not into the system.
missing=()
for pair in typing_extensions:typing-extensions numpy:numpy diskcache:diskcache jinja2:jinja2; do
    PYTHONPATH=$PY python3 -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    pip install --quiet --target "$PY" "${missing[@]}"
fi

PYTHONPATH=$PY python3 -c 'import llama_cpp, sys; llama_cpp.llama_backend_init(); sys.stdout.write(llama_cpp.llama_print_system_info().decode() + "\n")'

printf 'bin=%s\npython=%s\nversion=%s\namx=%s\nisa=%s\n' "$PEER/bin" "$PY" "$VERSION" "$AMX" "$ISA" > "$PEER/READY"
echo "llama.cpp (llama-cpp-python $VERSION) ready:"
echo "  bin:    $PEER/bin"
echo "  python: $PY   (PYTHONPATH=$PY python3 -c 'import llama_cpp')"
echo "  marker: $PEER/READY"
