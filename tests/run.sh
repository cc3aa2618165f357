#!/bin/sh
# run.sh: runs every test program and adds up their closing "N passed, N failed" lines.
# C tests run twice: the normal build and the AddressSanitizer + UBSan build (build/asan/).
# Lua tests (tests/lua/test_*.lua) run under ./knwb, then again under build/asan/knwb (leaks
# and undefined behaviour in the bindings fail them). Each program's full output is kept in
# build/test-logs/ and shown when it fails. The libFuzzer harnesses (build/fuzz/fuzz_*, ASan +
# UBSan) replay their seeds and mutate for FUZZ_SMOKE seconds each (default 3): two checks each.
cd "$(dirname "$0")/.." || exit 1
logs=build/test-logs
mkdir -p "$logs"
total_pass=0; total_fail=0; broken=""

run_one() { # name, command...
  name=$1; shift
  log="$logs/$(echo "$name" | tr '/ ' '__').log"
  "$@" >"$log" 2>&1
  rc=$?
  tally=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  if [ -z "$tally" ]; then
    echo "BROKEN $name (exit $rc, no tally line); log:"; tail -n 30 "$log"
    total_fail=$((total_fail + 1)); broken="$broken $name"; return
  fi
  p=${tally%% passed*}; f=${tally#*, }; f=${f%% failed*}
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  if [ "$f" -ne 0 ] || [ $rc -ne 0 ]; then
    echo "FAIL   $name: $tally (exit $rc)"; grep -E '^(FAIL|BROKEN)' "$log" | head -n 40
    [ "$f" -eq 0 ] && total_fail=$((total_fail + 1))
  else
    echo "ok     $name: $tally"
  fi
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in build/tests/test_*; do [ -x "$t" ] && run_one "c/$(basename "$t")" "$t"; done
for t in build/asan/tests/test_*; do [ -x "$t" ] && run_one "asan/$(basename "$t")" "$t"; done
for t in tests/lua/test_*.lua; do [ -f "$t" ] && run_one "lua/$(basename "$t" .lua)" ./knwb "$t"; done
for t in tests/lua/test_*.lua; do [ -f "$t" ] && run_one "lua-asan/$(basename "$t" .lua)" build/asan/knwb "$t"; done
for t in build/fuzz/fuzz_*; do [ -x "$t" ] && run_one "fuzz/$(basename "$t")" sh tests/fuzz/run.sh "$(basename "$t")" smoke "${FUZZ_SMOKE:-3}"; done

echo
[ -n "$broken" ] && echo "broken:$broken"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
