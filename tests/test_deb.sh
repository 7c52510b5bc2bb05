#!/usr/bin/env bash
# tests/test_deb.sh - the Debian packages CPack makes (slmd, libslm0, libslm-dev, slm-gateway): each
# holds its files, libslm-dev depends on libslm0, slmd.conf is a conffile, and the unpacked slmd
# and slm run and name their version. Then the packages are installed with `dpkg -i` into a
# container-free chroot: an overlay of / in a private mount namespace (unshare), so the machine
# itself is not changed and the host's dpkg database resolves the dependencies. slmd is started
# there from its own units as systemd would (tests/unit_start.py: the socket passed as fd 3, a
# dynamic uid, Type=notify's READY=1, the watchdog, reload, stop), and the packaged `slm generate`,
# run as another unprivileged uid, must give the text of `slmd run` from this build.
# The packages come from a build configured for /usr (-DCMAKE_INSTALL_PREFIX=/usr
# -DCMAKE_INSTALL_SYSCONFDIR=/etc): this build when it is one, else one this test configures in
# BUILD/deb-usr (CPU only; a few minutes the first time, incremental after).
# The install part needs root, unshare, overlayfs, python3 and the default model; without them
# the test says which and is skipped (77) after the package checks.
set -u
if [ "${1:-}" = --in-namespace ]; then shift; in_namespace=1; else in_namespace=0; fi
slmd=${SLMD:?SLMD must name the slmd binary}
src=$(cd "$(dirname "$0")/.." && pwd)
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# ---- inside the namespace: install, start, ask, stop (arguments: TMP DEBS...)
if [ $in_namespace = 1 ]; then
  tmp=$1; shift
  fail=0
  m=$tmp/root
  mkdir -p "$tmp/upper" "$tmp/work" "$m"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$m" || { echo "FAIL overlay mount"; exit 1; }
  mount -t proc proc "$m/proc" && mount --rbind /dev "$m/dev" && mount -t tmpfs tmpfs "$m/run" &&
    mount -t tmpfs tmpfs "$m/tmp" || { echo "FAIL mounting /proc, /dev, /run, /tmp in the root"; exit 1; }
  dpkg --root="$m" --log=/dev/null -i "$@" >"$tmp/dpkg.log" 2>&1 && ok "dpkg -i: $(grep -c '^Setting up' "$tmp/dpkg.log") packages set up" \
    || { bad "dpkg -i:"; tail -20 "$tmp/dpkg.log"; exit 1; }
  for p in slmd libslm0 libslm-dev; do
    dpkg --root="$m" -s "$p" 2>/dev/null | grep -qx 'Status: install ok installed' && ok "dpkg: $p installed" || bad "dpkg: $p not installed"
  done
  [ -x "$m/usr/bin/slmd" ] && [ ! -e /usr/bin/slmd ] && ok "installed in the chroot only" || bad "/usr/bin/slmd: chroot $(ls "$m/usr/bin/slmd" 2>&1), host $(ls /usr/bin/slmd 2>&1)"
  v=$(chroot "$m" /usr/bin/slm --version 2>&1) && ok "chroot: $v" || bad "chroot slm --version: $v"
  # The model: the unit's Environment=SLM_MODEL_DIR names the store the service resolves in.
  store=$(sed -n 's/^Environment=SLM_MODEL_DIR=//p' "$m/usr/lib/systemd/system/slmd.service")
  [ -n "$store" ] || { bad "slmd.service sets no SLM_MODEL_DIR"; exit 1; }
  mkdir -p "$m$store" && mount --bind "$SLM_MODEL_DIR" "$m$store" && mount -o remount,bind,ro "$m$store" \
    || { bad "binding the model store at $store"; exit 1; }
  prompt="The capital of France is"
  python3 "$src/tests/unit_start.py" "$m" --client-out "$tmp/client.out" -- \
    /usr/bin/slm generate -n 8 --temperature 0 "$prompt" || fail=1
  "$slmd" run --model "$SLM_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" -p "$prompt" -n 8 --temperature 0 \
    >"$tmp/run.out" 2>/dev/null || bad "slmd run (this build) failed"
  cmp -s "$tmp/client.out" "$tmp/run.out" && ok "the packaged slm generate gives slmd run's text: $(tr '\n' ' ' <"$tmp/run.out")" \
    || bad "packaged: '$(cat "$tmp/client.out")', this build's slmd run: '$(cat "$tmp/run.out")'"
  exit $fail
fi

build=$(dirname "$slmd")
command -v cpack >/dev/null && command -v dpkg-deb >/dev/null || { echo "skip: needs cpack and dpkg-deb"; exit 77; }
[ -f "$build/CMakeCache.txt" ] || { echo "skip: $build is not a CMake build directory"; exit 77; }
cached() { sed -n "s/^$1:[A-Z]*=//p" "$cache"; }
cache=$build/CMakeCache.txt
if [ "$(cached CMAKE_INSTALL_PREFIX)" != /usr ] || [ "$(cached CMAKE_INSTALL_SYSCONFDIR)" != /etc ]; then
  build=$build/deb-usr
  echo "note: packaging from $build (configured for /usr; CPU only)"
  cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc -DSLM_CUDA=OFF \
    -DSLM_EMU=OFF -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 || { echo "FAIL configuring $build:"; tail -20 "$build.log"; exit 1; }
  cache=$build/CMakeCache.txt
