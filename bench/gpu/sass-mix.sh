#!/usr/bin/env bash
# bench/gpu/sass-mix.sh - what the CUDA kernels became in machine code, without a GPU: per kernel
# of a build's slm_kernels_cuda objects, the sm_90 (or --arch) SASS instructions counted by kind:
# global loads by width, generic loads (the activations, shared or global), shared loads, the
# integer dots (IDP.4A), the tensor-core ops (IMMA, HMMA), local memory (LDL / STL: spills or
# run-time-indexed arrays), and the size of the hot loop (the innermost loop around the first
# dot or mma, less what it takes only now and then: a region a forward branch skips that holds a
# BAR.SYNC, as the wide MMQ's staging of a chunk, or a loop of its own and no dot or mma, as the
# wide MMQ's closing of its segments) against the dots or mmas in it and its int-to-float
# conversions (I2F, I2FP: on the conversion units, not the FMA pipe; docs/cuda.md, "Dots read as
# floats"): what an issue-bound kernel pays per mma; and where the kernel's griddepcontrol.wait (ACQBULK,
# slm_pdl_begin) stands: "first" when no memory access (but an L2 prefetch), exit, or branch past
# it comes before it, "reads first" when only loads, shared stores, barriers and branches do,
# "after X" naming the first write or exit before it, "-" when the kernel has none. docs/cuda.md keeps its figures for the hot
# kernels; a change to a kernel shows here what it did to the loads before any GPU time is spent
# on it.
#
#   bench/gpu/sass-mix.sh [--build DIR] [--arch sm_NN] [--filter REGEX] [--check]
#
# --build DIR      the CMake build whose CUDA objects to read (default: build)
# --arch sm_NN     the machine code to read (default: sm_90; the build must contain it)
# --filter REGEX   only the kernels whose demangled name matches (grep -E)
# --check          also require: tensor-core ops (IMMA) in every k_mmq and k_mmq_wide, HMMA in
#                  every k_mmf and k_attention, no local memory in any kernel, the wait first in
#                  every kernel but k_mma_rate, k_attention<D, true>, k_gemv and the narrow k_mmq
#                  (no write or exit before it); exit 1 naming each that fails
#
# cuobjdump (and the nvdisasm it runs): $CUOBJDUMP, else on PATH, else beside nvcc, else those
# of PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm (packaging/setup.sh installs them
# where nvcc is found). Exits 2 on bad arguments, 3 when either tool is missing (tests skip then).
set -euo pipefail

