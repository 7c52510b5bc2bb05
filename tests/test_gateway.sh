#!/usr/bin/env bash
# tests/test_gateway.sh - slm-gateway with curl, in front of a real slmd (tests/gateway_lib.sh),
# an API key required:
#   - every kind of bad input gets its status and an error in OpenAI's shape (type, message),
#     and afterwards slmd and the gateway are both up: invalid JSON, wrong types, out-of-range
#     values, n > 1, an unknown model, an unknown path, a wrong method, a 10 MB body, a huge
#     header, a prompt longer than the context, an id outside the vocabulary, no or a bad key;
#   - a slow client (headers never finished) is cut off after --timeout and blocks nobody; an
#     answer that takes longer than --timeout still comes, and an idle keep-alive is then closed;
#   - a client that hangs up mid-stream, or before a whole answer, cancels its request in slmd;
#   - /health, /v1/models, /tokenize and /detokenize, /metrics (vLLM's names), SSE framing;
#   - slm-bench --target openai measures through it (every token counted);
#   - slmd down: 503; slmd restarted: served again at once;
#   - SIGTERM with requests in flight: a prompt exit 0, and slmd cancels them.
set -u
command -v curl >/dev/null || { echo "skip: curl is absent"; exit 77; }
here=$(cd "$(dirname "$0")" && pwd)
echo "the key" >"${TMPDIR:-/tmp}/slm-gateway-key.$$"
GATEWAY_ARGS="--api-key-file ${TMPDIR:-/tmp}/slm-gateway-key.$$ --timeout 2 --max-body 1M"
. "$here/gateway_lib.sh"
mv "${TMPDIR:-/tmp}/slm-gateway-key.$$" "$tmp/key"
auth="Authorization: Bearer the key"

# expect NAME STATUS CODE_OR_EMPTY CURL_ARGS...: the status, and an OpenAI error object
# ({"error": {"message", "type", ...}}) with that code when one is given.
expect() {
  local name=$1 status=$2 code=$3; shift 3
  local got
  got=$(curl -s -o "$tmp/body" -w '%{http_code}' "$@")
  if [ "$got" != "$status" ]; then
    bad "$name: expected HTTP $status, got $got: $(head -c 300 "$tmp/body")"
    return
  fi
  if [ "$status" -ge 400 ] && [ "$status" != 431 ]; then
    if ! python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["message"] and e["type"]; assert not sys.argv[2] or e["code"]==sys.argv[2], e' \
         "$tmp/body" "$code" 2>/dev/null; then
      bad "$name: not an OpenAI error with code '$code': $(head -c 300 "$tmp/body")"
      return
    fi
    ok "$name: $status $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"]["message"])' "$tmp/body")"
  else
    ok "$name: $status"
  fi
}
c=$url/v1/completions
h=(-H "$auth" -H 'Content-Type: application/json')

# ---- the API key
expect "no key" 401 invalid_api_key "$url/v1/models"
expect "a bad key" 401 invalid_api_key -H "Authorization: Bearer nope" "$url/v1/models"
expect "not Bearer" 401 invalid_api_key -H "Authorization: Basic dGhlIGtleQ==" "$c" -d '{"prompt":"x"}'
expect "the key" 200 "" -H "$auth" "$url/v1/models"
expect "/health needs no key" 200 "" "$url/health"

# ---- bad input
expect "invalid JSON" 400 invalid_json "${h[@]}" "$c" -d '{"prompt": "x",'
expect "an empty body" 400 invalid_json "${h[@]}" "$c" -d ''
expect "not an object" 400 invalid_json "${h[@]}" "$c" -d '["x"]'
expect "prompt missing" 400 missing_required_parameter "${h[@]}" "$c" -d '{"max_tokens": 1}'
expect "prompt a number" 400 invalid_type "${h[@]}" "$c" -d '{"prompt": 5}'
expect "max_tokens a string" 400 invalid_type "${h[@]}" "$c" -d '{"prompt": "x", "max_tokens": "5"}'
expect "temperature 3" 400 invalid_value "${h[@]}" "$c" -d '{"prompt": "x", "temperature": 3}'
expect "top_p a string" 400 invalid_type "${h[@]}" "$c" -d '{"prompt": "x", "top_p": "high"}'
expect "stream not a boolean" 400 invalid_type "${h[@]}" "$c" -d '{"prompt": "x", "stream": "yes"}'
expect "stop a number" 400 invalid_type "${h[@]}" "$c" -d '{"prompt": "x", "stop": 7}'
expect "n = 2" 400 unsupported_value "${h[@]}" "$c" -d '{"prompt": "x", "n": 2}'
expect "two prompts" 400 invalid_value "${h[@]}" "$c" -d '{"prompt": ["a", "b"]}'
expect "echo" 400 unsupported_parameter "${h[@]}" "$c" -d '{"prompt": "x", "echo": true}'
expect "messages not a list" 400 invalid_type "${h[@]}" "$url/v1/chat/completions" -d '{"messages": "hi"}'
expect "a bad role" 400 invalid_value "${h[@]}" "$url/v1/chat/completions" -d '{"messages": [{"role": "robot", "content": "hi"}]}'
expect "top_logprobs 21" 400 invalid_value "${h[@]}" "$url/v1/chat/completions" \
  -d '{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21}'
