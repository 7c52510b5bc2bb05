#!/usr/bin/env bash
# tests/test_cli.sh - `slmd run` end to end: a working run, and every kind of bad input
# giving a one-line error that names the problem, a non-zero exit, and no crash.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0

EXPECT_PROG=$slmd
. "$(dirname "$0")/expect_error.sh"

# A working greedy run, twice: same ids; --print-token-ids prints only ids on one line.
out1=$("$slmd" run --model "$model" --prompt "The capital of France is" --temperature 0 --max-tokens 12 --print-token-ids --threads 2)
out2=$("$slmd" run --model "$model" --prompt "The capital of France is" --temperature 0 --max-tokens 12 --print-token-ids --threads 1)
if ! [[ "$out1" =~ ^[0-9]+( [0-9]+)*$ ]] || [ "$out1" != "$out2" ]; then
  echo "FAIL greedy ids: '$out1' (2 threads) vs '$out2' (1 thread)"; fail=1
else
  echo "ok   greedy ids, 1 and 2 threads agree: $out1"
fi
# The text of a run: its ids (out1) decoded by an independent detokenizer, the GGUF's vocabulary
# read by the gguf package and GPT-2's byte-to-unicode table inverted here (SmolLM2 is a
# byte-level BPE; a control token such as EOS is not printed).
decode_ids() {
  python3 - "$model" "$@" <<'PY'
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
f = r.fields['tokenizer.ggml.tokens']
vocab = [bytes(f.parts[i]).decode('utf-8') for i in f.data]
kind = r.fields['tokenizer.ggml.token_type']
types = [int(kind.parts[i][0]) for i in kind.data]
bs = list(range(ord('!'), ord('~') + 1)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_of = {chr(c): b for b, c in zip(bs, cs)}
out = b''.join(bytes(byte_of[ch] for ch in vocab[int(t)]) for t in sys.argv[2:] if types[int(t)] == 1)
sys.stdout.write(out.decode('utf-8', errors='replace'))
PY
}
text=$("$slmd" run --model "$model" --prompt "The capital of France is" --temperature 0 --max-tokens 12)
want_text=$(decode_ids $out1)
if [ -n "$text" ] && [ "$text" = "$want_text" ]; then
  echo "ok   text equals its ids decoded independently: $text"
else
  echo "FAIL text: expected '$want_text' (the ids $out1 decoded), got '$text'"; fail=1
fi
# A seeded chat run: its text is its own ids (the same seed) decoded.
chat=$("$slmd" run --model "$model" --chat --prompt "Say hello." --seed 3 --max-tokens 16)
chat_ids=$("$slmd" run --model "$model" --chat --prompt "Say hello." --seed 3 --max-tokens 16 --print-token-ids)
want_text=$(decode_ids $chat_ids)
if [ -n "$chat" ] && [ "$chat" = "$want_text" ]; then
  echo "ok   chat equals its ids decoded: $chat"
else
  echo "FAIL chat: expected '$want_text' (the ids $chat_ids decoded), got '$chat'"; fail=1
fi

# slmd run (the engine, one request) gives llama.cpp's greedy tokens (tests/golden/smollm2_greedy_avx2.txt,
# whose first 16 tokens of this prompt the _avx512 file shares, so either lane layout must give them;
# whose 64 steps ignore EOS: compare up to slmd's EOS, which ends its output).
golden=${SLM_TEST_DATA:-$(dirname "$0")}/golden/smollm2_greedy_avx2.txt
read -r gtext gids < <(python3 - "$golden" <<'PY'
import sys
recs, cur = [], {}
for line in open(sys.argv[1], encoding='utf-8'):
    if line.startswith('# prompt'): cur = {}; recs.append(cur)
    elif line[:2] in ('T ', 'G '): cur[line[0]] = line[2:].rstrip('\n')
r = next(r for r in recs if '\\' not in r['T'] and "'" not in r['T'])
print(r['T'].replace(' ', '\x01'), ' '.join(r['G'].split()[:16]))
PY
)
gtext=${gtext//$'\x01'/ }
got=$("$slmd" run --model "$model" --prompt "$gtext" --temperature 0 --max-tokens 16 --print-token-ids --threads 2)
want=$(python3 -c "import sys; g=sys.argv[1].split(); n=len(sys.argv[2].split()); print(' '.join(g[:n]))" "$gids" "$got")
if [ -z "$got" ] || [ "$got" != "$want" ] || { [ "$got" != "$gids" ] && [ "${got##* }" != 2 ]; }; then
  echo "FAIL slmd run vs llama.cpp greedy on '$gtext': expected $gids, got $got"; fail=1
else
  echo "ok   slmd run equals llama.cpp's greedy tokens on '$gtext'"
fi
# ... and its text is llama.cpp's tokens decoded (as many as slmd gave, EOS included).
text=$("$slmd" run --model "$model" --prompt "$gtext" --temperature 0 --max-tokens 16 --threads 2)
want_text=$(decode_ids $want)
if [ -n "$text" ] && [ "$text" = "$want_text" ]; then
  echo "ok   slmd run's text is llama.cpp's greedy tokens decoded"
else
  echo "FAIL slmd run text on '$gtext': expected '$want_text', got '$text'"; fail=1
fi

# Bad files.
expect_error "missing file" "no-such.gguf: cannot open" run --model "$tmp/no-such.gguf" --prompt hi
printf 'this is not a model\n%.0s' {1..10} >"$tmp/text.gguf"
expect_error "not GGUF" "text.gguf: not a GGUF file" run --model "$tmp/text.gguf" --prompt hi
head -c 3000000 "$model" >"$tmp/trunc.gguf"
expect_error "truncated" "trunc.gguf: .*past the end of the file" run --model "$tmp/trunc.gguf" --prompt hi
expect_error "directory" "not a regular file" run --model "$tmp" --prompt hi
# The same file with general.architecture renamed (same length, still valid GGUF).
python3 - "$model" "$tmp/arch.gguf" <<'PY'
import sys
data = bytearray(open(sys.argv[1], 'rb').read())
key = b'general.architecture'
i = data.index(key) + len(key) + 4 + 8      # value type, then the string's length
assert data[i:i+5] == b'llama'
data[i:i+5] = b'xlstm'
open(sys.argv[2], 'wb').write(data)
PY
expect_error "unsupported arch" "architecture 'xlstm' is not supported" run --model "$tmp/arch.gguf" --prompt hi

# Prompt longer than the context.
expect_error "prompt too long" "prompt is [0-9]+ tokens, longer than the context \(8 tokens" \
  run --model "$model" --ctx-size 8 --prompt "one two three four five six seven eight nine ten eleven"

# Bad flags.
expect_error "bad number" "--max-tokens: 'abc' is not a whole number" run --model "$model" --prompt hi --max-tokens abc
expect_error "out of range" "--temperature: -1 is out of range" run --model "$model" --prompt hi --temperature -1
expect_error "zero threads" "--threads: 0 is out of range" run --model "$model" --prompt hi --threads 0
expect_error "top-p range" "--top-p: 1.5 is out of range" run --model "$model" --prompt hi --top-p 1.5
expect_error "unknown flag" "unknown option '--frobnicate'" run --model "$model" --prompt hi --frobnicate
expect_error "missing value" "--seed needs a value" run --model "$model" --prompt hi --seed
expect_error "no prompt" "--prompt is required" run --model "$model"
expect_error "bad size" "--kv-cache-mem: 'lots' is not a size" run --model "$model" --prompt hi --kv-cache-mem lots
expect_error "size suffix" "--kv-cache-mem: '3X' is not a size" run --model "$model" --prompt hi --kv-cache-mem 3X
expect_error "no block fits" "--kv-cache-mem: 1000 bytes hold no KV block" run --model "$model" --prompt hi --kv-cache-mem 1000
expect_error "cache too small" "need [0-9]+ KV blocks; the whole cache has 2" \
  run --model "$model" --prompt "The capital of France is" --max-tokens 100 --kv-cache-mem 800K
expect_error "seqs over batch" "--max-seqs \(600\) cannot exceed --max-batch-tokens \(512\)" \
  run --model "$model" --prompt hi --max-seqs 600
expect_error "block size 0" "--block-size: 0 is out of range" run --model "$model" --prompt hi --block-size 0
expect_error "unknown command" "unknown command 'fly'" fly
# The CPU kernels' environment knobs (docs/numerics.md): a value they do not take is refused,
# not ignored; the ones they take run.
SLM_CPU_KERNELS=avx3 expect_error "SLM_CPU_KERNELS=avx3" "cpu backend: SLM_CPU_KERNELS 'avx3': expected generic, avx2 or avx512vnni" \
  run --model "$model" --prompt hi --backend cpu
SLM_CPU_LANES=12 expect_error "SLM_CPU_LANES=12" "cpu backend: SLM_CPU_LANES '12': expected 8 or 16" \
  run --model "$model" --prompt hi --backend cpu
knobs=$(SLM_CPU_KERNELS=generic SLM_CPU_LANES=16 "$slmd" run --model "$model" --prompt hi --max-tokens 2 \
        --print-token-ids --threads 2 2>"$tmp/err")
if [[ "$knobs" =~ ^[0-9]+( [0-9]+)*$ ]]; then
  echo "ok   SLM_CPU_KERNELS=generic SLM_CPU_LANES=16 run: $knobs"
else
  echo "FAIL SLM_CPU_KERNELS=generic SLM_CPU_LANES=16: '$knobs'"; cat "$tmp/err"; fail=1
fi
# A prompt holding a NUL byte is refused, not cut there (docs/protocol.md).
printf 'ab\0cd' >"$tmp/nul.txt"
expect_error "NUL in the prompt" "NUL byte at offset 2" run --model "$model" --prompt - <"$tmp/nul.txt"
exit $fail