build=build
arch=sm_90
filter=
check=0
usage() { sed -n '17,26p' "$0" | sed 's/^# \{0,1\}//' >&2; }
die() { echo "sass-mix: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --build) [ $# -ge 2 ] || die "--build needs a directory"; build=$2; shift 2 ;;
    --arch)
        [ $# -ge 2 ] || die "--arch needs a value such as sm_90"
        [[ "$2" =~ ^sm_[0-9]{2,3}a?$ ]] || die "--arch '$2': expected sm_NN, e.g. sm_90"
        arch=$2; shift 2 ;;
    --filter) [ $# -ge 2 ] || die "--filter needs a regular expression"; filter=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument '$1'" ;;
    esac
done

objdir="$build/CMakeFiles/slm_kernels_cuda.dir/kernels/cuda"
[ -d "$build" ] || die "--build '$build': no such directory"
shopt -s nullglob
objs=("$objdir"/*.cu.o)
[ ${#objs[@]} -gt 0 ] || die "no CUDA objects in $objdir: configure and build '$build' where nvcc is found"

find_tool() {   # NAME: on PATH, else beside nvcc, else in a Python site's nvidia/cu*/bin (NVIDIA's wheels)
    command -v "$1" && return 0
    local nvcc site c
    nvcc=$(command -v nvcc || true)
    [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
    [ -n "$nvcc" ] && [ -x "$(dirname "$nvcc")/$1" ] && { echo "$(dirname "$nvcc")/$1"; return 0; }
    for site in $(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
        for c in "$site"/nvidia/cu*/bin/"$1"; do [ -x "$c" ] && { echo "$c"; return 0; }; done
    done
    return 1
}
if [ -n "${CUOBJDUMP:-}" ]; then
    [ -x "$CUOBJDUMP" ] || { echo "sass-mix: CUOBJDUMP=$CUOBJDUMP is not an executable" >&2; exit 3; }
    cuobjdump=$CUOBJDUMP
elif ! cuobjdump=$(find_tool cuobjdump); then
    echo "sass-mix: no cuobjdump (python3 -m pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm, or set CUOBJDUMP)" >&2
    exit 3
fi
# cuobjdump disassembles through nvdisasm, which it looks for on PATH
if [ -z "${CUOBJDUMP:-}" ] && ! command -v nvdisasm >/dev/null; then
    if [ -x "$(dirname "$cuobjdump")/nvdisasm" ]; then
        PATH=$(dirname "$cuobjdump"):$PATH
    elif nvdisasm=$(find_tool nvdisasm); then
        PATH=$(dirname "$nvdisasm"):$PATH
    else
        echo "sass-mix: no nvdisasm, which cuobjdump needs (python3 -m pip install nvidia-cuda-nvdisasm)" >&2
        exit 3
    fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for o in "${objs[@]}"; do
    "$cuobjdump" -sass -arch "$arch" "$o" >>"$tmp/sass" 2>"$tmp/err" || {
        cat "$tmp/err" >&2
        echo "sass-mix: cuobjdump could not read $o for $arch" >&2
        exit 1
    }
done
grep -q "Function :" "$tmp/sass" || { echo "sass-mix: no $arch machine code in $objdir (was it built for $arch?)" >&2; exit 1; }

# One line a kernel: name, then the counts (tab-separated), names demangled. "loop": the
# instructions of the innermost loop around the kernel's first IDP / IMMA / HMMA (from a backward
# branch's target to the branch; 0 when there is none), the dot or mma instructions in it, and
# its I2F / I2FP.
awk '
function hex(h,   i, v) {   # mawk has no strtonum
    sub(/^0x/, "", h); v = 0
    for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
    return v
}
function flush(   i, j, first, lo, hi, k, ops, cv, nx, bar, back, dots) {
    if (f == "") return
    first = -1
    for (i = 1; i <= cnt; i++) if (op[i] ~ /^(IDP|IMMA|HMMA)/) { first = addr[i]; break }
    lo = -1; hi = -1
    if (first >= 0)
        for (i = 1; i <= cnt; i++)
            if (tgt[i] >= 0 && tgt[i] <= first && first <= addr[i] && (lo < 0 || addr[i] - tgt[i] < hi - lo)) {
                lo = tgt[i]; hi = addr[i]
            }
    # a block-wide step the loop takes only now and then (the wide MMQ staging a chunk of
    # activations between two BAR.SYNCs, skipped by a forward branch on the other iterations)
    # is not counted, nor a skipped region with a loop of its own and no dot or mma (the wide
    # MMQ closing its segments, once every few units): the figure is what an iteration pays
    # when it neither stages nor closes
    nx = 0
    if (lo >= 0)
        for (i = 1; i <= cnt; i++)
            if (fwd[i] > addr[i] && addr[i] >= lo && fwd[i] <= hi + 16) {
                bar = 0; back = 0; dots = 0
                for (j = i + 1; j <= cnt && addr[j] < fwd[i]; j++) {
                    if (op[j] ~ /^BAR\.SYNC/) bar = 1
                    if (op[j] ~ /^(IDP|IMMA|HMMA)/) dots = 1
                    if (tgt[j] > addr[i] && tgt[j] <= addr[j]) back = 1
                }
                if (bar || (back && !dots)) { nx++; xlo[nx] = addr[i]; xhi[nx] = fwd[i] }
            }
    k = 0; ops = 0; cv = 0
    if (lo >= 0)
        for (i = 1; i <= cnt; i++) if (addr[i] >= lo && addr[i] <= hi) {
            for (j = 1; j <= nx; j++) if (addr[i] > xlo[j] && addr[i] < xhi[j]) break
            if (j <= nx) continue
            k++; if (op[i] ~ /^(IDP|IMMA|HMMA)/) ops++
            if (op[i] ~ /^I2F/) cv++
        }
    loop[f] = k; loopops[f] = ops; loopcv[f] = cv
    # the wait of a programmatic dependent launch: first, or after what (a memory access, a branch)
    # (an L2 prefetch, CCTL...PF, may come before it: it moves no data; so may a branch that
    # lands before it, so that every thread still reaches it)
    # "reads first": what comes before it reads (loads, shared stores, barriers, branches) but
    # writes no global memory and does not exit (the K/V loads of the decode attention, docs/cuda.md)
    wait[f] = "-"; early = ""; wr = ""; w = -1
    for (i = 1; i <= cnt; i++) if (op[i] ~ /^ACQBULK/) { w = i; break }
    for (i = 1; i < w && wr == ""; i++) {
        if (op[i] ~ /^BRA/ && (tgt[i] >= 0 || (fwd[i] >= 0 && fwd[i] <= addr[w]))) continue
        if (op[i] ~ /^(LD|ST|ATOM|RED|CCTL|BRA|BRX|JMP|JMX|EXIT|BAR|CALL|RET|SYNCS|UTMA|UBLKCP|MEMBAR)/ && op[i] !~ /^(LDC|CCTL(\.[A-Z0-9]+)*\.PF[12])/) {
            if (early == "") { early = op[i]; sub(/ .*/, "", early) }
            if (op[i] ~ /^(ST|ATOM|RED|EXIT|CALL|RET|SYNCS|UTMA|UBLKCP)/ && op[i] !~ /^(STS|STL)/) { wr = op[i]; sub(/ .*/, "", wr) }
        }
    }
    if (w > 0) wait[f] = early == "" ? "first" : wr == "" ? "reads first" : "after " wr
    cnt = 0
}
/Function :/ { flush(); f = $3; names[f] = 1; next }
f != "" && /^[ \t]+\/\*[0-9a-f]+\*\/[ \t]/ {
    n[f]++
    cnt++
    a = $0; sub(/^[ \t]+\/\*/, "", a); sub(/\*\/.*/, "", a); addr[cnt] = hex(a)
    body = $0; sub(/^[ \t]+\/\*[0-9a-f]+\*\/[ \t]+/, "", body); sub(/^@!?U?P[0-9T] /, "", body)
    op[cnt] = body
    tgt[cnt] = -1; fwd[cnt] = -1
    if (match(body, /^BRA (!?U?P[0-9T], )?(`\(\.L_x_[0-9]+\) )?0x[0-9a-f]+/)) {
        t = substr(body, RSTART, RLENGTH); sub(/.* /, "", t); tgt[cnt] = hex(t)
        if (tgt[cnt] > addr[cnt]) { fwd[cnt] = tgt[cnt]; tgt[cnt] = -1 }
    }
    if (match($0, /[ \t](LDG|LDL|STL|LDS|LD|IDP|IMMA|HMMA)(\.[A-Z0-9_]+)*[ \t]/)) {
        o = substr($0, RSTART + 1, RLENGTH - 2)
        if (o ~ /^LDG/) {
            if (o ~ /\.128/) g128[f]++; else if (o ~ /\.64/) g64[f]++;
            else if (o ~ /\.(U8|S8|U16|S16)/) gn[f]++; else g32[f]++
        } else if (o ~ /^LDS/) s[f]++
        else if (o ~ /^LDL/ || o ~ /^STL/) loc[f]++
        else if (o ~ /^LD/) { if (o ~ /\.128/) l128[f]++; else l[f]++ }
        else if (o ~ /^IDP/) idp[f]++
        else if (o ~ /^IMMA/) imma[f]++
        else if (o ~ /^HMMA/) hmma[f]++
    }
}
END {
    flush()
    for (f in names)
        printf "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", f, n[f], g32[f], g64[f], g128[f], gn[f],
               l128[f], l[f], s[f], idp[f], imma[f], hmma[f], loc[f], loop[f] ? loop[f] " / " loopops[f] " / " loopcv[f] : "-", wait[f]
}' "$tmp/sass" | sort >"$tmp/raw"
cut -f1 "$tmp/raw" | c++filt | sed 's/(.*//; s/^void //' >"$tmp/names"
cut -f2- "$tmp/raw" | paste "$tmp/names" - | { if [ -n "$filter" ]; then grep -E -- "$filter" || true; else cat; fi; } >"$tmp/rows"
[ -s "$tmp/rows" ] || { echo "sass-mix: no kernel matches --filter '$filter'" >&2; exit 1; }

echo "SASS for $arch, $(wc -l <"$tmp/rows") kernels of $objdir (cuobjdump: $cuobjdump)"
echo
echo "| kernel | instructions | LDG 4 B | LDG 8 B | LDG 16 B | LDG 1-2 B | LD 16 B | LD other | LDS | IDP.4A | IMMA | HMMA | local | hot loop: instructions / dots / I2F | wait |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
awk -F'\t' '{ printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; printf "\n" }' "$tmp/rows"

if [ "$check" = 1 ]; then
    bad=0
    while IFS=$'\t' read -r name _ _ _ _ _ _ _ _ _ imma hmma loc _ wait; do
        case "$name" in
        k_mmq\<*|k_mmq_wide\<*) [ "$imma" -gt 0 ] || { echo "sass-mix: $name has no IMMA (tensor cores unused)" >&2; bad=1; } ;;
        k_mmf\<*|k_attention\<*) [ "$hmma" -gt 0 ] || { echo "sass-mix: $name has no HMMA (tensor cores unused)" >&2; bad=1; } ;;
        esac
        [ "$loc" -eq 0 ] || { echo "sass-mix: $name uses local memory ($loc LDL/STL)" >&2; bad=1; }
        case "$name" in
        k_mma_rate*) ;;
        k_attention\<*,\ true\>|k_mmq\<*|k_gemv\<*)
            case "$wait" in first|"reads first") ;;
            *) echo "sass-mix: $name: griddepcontrol.wait (slm_pdl_begin) not before its first write or exit: $wait" >&2; bad=1 ;;
            esac ;;
        *) [ "$wait" = first ] || { echo "sass-mix: $name: griddepcontrol.wait (slm_pdl_begin) not first: $wait" >&2; bad=1; } ;;
        esac
    done <"$tmp/rows"
    [ "$bad" = 0 ] || exit 1
    echo
    echo "check: IMMA in every k_mmq and k_mmq_wide, HMMA in every k_mmf and k_attention, no local memory, the wait first in every kernel but k_mma_rate, the decode attention, the GEMV and the narrow MMQ (before their first write or exit): ok"
fi