expect "an unknown model" 404 model_not_found "${h[@]}" "$c" -d '{"model": "gpt-4o", "prompt": "x"}'
expect "an unknown model (GET)" 404 model_not_found -H "$auth" "$url/v1/models/gpt-4o"
expect "an unknown path" 404 not_found -H "$auth" "$url/v2/nothing"
expect "a wrong method" 405 "" -H "$auth" -X DELETE "$c"
expect "an id outside the vocabulary" 400 "" "${h[@]}" "$c" -d '{"prompt": [1, 2, 99999999]}'
python3 -c 'print("{\"prompt\": \"" + "hello " * 9000 + "\", \"max_tokens\": 1}")' >"$tmp/long.json"
expect "a prompt longer than the context" 413 context_length_exceeded "${h[@]}" "$c" --data-binary @"$tmp/long.json"
head -c 10000000 /dev/zero | tr '\0' a >"$tmp/10mb"
expect "a 10 MB body" 413 request_too_large "${h[@]}" "$c" --data-binary @"$tmp/10mb"
expect "a 10 MB body, chunked" 413 request_too_large "${h[@]}" -H "Transfer-Encoding: chunked" "$c" --data-binary @"$tmp/10mb"
expect "a 100 kB header" 431 "" -H "X-Big: $(head -c 100000 /dev/zero | tr '\0' a)" "$url/health"
both_up "after the bad input"

# ---- a slow client: headers never finished. Others are served meanwhile; it is cut off.
python3 - "$port" >"$tmp/slow.out" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-")
t = time.time()
s.settimeout(20)
try:
    data = s.recv(100)
    print("closed after %.1f s" % (time.time() - t), data)
except OSError as e:
    print("not closed:", e)
EOF
slow=$!
sleep 0.5
expect "served while a slow client hangs" 200 "" "${h[@]}" "$c" -d '{"prompt": "Hi", "max_tokens": 2}'
wait $slow
grep -q "^closed after [0-9.]* s" "$tmp/slow.out" && ok "a slow client is cut off: $(cat "$tmp/slow.out")" ||
  bad "slow client: $(cat "$tmp/slow.out")"
both_up "after the slow client"

