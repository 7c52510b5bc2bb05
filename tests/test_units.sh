#!/usr/bin/env bash
# tests/test_units.sh - packaging/slmd.service, slmd.socket and slm-gateway.service pass `systemd-analyze verify`
# (with ExecStart pointing at the built slmd), and a unit with a mistake does not (so the
# check can fail).
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
src=${SLM_TEST_DATA:-$(dirname "$0")}/../packaging
command -v systemd-analyze >/dev/null || { echo "skip: no systemd-analyze"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
cp "$src/slmd.socket" "$tmp/"
sed "s|^ExecStart=[^ ]*|ExecStart=$(readlink -f "$slmd")|" "$src/slmd.service" > "$tmp/slmd.service"
if out=$(cd "$tmp" && systemd-analyze verify --man=no ./slmd.socket ./slmd.service 2>&1) && [ -z "$out" ]; then
  echo "ok   systemd-analyze verify: slmd.socket slmd.service"
else
  echo "FAIL systemd-analyze verify:"; echo "$out"; fail=1
fi
gateway=$(dirname "$slmd")/slm-gateway
if [ -x "$gateway" ]; then
  sed "s|^ExecStart=[^ ]*|ExecStart=$(readlink -f "$gateway")|" "$src/slm-gateway.service" > "$tmp/slm-gateway.service"
  if out=$(cd "$tmp" && systemd-analyze verify --man=no ./slmd.socket ./slmd.service ./slm-gateway.service 2>&1) && [ -z "$out" ]; then
    echo "ok   systemd-analyze verify: slm-gateway.service"
  else
    echo "FAIL systemd-analyze verify slm-gateway.service:"; echo "$out"; fail=1
  fi
fi
mkdir "$tmp/bad"
cp "$tmp/slmd.socket" "$tmp/bad/"
sed 's/^Type=notify/Type=notifyy/' "$tmp/slmd.service" > "$tmp/bad/slmd.service"
if out=$(cd "$tmp/bad" && systemd-analyze verify --man=no ./slmd.socket ./slmd.service 2>&1) && [ -z "$out" ]; then
  echo "FAIL a unit with Type=notifyy passed verification"; fail=1
else
  echo "ok   a broken unit is caught: $(echo "$out" | head -1)"
fi
exit $fail
