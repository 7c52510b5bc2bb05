# tests/expect_error.sh - sourced by the shell tests (not a test itself): checks that a program
# refuses bad input with one clear line.
#   expect_error NAME PATTERN ARGS...   runs "$EXPECT_PROG" ARGS...; passes when it exits 1 or 2
#                                       with exactly one stderr line matching PATTERN (grep -E)
# Needs $EXPECT_PROG and a scratch folder $tmp; sets fail=1 on a failure.
expect_error() {
  local name=$1 pat=$2; shift 2
  "$EXPECT_PROG" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  local lines; lines=$(wc -l <"$tmp/err")
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || [ "$lines" -ne 1 ] || ! grep -q -E -- "$pat" "$tmp/err"; then
    echo "FAIL $name: expected exit 1-2 and one line matching '$pat'; got exit $rc, $lines lines:"; cat "$tmp/err"
    fail=1
  else
    echo "ok   $name: $(cat "$tmp/err")"
  fi
}
