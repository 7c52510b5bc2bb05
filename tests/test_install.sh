#!/usr/bin/env bash
# tests/test_install.sh - `cmake --install` of the build that made $SLMD, into a temporary prefix:
# every file in its place (binaries, libslm shared with its soname links and static, slm.h,
# slm.pc, the systemd units naming the configured slmd, slmd.conf, the docs); `slm` carries no
# engine; the example program (installed with the docs) builds through pkg-config, shared and
# static, and runs against the installed slmd, and fails cleanly with no daemon.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
build=$(cd "$(dirname "$slmd")" && pwd)
cache=$build/CMakeCache.txt
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$cache" ] || { echo "skip: $build is not a CMake build directory"; exit 77; }
for tool in cc pkg-config readelf nm; do
  command -v $tool >/dev/null || { echo "skip: no $tool"; exit 77; }
done
tmp=$(mktemp -d)
daemon=
trap '[ -n "$daemon" ] && kill $daemon 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
cached() { sed -n "s/^$1:[A-Z]*=//p" "$cache"; }

prefix=$tmp/prefix
if ! cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  bad "cmake --install failed:"; cat "$tmp/install.log"; exit 1
fi
# GNUInstallDirs caches what it was given; an empty DOCDIR means its default.
libdir=$(cached CMAKE_INSTALL_LIBDIR)
sysconfdir=$(cached CMAKE_INSTALL_SYSCONFDIR)
docdir=$(cached CMAKE_INSTALL_DOCDIR); docdir=${docdir:-$(cached CMAKE_INSTALL_DATAROOTDIR)/doc/slmd}
unitdir=$(cached SLM_SYSTEMD_UNITDIR)
configured=$(cached CMAKE_INSTALL_PREFIX)
case $sysconfdir in /*) echo "skip: CMAKE_INSTALL_SYSCONFDIR is absolute ($sysconfdir)"; exit 77 ;; esac

datadir=$(cached CMAKE_INSTALL_DATAROOTDIR); datadir=${datadir:-share}
for f in bin/slmd bin/slm "$datadir/slmd/fetch-models.sh"; do
  [ -x "$prefix/$f" ] && ok "$f" || bad "$f is missing or not executable"
done
for f in "$libdir/libslm.a" include/slm.h "$libdir/pkgconfig/slm.pc" "$unitdir/slmd.service" \
         "$unitdir/slmd.socket" "$sysconfdir/slmd/slmd.conf" "$docdir/README.md" "$docdir/client.md" \
         "$docdir/generate.c" "$datadir/slmd/models.tsv" "$datadir/man/man1/slm.1" "$datadir/man/man8/slmd.8" \
         "$datadir/man/man1/slm-bench.1" "$datadir/man/man5/slmd.conf.5" "$datadir/bash-completion/completions/slm" \
         "$datadir/bash-completion/completions/slmd"; do
  [ -f "$prefix/$f" ] && ok "$f" || bad "$f is missing"
done
# libslm.so -> libslm.so.0 -> libslm.so.X.Y.Z, soname libslm.so.0.
so=$prefix/$libdir/libslm.so
if [ -L "$so" ] && [ "$(readlink "$so")" = libslm.so.0 ] && [ -L "$so.0" ] && [ -f "$(readlink -f "$so")" ] &&
   readelf -d "$so" | grep -q 'SONAME.*\[libslm\.so\.0\]'; then
  ok "libslm.so -> libslm.so.0 -> $(readlink "$so.0"), soname libslm.so.0"
else
  bad "libslm.so links or soname: $(ls -l "$prefix/$libdir" | grep libslm)"
fi
# The unit starts the slmd of the configured prefix with the installed configuration file.
want="ExecStart=$configured/bin/slmd serve --config "
grep -q "^$want" "$prefix/$unitdir/slmd.service" && grep -q "^ExecStart=.* --config [^ ]*/slmd/slmd.conf" \
  "$prefix/$unitdir/slmd.service" && ok "slmd.service: $(grep ^ExecStart "$prefix/$unitdir/slmd.service")" \
  || bad "slmd.service: expected '$want...', got '$(grep ^ExecStart "$prefix/$unitdir/slmd.service")'"
