#!/usr/bin/env bash
# tests/test_deb.sh - the Debian packages CPack makes (slmd, libslm0, libslm-dev, slm-gateway) from a build
# configured for /usr (-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc; skipped
# otherwise): each holds its files, libslm-dev depends on libslm0, slmd.conf is a conffile,
# and the unpacked slmd and slm run and name their version. Installing with dpkg -i and
# starting the unit is left to a throwaway machine (it changes the system).
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
build=$(dirname "$slmd")
cache=$build/CMakeCache.txt
command -v cpack >/dev/null && command -v dpkg-deb >/dev/null || { echo "skip: needs cpack and dpkg-deb"; exit 77; }
[ -f "$cache" ] || { echo "skip: $build is not a CMake build directory"; exit 77; }
cached() { sed -n "s/^$1:[A-Z]*=//p" "$cache"; }
if [ "$(cached CMAKE_INSTALL_PREFIX)" != /usr ] || [ "$(cached CMAKE_INSTALL_SYSCONFDIR)" != /etc ]; then
  echo "skip: configure with -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc to make packages"; exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

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
exit $fail
