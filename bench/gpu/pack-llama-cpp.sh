#!/usr/bin/env bash
# bench/gpu/pack-llama-cpp.sh - the llama.cpp source a GPU machine needs to build llama-bench,
# llama-batched-bench and llama-server with CUDA, small enough to carry there (a device call
# carries 64 MiB): the llama-cpp-python sdist's vendor/llama.cpp without docs, models, tests,
# examples, pocs, benches, app, the web UI's sources (tools/ui keeps only its CMakeLists.txt and
# the two templates of the asset table, which a build with LLAMA_BUILD_UI=OFF and
# LLAMA_USE_PREBUILT_UI=OFF fills with no asset; scripts/ keeps only ui-assets.cmake, which
# writes them), tools/server's bench, tests and READMEs, the Python and conversion scripts, and
# every ggml backend but CPU and CUDA; packed as a reproducible .tar.xz (about 4 MB). Run it
# where pip reaches PyPI; bench/gpu/compare-llama-cpp.sh --src FILE builds from the result.
#
# usage: bench/gpu/pack-llama-cpp.sh [--sdist FILE] [--out DIR] [--check]
#   --sdist FILE  llama_cpp_python-VERSION.tar.gz [$SLM_DL_DIR or ~/.cache/slmd/dl, as
#                 bench/peer/build-llama-cpp.sh keeps it; downloaded with pip when absent]
#   --out DIR     where the tarball goes [.gpu-llama-cpp in the repository, git-ignored]
#   --check       then configure the packed tree as compare-llama-cpp.sh does (CUDA on, sm_90;
#                 needs nvcc and CMake, no GPU) in a temporary folder, to prove nothing it needs
#                 was left out
# Prints the tarball's path, size and sha256. Exit status: 0, 1 on failure, 2 on bad usage.
set -euo pipefail

VERSION=0.3.36   # bench/peer/build-llama-cpp.sh's
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DL=${SLM_DL_DIR:-$HOME/.cache/slmd/dl}
SDIST="" OUT=$ROOT/.gpu-llama-cpp CHECK=0
die() { echo "pack-llama-cpp: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --sdist|--out) [ $# -ge 2 ] || { echo "pack-llama-cpp: $1 needs a value" >&2; exit 2; };;
    esac
    case "$1" in
        --sdist) SDIST=$2; shift 2;;
        --out)   OUT=$2; shift 2;;
        --check) CHECK=1; shift;;
        -h|--help) sed -n '12,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2;;
        *) echo "pack-llama-cpp: unknown argument $1 (--help lists the options)" >&2; exit 2;;
    esac
done

if [ -z "$SDIST" ]; then
    SDIST=$DL/llama_cpp_python-$VERSION.tar.gz
    if [ ! -s "$SDIST" ]; then
        mkdir -p "$DL"
        echo "pack-llama-cpp: downloading the llama-cpp-python $VERSION sdist into $DL" >&2
        pip download --quiet --no-deps --no-binary :all: --dest "$DL" "llama-cpp-python==$VERSION" >&2 ||
            die "pip download of llama-cpp-python==$VERSION failed"
    fi
fi
[ -s "$SDIST" ] || die "$SDIST: no such file"
name=$(basename "$SDIST")
case "$name" in
    llama_cpp_python-*.tar.gz) ver=${name#llama_cpp_python-}; ver=${ver%.tar.gz};;
    *) die "$SDIST: not a llama_cpp_python-VERSION.tar.gz sdist";;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$SDIST" -C "$tmp" "llama_cpp_python-$ver/vendor/llama.cpp" 2> "$tmp/tar.err" ||
    die "$SDIST holds no llama_cpp_python-$ver/vendor/llama.cpp ($(head -1 "$tmp/tar.err"))"
src=$tmp/llama.cpp
mv "$tmp/llama_cpp_python-$ver/vendor/llama.cpp" "$src"
{ [ -f "$src/CMakeLists.txt" ] && [ -d "$src/ggml/src/ggml-cuda" ] && [ -d "$src/tools/llama-bench" ] &&
    [ -d "$src/tools/batched-bench" ]; } || die "$SDIST: its llama.cpp lacks CMakeLists.txt, ggml-cuda or the two bench tools"

# Top level: what the build reads (CMake files, ggml, src, include, common, vendor, tools) and the licenses.
for p in "$src"/* "$src"/.[!.]*; do
    [ -e "$p" ] || continue
    case "$(basename "$p")" in
        CMakeLists.txt|CMakePresets.json|cmake|common|ggml|include|src|tools|vendor|scripts|LICENSE|licenses|AUTHORS) ;;
        *) rm -rf "$p";;
    esac
done
# scripts/: only the asset step of the server's build (tools/ui/CMakeLists.txt runs it).
for p in "$src"/scripts/* "$src"/scripts/.[!.]*; do
    [ -e "$p" ] || continue
    [ "$(basename "$p")" = ui-assets.cmake ] || rm -rf "$p"
done
# tools/ui: the Svelte sources are built only with npm (LLAMA_BUILD_UI, off here); what remains
# makes llama-server's table of embedded assets, empty (the server runs with --no-webui).
for p in "$src"/tools/ui/* "$src"/tools/ui/.[!.]*; do
    [ -e "$p" ] || continue
    case "$(basename "$p")" in CMakeLists.txt|ui.cpp.in|ui.h.in) ;; *) rm -rf "$p";; esac
done
# tools/server: its sources and CMakeLists.txt; not its load tests, Python tests or READMEs.
rm -rf "$src/tools/server/bench" "$src/tools/server/tests" "$src"/tools/server/README*.md
[ -f "$src/scripts/ui-assets.cmake" ] && [ -f "$src/tools/server/CMakeLists.txt" ] && [ -f "$src/tools/ui/ui.cpp.in" ] ||
    die "$SDIST: its llama.cpp lacks scripts/ui-assets.cmake, tools/server or tools/ui/ui.cpp.in"
# ggml: the backends other than CPU and CUDA (each is added only when its GGML_<NAME> option is on).
for p in "$src"/ggml/src/ggml-*/; do
    case "$(basename "$p")" in ggml-cpu|ggml-cuda) ;; *) rm -rf "$p";; esac
done
printf 'llama.cpp as vendored by llama-cpp-python %s (%s, sha256 %s),\ntrimmed by bench/gpu/pack-llama-cpp.sh to what a CUDA build of llama-bench, llama-batched-bench and llama-server needs.\n' \
    "$ver" "$name" "$(sha256sum "$SDIST" | cut -d' ' -f1)" > "$src/SLMD-PACK.txt"

mkdir -p "$OUT"
tarball=$OUT/llama-cpp-$ver-cuda-src.tar.xz
tar -C "$tmp" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - llama.cpp |
    xz -9 -T2 > "$tarball.tmp" || die "packing $tarball failed"
mv "$tarball.tmp" "$tarball"
echo "$tarball: $(stat -c %s "$tarball") bytes, sha256 $(sha256sum "$tarball" | cut -d' ' -f1)"

if [ "$CHECK" = 1 ]; then
    echo "pack-llama-cpp: configuring the packed tree (bench/gpu/compare-llama-cpp.sh --configure-only)" >&2
    "$ROOT/bench/gpu/compare-llama-cpp.sh" --src "$tarball" --peer "$tmp/peer" --configure-only >&2 ||
        die "the packed tree does not configure (see above)"
    echo "pack-llama-cpp: the packed tree configures with CUDA"
fi
