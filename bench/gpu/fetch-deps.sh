#!/bin/sh
# bench/gpu/fetch-deps.sh [DIR] - downloads (does not install) the .deb files of the libraries
# slmd builds against, with their runtime halves, into DIR [.gpu-deps], for a GPU machine that
# has the CUDA toolkit but not these libraries and no network: carry DIR there and pass it to
# bench/gpu/run.sh --deps DIR. Run it where apt-get can reach a Debian mirror.
set -eu
DIR="${1:-.gpu-deps}"
mkdir -p "$DIR"
cd "$DIR"
apt-get download libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
    libxxhash-dev libxxhash0 libsystemd-dev libsystemd0 libjansson-dev libjansson4
ls -l
