#!/bin/bash
# tests/test_soak.sh - tests/soak.sh for one minute (the CTest run; `tests/soak.sh --minutes 30`
# is the long one, docs/reliability.md): mixed well-behaved, killed, hostile and flooding
# clients, with a probe every 10 s; fails on a crash, a hang, a slow probe or a leak.
# The probe bound is wide (10 s): CI's machine is shared and this run may be under the sanitizers.
set -u
build=$(dirname "${SLMD:?SLMD must name the slmd binary}")
exec bash "$(dirname "$0")/soak.sh" --minutes 1 --build "$build" --probe-ms 10000
