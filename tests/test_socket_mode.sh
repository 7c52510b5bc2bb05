#!/bin/bash
# tests/test_socket_mode.sh - the socket is never reachable with the umask's mode: slmd binds it
# with no permission bits (umask 0777 around bind), then sets its group and socket-mode, and
# restores the umask. Under a permissive umask (000), strace shows the order umask(0777), bind,
# umask(000), chmod(0640), and the file ends with mode 0640. (Before, the socket existed with
# mode 0777 & ~umask between bind and chmod: reachable by anyone in that window.)
# Skips (77) without strace or the model.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
command -v strace >/dev/null || { echo "skip: strace is not installed"; exit 77; }
strace -f -o /dev/null true 2>/dev/null || { echo "skip: strace cannot trace here (ptrace refused)"; exit 77; }
tmp=$(mktemp -d /tmp/test_socket_mode.XXXXXX)
pid=
# strace does not pass SIGTERM on: stop slmd itself (its pid is the trace's first column).
stop_slmd() { local d; d=$(awk 'NR == 1 { print $1 }' "$tmp/trace" 2>/dev/null); [ -n "$d" ] && kill "$d" 2>/dev/null; }
cleanup() { if [ -n "$pid" ]; then stop_slmd; kill "$pid" 2>/dev/null; fi; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0

(umask 000; exec strace -f -o "$tmp/trace" -e trace=umask,bind,chmod,fchmodat,listen \
  "$slmd" serve --socket "$tmp/s.sock" --model "$model" --threads 1 --kv-cache-mem 64M --socket-mode 0640 \
  --log-level warning) &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/s.sock" ] && grep -q 'chmod' "$tmp/trace" 2>/dev/null && break; sleep 0.1; done
mode=$(stat -c %a "$tmp/s.sock" 2>/dev/null)
stop_slmd
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=

order=$(grep -oE 'umask\(0?777\)|umask\(0?0?0\)|bind\(|f?chmod(at)?\(' "$tmp/trace" | sed -E 's/\($//; s/umask\(0?777\)/umask777/; s/umask\(0?0?0\)/umask0/; s/fchmodat|chmod/chmod/' | tr '\n' ' ')
if [[ "$order" == *"umask777 bind umask0 chmod"* ]]; then
  echo "ok   bind under umask 0777, then the umask back, then chmod: $order"
else
  echo "FAIL the socket's system calls: expected 'umask777 bind umask0 chmod' in order, got '$order'"
  grep -E 'umask|bind|chmod' "$tmp/trace" | head
  fail=1
fi
if [ "$mode" = 640 ]; then
  echo "ok   socket mode 0640 under umask 000"
else
  echo "FAIL socket mode: expected 640, got '$mode'"; fail=1
fi
exit $fail
