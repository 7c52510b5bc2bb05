# tests/gateway_lib.sh - sourced by the gateway's tests: starts a real `slmd serve` on a
# temporary socket and `slm-gateway` in front of it on a free port (--listen 127.0.0.1:0, the
# port read from its log), and stops both on exit. Sets tmp, sock, url, gateway_pid, daemon_pid;
# GATEWAY_ARGS adds options to slm-gateway. Exits 77 when the model is absent, or slm-gateway
# was not configured (no libmicrohttpd).
slmd=${SLMD:?SLMD must name the slmd binary}
bin=$(dirname "$slmd")
slm=$bin/slm
# CTest sets SLM_GATEWAY when the build has slm-gateway (libmicrohttpd was found); by hand, the
# one beside slmd.
gateway=${SLM_GATEWAY:-$bin/slm-gateway}
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
if [ -z "${SLM_GATEWAY:-}" ] && [ ! -x "$gateway" ]; then
  echo "skip: no slm-gateway (libmicrohttpd-dev was missing when the build was configured)"; exit 77
fi
[ -x "$gateway" ] || { echo "FAIL $gateway is not built"; exit 1; }
tmp=$(mktemp -d)
sock=$tmp/slmd.sock
"$slmd" serve --socket "$sock" --model "$model" --kv-cache-mem 256M --threads 2 --log-level warning \
  2>"$tmp/daemon.log" &
daemon_pid=$!
gateway_pid=
trap 'kill $gateway_pid $daemon_pid 2>/dev/null; wait $gateway_pid $daemon_pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 300); do
  "$slm" --socket "$sock" info >/dev/null 2>&1 && break
  kill -0 $daemon_pid 2>/dev/null || { echo "FAIL slmd serve exited:"; cat "$tmp/daemon.log"; exit 1; }
  sleep 0.1
done
# shellcheck disable=SC2086
"$gateway" --socket "$sock" --listen 127.0.0.1:0 --log-level info ${GATEWAY_ARGS:-} 2>"$tmp/gateway.log" &
gateway_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/gateway.log")
  [ -n "$port" ] && break
  kill -0 $gateway_pid 2>/dev/null || { echo "FAIL slm-gateway exited:"; cat "$tmp/gateway.log"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "FAIL slm-gateway did not say where it listens:"; cat "$tmp/gateway.log"; exit 1; }
url=http://127.0.0.1:$port
export SLM_SOCKET=$sock

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# both_up WHEN: slmd and slm-gateway are still running and the gateway answers /health.
both_up() {
  if kill -0 $daemon_pid 2>/dev/null && kill -0 $gateway_pid 2>/dev/null &&
     [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ]; then
    ok "$1: slmd and slm-gateway are up"
  else
    bad "$1: a process died or /health fails"; tail -5 "$tmp/gateway.log" "$tmp/daemon.log"
  fi
}

# expect_idle WHEN: within 5 s slmd runs no request and holds no KV block.
expect_idle() {
  for _ in $(seq 50); do
    "$slm" stats --json >"$tmp/st.json"
    [ "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["requests_active"], d["kv_blocks_used"])' "$tmp/st.json")" = "0 0" ] &&
      { ok "$1: slmd runs no request and holds no KV block"; return; }
    sleep 0.1
  done
  bad "$1: $(cat "$tmp/st.json")"
}