# slm-gateway, where it was built (libmicrohttpd found), and its unit naming it.
if [ -x "$build/slm-gateway" ]; then
  want="ExecStart=$configured/bin/slm-gateway "
  [ -x "$prefix/bin/slm-gateway" ] && grep -q "^$want" "$prefix/$unitdir/slm-gateway.service" &&
    ok "slm-gateway and its unit: $(grep ^ExecStart "$prefix/$unitdir/slm-gateway.service")" ||
    bad "slm-gateway: bin/slm-gateway or slm-gateway.service ('$want...') is missing"
fi
# slm talks to the daemon through libslm only: no engine, tokenizer or kernel inside.
n=$(nm "$prefix/bin/slm" 2>/dev/null | grep -c -E ' [TtDdBb] (slm_engine_|slm_tok_|slm_model_|slm_matmul)')
m=$(nm "$prefix/bin/slm" 2>/dev/null | grep -c ' T slm_connect$')
[ "$n" = 0 ] && [ "$m" = 1 ] && ok "slm links libslm and no engine" || bad "slm: $n engine symbols, slm_connect $m"

# The example, built as its comment says: through pkg-config.
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
flags=$(pkg-config --cflags --libs slm) || { bad "pkg-config --cflags --libs slm failed"; exit 1; }
version=$(pkg-config --modversion slm)
[ "$version" = "$(cached CMAKE_PROJECT_VERSION)" ] && ok "slm.pc: version $version, flags $flags" \
  || bad "slm.pc version $version, project $(cached CMAKE_PROJECT_VERSION)"
pkg-config --static --libs slm | grep -q -- -lpthread && ok "slm.pc: --static adds -lpthread" \
  || bad "pkg-config --static --libs slm: $(pkg-config --static --libs slm)"
extra=()
[ "$(cached SLM_SANITIZE)" = ON ] && extra=(-fsanitize=address,undefined)   # libslm itself is instrumented
# shellcheck disable=SC2086
if cc -std=c11 -Wall -Wextra -Werror "${extra[@]}" "$prefix/$docdir/generate.c" $flags -o "$tmp/generate" \
     2>"$tmp/cc.err" &&
   cc -std=c11 "${extra[@]}" "$prefix/$docdir/generate.c" $(pkg-config --cflags slm) \
     "$prefix/$libdir/libslm.a" $(pkg-config --static --libs-only-l slm | sed 's/-lslm//') -o "$tmp/generate-static" \
     2>>"$tmp/cc.err"; then
  ok "the example builds with pkg-config, shared and static"
else
  bad "the example does not build:"; cat "$tmp/cc.err"; exit 1
fi
export LD_LIBRARY_PATH=$prefix/$libdir
ldd "$tmp/generate" | grep -q "libslm.so.0 => $prefix/$libdir/libslm.so.0" && ok "the example loads the installed libslm" \
  || bad "the example's libslm: $(ldd "$tmp/generate" | grep slm)"
"$tmp/generate" hi "$tmp/none.sock" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 3 ] && grep -q "cannot connect to slmd: connect $tmp/none.sock" "$tmp/err" && ok "no daemon: exit 3: $(cat "$tmp/err")" \
  || bad "no daemon: exit $rc: $(cat "$tmp/err")"
"$tmp/generate" >/dev/null 2>&1; [ $? = 1 ] && ok "no prompt: exit 1" || bad "the example without a prompt"

# Live: the installed slmd, the installed slm and the example.
if [ ! -f "$model" ]; then
  echo "skip (live part): $model is absent"
  exit $fail
fi
sock=$tmp/slmd.sock
"$prefix/bin/slmd" serve --socket "$sock" --model "$model" --kv-cache-mem 64M --threads 2 --log-level warning \
  2>"$tmp/daemon.log" &
daemon=$!
for _ in $(seq 300); do
  "$prefix/bin/slm" --socket "$sock" info >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { bad "the installed slmd exited:"; cat "$tmp/daemon.log"; exit 1; }
  sleep 0.1
done
for bin in "$tmp/generate" "$tmp/generate-static"; do
  out=$("$bin" "The capital of France is" "$sock" 2>&1); rc=$?
  want=$("$prefix/bin/slm" --socket "$sock" generate "The capital of France is" --temperature 0 --max-tokens 64)
  if [ $rc = 0 ] && [[ "$out" == "$want"* ]] && [[ "$out" =~ \[5\ prompt\ tokens.*generated,\ finish:\ (stop|length)\]$ ]]; then
    ok "$(basename "$bin") against the installed slmd: $(echo "$out" | tail -1)"
  else
    bad "$(basename "$bin"): exit $rc: '$out', slm gave '$want'"
  fi
done
exit $fail