fi
targets=(slmd slm_cli slm slm_static man)
cmake --build "$build" --target help | grep -q '[ :]slm-gateway$' && targets+=(slm-gateway)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >"$build.build.log" 2>&1 \
  || { echo "FAIL building ${targets[*]} in $build:"; tail -20 "$build.build.log"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0

(cd "$build" && cpack -G DEB -B "$tmp/out" >"$tmp/cpack.log" 2>&1) || { echo "FAIL cpack:"; tail -20 "$tmp/cpack.log"; exit 1; }
deb() { ls "$tmp"/out/"$1"_*.deb 2>/dev/null | head -1; }
has() {   # PACKAGE PATH...
  local p=$1 f; shift
  local d; d=$(deb "$p")
  [ -n "$d" ] || { bad "no $p package in $(ls "$tmp/out")"; return; }
  dpkg-deb -c "$d" | awk '{ print ($(NF-1) == "->" ? $(NF-2) : $NF) }' >"$tmp/$p.list"
  for f in "$@"; do
    grep -qx "\./${f#/}" "$tmp/$p.list" && ok "$p: $f" || bad "$p lacks $f"
  done
}
has slmd /usr/bin/slmd /usr/bin/slm /usr/lib/systemd/system/slmd.service /usr/lib/systemd/system/slmd.socket \
  /etc/slmd/slmd.conf /usr/share/slmd/models.tsv /usr/share/slmd/fetch-models.sh /usr/share/man/man8/slmd.8 \
  /usr/share/man/man1/slm.1 /usr/share/man/man5/slmd.conf.5 /usr/share/bash-completion/completions/slm \
  /usr/share/doc/slmd/README.md
lib=/usr/$(cached CMAKE_INSTALL_LIBDIR)
has libslm0 $lib/libslm.so.0 "$lib/libslm.so.$(cached CMAKE_PROJECT_VERSION)"
has libslm-dev /usr/include/slm.h $lib/pkgconfig/slm.pc $lib/libslm.a $lib/libslm.so
grep -q 'libslm' "$tmp/slmd.list" && bad "slmd carries libslm" || ok "slmd carries no libslm (slm is linked statically)"
if [ -x "$build/slm-gateway" ]; then   # built where libmicrohttpd is
  has slm-gateway /usr/bin/slm-gateway /usr/lib/systemd/system/slm-gateway.service
  grep -qE 'bin/slm-gateway$|slm-gateway\.service$' "$tmp/slmd.list" && bad "slmd carries slm-gateway" || ok "slmd carries no slm-gateway"
  dpkg-deb -f "$(deb slm-gateway)" Depends | grep -q 'slmd (= ' && ok "slm-gateway depends on slmd" \
    || bad "slm-gateway Depends: $(dpkg-deb -f "$(deb slm-gateway)" Depends)"
else
  echo "note: slm-gateway is not built here (no libmicrohttpd): its package is not checked"
fi
dpkg-deb -f "$(deb libslm-dev)" Depends | grep -q 'libslm0 (= ' && ok "libslm-dev depends on libslm0" \
  || bad "libslm-dev Depends: $(dpkg-deb -f "$(deb libslm-dev)" Depends)"
dpkg-deb -f "$(deb slmd)" Depends | grep -q 'libpcre2' && ok "slmd depends on its libraries: $(dpkg-deb -f "$(deb slmd)" Depends)" \
  || bad "slmd Depends: $(dpkg-deb -f "$(deb slmd)" Depends)"
dpkg-deb --ctrl-tarfile "$(deb slmd)" | tar -xO ./conffiles 2>/dev/null | grep -qx /etc/slmd/slmd.conf \
  && ok "slmd.conf is a conffile" || bad "slmd.conf is not a conffile"
dpkg-deb -x "$(deb slmd)" "$tmp/root"
grep -q '^ExecStart=/usr/bin/slmd serve --config /etc/slmd/slmd.conf' "$tmp/root/usr/lib/systemd/system/slmd.service" \
  && ok "the unit runs /usr/bin/slmd with /etc/slmd/slmd.conf" || bad "the unit: $(grep ExecStart "$tmp/root/usr/lib/systemd/system/slmd.service")"
v=$("$tmp/root/usr/bin/slmd" --version | head -1) && [[ $v == slmd\ * ]] && ok "the packaged slmd runs: $v" || bad "packaged slmd: $v"
v=$("$tmp/root/usr/bin/slm" --version) && [[ $v == slm\ * ]] && ok "the packaged slm runs: $v" || bad "packaged slm: $v"
[ $fail = 0 ] || exit 1

# ---- dpkg -i into the chroot, the service started from its units
why=
[ "$(id -u)" = 0 ] || why="not root"
command -v unshare >/dev/null && command -v python3 >/dev/null && command -v chroot >/dev/null || why="${why:+$why; }needs unshare, chroot and python3"
[ -f "${SLM_MODEL_DIR:-}/SmolLM2-135M-Instruct.Q4_1.gguf" ] || why="${why:+$why; }no default model in SLM_MODEL_DIR (packaging/fetch-models.sh)"
[ -z "$why" ] && { grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null; grep -qw overlay /proc/filesystems || why="no overlayfs"; }
if [ -n "$why" ]; then echo "skip: the packages are right; installing them: $why"; exit 77; fi
debs=()
for p in libslm0 slmd libslm-dev slm-gateway; do d=$(deb "$p"); [ -n "$d" ] && debs+=("$d"); done
unshare --mount --propagation private bash "$0" --in-namespace "$tmp/ns" "${debs[@]}"
rc=$?
[ ! -e /usr/bin/slmd ] && ! dpkg -s slmd >/dev/null 2>&1 && ok "the machine is unchanged (no /usr/bin/slmd, no slmd in its dpkg database)" \
  || bad "the machine has slmd installed after the test"
[ $rc = 0 ] && exit $fail || exit 1
