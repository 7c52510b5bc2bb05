#!/usr/bin/env bash
# Installs what building and testing slmd needs on a fresh Debian machine (run as root),
# then fetches the models. Safe to run again: it only installs what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

debs=(build-essential cmake pkg-config libpcre2-dev libxxhash-dev libsystemd-dev libjansson-dev libmicrohttpd-dev curl systemd python3 python3-pip unzip valgrind strace clang)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages of the tests: openai (tests/test_gateway_openai.sh drives slm-gateway with it),
# pytest (tests/test_python.sh runs python/tests), gguf and numpy (tests/test_arch.c writes its
# synthetic models with tests/golden/make_arch_models.py). Debian 12 marks its Python as externally managed:
# pip needs --break-system-packages there (they go to /usr/local).
pips=()
python3 -c 'import openai' 2>/dev/null || pips+=(openai)
python3 -c 'import pytest' 2>/dev/null || pips+=(pytest)
python3 -c 'import gguf' 2>/dev/null || pips+=(gguf)
python3 -c 'import numpy' 2>/dev/null || pips+=(numpy)
# Where nvcc is (the CUDA toolkit builds the kernels) but not its disassembler: cuobjdump and
# nvdisasm from NVIDIA's wheels, for bench/gpu/sass-mix.sh (tests/test_sass_mix.sh), 5.5 MB.
nvcc=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
if [ -n "$nvcc" ] && ! command -v cuobjdump >/dev/null && [ ! -x "$(dirname "$nvcc")/cuobjdump" ]; then
  python3 -m pip show -q nvidia-cuda-cuobjdump >/dev/null 2>&1 || pips+=(nvidia-cuda-cuobjdump==13.5.37)
  python3 -m pip show -q nvidia-cuda-nvdisasm >/dev/null 2>&1 || pips+=(nvidia-cuda-nvdisasm==13.5.37)
fi
if [ ${#pips[@]} -gt 0 ]; then
  echo "setup: pip installing ${pips[*]}"
  python3 -m pip install -q "${pips[@]}" 2>/dev/null || python3 -m pip install -q --break-system-packages "${pips[@]}"
fi

"$here/fetch-models.sh"
