# bench/gpu/common.sh - sourced (POSIX sh) by bench/gpu/run.sh and bench/gpu/compare-llama-cpp.sh.
# Each function prints its errors as one line "$GPU_PROG: ..." on stderr and returns 1.
#   gpu_use_deps DIR        unpacks DIR/*.deb (bench/gpu/fetch-deps.sh) under /tmp/slm-deps and points
#                           pkg-config, the linker and the loader there (exported), leaving / alone
#   gpu_join_model DIR PART...
#                           joins the parts in the order given (a quoted glob expands in sorted order)
#                           and prints DIR/NAME, NAME being the file of the model of packaging/models.tsv whose
#                           pinned sha256 the join has; a join that matches no pin is an error, and
#                           nothing is left behind
# GPU_ROOT must name the repository's root.
GPU_PROG=${GPU_PROG:-$(basename "$0")}

gpu_use_deps() {
    [ -d "$1" ] || { echo "$GPU_PROG: --deps $1: no such folder (bench/gpu/fetch-deps.sh makes it)" >&2; return 1; }
    set -- "$1"/*.deb
    [ -f "$1" ] || { echo "$GPU_PROG: --deps: no .deb files in $(dirname "$1") (bench/gpu/fetch-deps.sh)" >&2; return 1; }
    # The -dev packages' headers, libraries and .pc files, under a root of their own (unpacking
    # them over / could break the machine); pkg-config looks only there.
    mkdir -p /tmp/slm-deps
    for f in "$@"; do
        dpkg -x "$f" /tmp/slm-deps || { echo "$GPU_PROG: --deps: dpkg -x $f failed" >&2; return 1; }
    done
    lib=/tmp/slm-deps/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_LIBDIR="$lib/pkgconfig:/tmp/slm-deps/usr/share/pkgconfig"
    export PKG_CONFIG_SYSROOT_DIR=/tmp/slm-deps
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
}

# The pins: "SHA256 FILE" a line, read from the model catalogue packaging/models.tsv (NAME, FILE,
# SHA256, packages; tab-separated, # comments).
gpu_model_pins() {
    awk -F '\t' '$0 !~ /^#/ && NF >= 3 { print $3, $2 }' "$GPU_ROOT/packaging/models.tsv"
}

gpu_join_model() {
    dest=$1
    shift
    [ $# -ge 1 ] || { echo "$GPU_PROG: --model-parts needs at least one file" >&2; return 1; }
    mkdir -p "$dest" || { echo "$GPU_PROG: cannot create $dest" >&2; return 1; }
    tmp="$dest/.join.$$"
    : > "$tmp" || { echo "$GPU_PROG: cannot write $tmp" >&2; return 1; }
    n=0
    old_ifs=$IFS
    IFS='
'
    for pattern in "$@"; do
        for part in $pattern; do   # unquoted: a glob expands here, in sorted order
            if [ ! -f "$part" ] || [ ! -r "$part" ]; then
                IFS=$old_ifs
                rm -f "$tmp"
                echo "$GPU_PROG: model part $part: no such readable file" >&2
                return 1
            fi
            cat "$part" >> "$tmp" || { IFS=$old_ifs; rm -f "$tmp"; echo "$GPU_PROG: cannot append $part" >&2; return 1; }
            n=$((n + 1))
        done
    done
    IFS=$old_ifs
    sum=$(sha256sum "$tmp" | cut -d' ' -f1)
    name=$(gpu_model_pins | awk -v s="$sum" '$1 == s { print $2; exit }')
    if [ -z "$name" ]; then
        size=$(wc -c < "$tmp")
        rm -f "$tmp"
        echo "$GPU_PROG: the $n model parts joined ($size bytes, sha256 $sum) match no model pinned in packaging/models.tsv: a part is missing, truncated or out of order" >&2
        return 1
    fi
    mv -f "$tmp" "$dest/$name" || { rm -f "$tmp"; echo "$GPU_PROG: cannot write $dest/$name" >&2; return 1; }
    echo "$GPU_PROG: $n model parts joined into $dest/$name (sha256 matches the pin)" >&2
    echo "$dest/$name"
}
