#!/bin/sh
# tests/fuzz/run.sh fuzz_NAME smoke|time SECONDS: runs the harness build/fuzz/fuzz_NAME from the
# repository root over its seeds (tests/fuzz/corpus/NAME/, build/fuzz/corpus/NAME/).
#   smoke: replays every seed once, then mutates for SECONDS with a fixed seed; ends with a tally
#          line (one check each) for tests/run.sh.
#   time:  mutates for SECONDS (make fuzz, FUZZ_TIME) and prints libFuzzer's final statistics.
# New inputs go to build/fuzz/work/NAME/ (the committed corpus is never written); a crash, a leak,
# a failed property or a hang (an input over 10 s) leaves the input in build/fuzz/findings/.
cd "$(dirname "$0")/../.." || exit 1
name=$1; mode=$2; secs=${3:-60}
bin=build/fuzz/$name
[ -x "$bin" ] || { echo "run.sh: $bin is not built (make $bin)"; echo "0 passed, 1 failed"; exit 1; }
seeds=""
for d in tests/fuzz/corpus/${name#fuzz_} build/fuzz/corpus/${name#fuzz_}; do [ -d "$d" ] && seeds="$seeds $d"; done
mkdir -p build/fuzz/work/$name build/fuzz/findings
opts="-timeout=10 -rss_limit_mb=2048 -artifact_prefix=build/fuzz/findings/$name- -print_final_stats=1"
pass=0; fail=0
check() { # label, command...
  label=$1; shift
  out=$("$@" 2>&1); rc=$?
  runs=$(echo "$out" | sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' | tail -n 1)
  cov=$(echo "$out" | grep -aE '^#[0-9]+' | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1)); echo "ok   $name $label: ${runs:-?} ${cov}"
  else
    fail=$((fail + 1)); echo "FAIL $name $label (exit $rc):"; echo "$out" | tail -n 40
  fi
}
case $mode in
  smoke)
    check "seeds" "$bin" $opts -runs=0 build/fuzz/work/$name $seeds
    check "mutate ${secs}s" "$bin" $opts -seed=1 -max_total_time="$secs" build/fuzz/work/$name $seeds
    ;;
  time)
    check "${secs}s" "$bin" $opts -max_total_time="$secs" build/fuzz/work/$name $seeds
    ;;
  *) echo "run.sh: mode must be smoke or time"; exit 2 ;;
esac
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