# ---- --timeout is not applied while slmd works: an answer that takes longer still comes, on a
# keep-alive connection that is then closed once idle for --timeout.
python3 - "$port" "the key" >"$tmp/keepalive.out" 2>&1 <<'EOF'
import http.client, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=120)
t = time.time()
conn.request("POST", "/v1/completions", body='{"prompt": "Once upon a time", "max_tokens": 600, "ignore_eos": true}',
             headers={"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
r = conn.getresponse()
r.read()
took = time.time() - t
t = time.time()
data = conn.sock.recv(10)   # nothing more comes: the server closes the idle connection
print("answered %d after %.1f s; idle connection closed after %.1f s %r" % (r.status, took, time.time() - t, data))
EOF
grep -q "^answered 200 after [0-9.]* s; idle connection closed after [2-5]\.[0-9] s b''" "$tmp/keepalive.out" &&
  ok "timeout: $(cat "$tmp/keepalive.out")" || bad "timeout: $(cat "$tmp/keepalive.out")"

# ---- the endpoints
curl -s -H "$auth" "$url/v1/models" >"$tmp/models.json"
model_id=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["object"]=="list"; print(d["data"][0]["id"])' "$tmp/models.json")
[ "$model_id" = "$("$slm" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"])')" ] &&
  ok "/v1/models names slmd's model: $model_id" || bad "/v1/models: $(cat "$tmp/models.json")"
expect "/v1/models/ID" 200 "" -H "$auth" "$url/v1/models/$model_id"
curl -s "${h[@]}" "$url/tokenize" -d '{"prompt": "Hello, world"}' >"$tmp/tok.json"
ids=$(python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' "$tmp/tok.json")
[ "$ids" = "$("$slm" tokenize "Hello, world")" ] && ok "/tokenize equals slm tokenize: $ids" || bad "/tokenize: $(cat "$tmp/tok.json")"
curl -s "${h[@]}" "$url/detokenize" -d "{\"tokens\": [${ids// /, }]}" >"$tmp/detok.json"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prompt"])' "$tmp/detok.json")" = "Hello, world" ] &&
  ok "/detokenize gives the text back" || bad "/detokenize: $(cat "$tmp/detok.json")"

# SSE framing: "data: {json}" events separated by blank lines, the last "data: [DONE]".
curl -sN "${h[@]}" "$c" -d '{"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "stream": true}' >"$tmp/sse"
if python3 - "$tmp/sse" >/dev/null <<'EOF'
import json, sys
raw = open(sys.argv[1]).read()
events = raw.split("\n\n")
assert events[-1] == "", "no blank line at the end"
events = events[:-1]
assert events[-1] == "data: [DONE]", events[-1]
chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
assert all(e.startswith("data: ") for e in events)
assert all(c["object"] == "text_completion" for c in chunks)
assert chunks[-1]["choices"][0]["finish_reason"] == "length"
assert len({c["id"] for c in chunks}) == 1
print("".join(c["choices"][0]["text"] for c in chunks))
EOF
then ok "SSE: data: chunks, then data: [DONE]"; else bad "SSE framing: $(head -c 400 "$tmp/sse")"; fi

# ---- a client that hangs up cancels its request
timeout 1 curl -sN "${h[@]}" "$c" -d '{"prompt": "Once upon a time", "max_tokens": 4000, "ignore_eos": true, "stream": true}' >/dev/null
expect_idle "a stream whose client hung up"
timeout 1 curl -s "${h[@]}" "$c" -d '{"prompt": "Once upon a time", "max_tokens": 4000, "ignore_eos": true}' >/dev/null
expect_idle "a whole answer whose client hung up"
grep -q "cancelled" "$tmp/gateway.log" && ok "the gateway logged the cancellations" || bad "no cancellation in the gateway's log"
both_up "after the hang-ups"

# ---- slm-bench --target openai through the gateway (the key from $OPENAI_API_KEY)
if [ -x "$bin/slm-bench" ]; then
  OPENAI_API_KEY="the key" "$bin/slm-bench" --target openai --url "$url" --concurrency 2 --requests 4 --warmup 0 \
    --input-len 16 --output-len 8 --json "$tmp/bench.json" >"$tmp/bench.out" 2>&1
  if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d["runs"][0]
assert d["config"]["target"]=="openai" and r["completed"]==4 and r["failed"]==0 and r["output_tokens"]==32 and r["input_tokens"]==64, r' "$tmp/bench.json" 2>"$tmp/bench.err"; then
    ok "slm-bench --target openai: 4 requests of 16+8 tokens through the gateway"
  else
    bad "slm-bench --target openai:"; cat "$tmp/bench.out" "$tmp/bench.err"
  fi
fi

# ---- /metrics
curl -s "$url/metrics" >"$tmp/metrics"
for name in vllm:num_requests_running vllm:num_requests_waiting vllm:kv_cache_usage_perc vllm:prompt_tokens_total \
            vllm:generation_tokens_total vllm:time_to_first_token_seconds_bucket \
            vllm:request_time_per_output_token_seconds_count vllm:e2e_request_latency_seconds_sum \
            'vllm:request_success_total{model_name="[^"]*",finished_reason="abort"} [1-9]' slmd_kv_blocks_total \
            'slm_gateway_http_responses_total{model_name="[^"]*",code="4xx"} [1-9]'; do
  grep -q "^$name" "$tmp/metrics" && ok "/metrics has $name" || bad "/metrics lacks $name"
done
if command -v promtool >/dev/null; then
  promtool check metrics <"$tmp/metrics" >/dev/null 2>&1 && ok "promtool accepts /metrics" || bad "promtool: $(promtool check metrics <"$tmp/metrics" 2>&1 | head -3)"
fi
# ---- slmd goes away: 503 in OpenAI's shape; back on the same socket: served again (the gateway's
# idle connections to the old slmd are replaced, no request fails for them).
kill $daemon_pid; wait $daemon_pid 2>/dev/null
expect "slmd is down: /health" 503 unavailable "$url/health"
expect "slmd is down: a completion" 503 unavailable "${h[@]}" "$c" -d '{"prompt": "Hi", "max_tokens": 2}'
"$slmd" serve --socket "$sock" --model "$model" --kv-cache-mem 256M --threads 2 --log-level warning 2>>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 300); do "$slm" info >/dev/null 2>&1 && break; sleep 0.1; done
curl -s -o /dev/null "${h[@]}" "$c" -d '{"prompt": "Hi", "max_tokens": 2}'   # fills the pool again
kill $daemon_pid; wait $daemon_pid 2>/dev/null
"$slmd" serve --socket "$sock" --model "$model" --kv-cache-mem 256M --threads 2 --log-level warning 2>>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 300); do "$slm" info >/dev/null 2>&1 && break; sleep 0.1; done
expect "slmd restarted: a completion" 200 "" "${h[@]}" "$c" -d '{"prompt": "Hi", "max_tokens": 2}'
expect "slmd restarted: a stream" 200 "" "${h[@]}" "$c" -d '{"prompt": "Hi", "max_tokens": 2, "stream": true}'
both_up "at the end"

# ---- SIGTERM with requests in flight: the gateway stops at once, and slmd cancels them.
curl -sN "${h[@]}" "$c" -d '{"prompt": "Hi", "max_tokens": 4000, "ignore_eos": true, "stream": true}' >/dev/null &
curl1=$!
curl -s "${h[@]}" "$c" -d '{"prompt": "Hi", "max_tokens": 4000, "ignore_eos": true}' >/dev/null &
curl2=$!
sleep 1
start=$(date +%s%N)
kill $gateway_pid; wait $gateway_pid; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc = 0 ] && [ $ms -lt 5000 ] && ok "SIGTERM with 2 requests in flight: exit 0 after $ms ms" || bad "SIGTERM: exit $rc after $ms ms"
gateway_pid=
wait $curl1 $curl2
expect_idle "after the gateway stopped"
exit $fail
