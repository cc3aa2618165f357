#!/bin/sh
# bench/mpi_bench.sh: attribution throughput of ranks x threads on this machine (issue 16).
#
#   sh bench/mpi_bench.sh [FACTS_PER_RELATION]     (default 6: 9 relations, about 500 prompts)
#
# Runs experiments/attribute.lua on the default model, the same facts each time, with a fresh
# attribution store (so every prompt is computed), side by side in one run:
#   1x2  one process, OPENBLAS_NUM_THREADS=2
#   2x1  mpirun -np 2, one thread per rank
#   1x1  one process, one thread (the per-prompt cost the projection uses)
# and checks that the three neurons.jsonl are identical. Prints prompts/s per setting and writes
# bench/out/mpi.json. Run it on an idle machine: the ratio is what it measures.
set -eu
cd "$(dirname "$0")/.."
N=${1:-6}
OUT=${BENCH_OUT:-bench/out}/mpi
rm -rf "$OUT"
mkdir -p "$OUT"
make -s --no-print-directory knwb >&2
export KNWB_PROGRESS=off OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cat /proc/loadavg > "$OUT/loadavg.txt"

run() { # name, launcher, threads
    start=$(date +%s.%N)
    OPENBLAS_NUM_THREADS=$3 $2 ./knwb experiments/attribute.lua --set facts.max_facts="$N" \
        --set attribution.cache="$OUT/store-$1" --out "$OUT/run-$1" >"$OUT/$1.log" 2>&1
    end=$(date +%s.%N)
    prompts=$(sed -n 's/.*"prompts": \([0-9]*\).*/\1/p' "$OUT/run-$1/summary.json" | head -n 1)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    echo "$1 $prompts $secs" >>"$OUT/times.txt"
    awk -v n="$1" -v p="$prompts" -v s="$secs" \
        'BEGIN { printf "bench: %-4s %5d prompts in %7.1f s: %6.2f prompts/s (whole command)\n", n, p, s, p / s }' >&2
}

run 1x2 "" 2
run 2x1 "mpirun --oversubscribe -np 2" 1
run 1x1 "" 1
for r in 2x1 1x1; do
    cmp -s "$OUT/run-1x2/neurons.jsonl" "$OUT/run-$r/neurons.jsonl" || echo "bench: WARNING: $r neurons differ from 1x2" >&2
done
awk 'BEGIN { printf "{\n" } { printf "%s  \"%s\": {\"prompts\": %d, \"seconds\": %.3f, \"prompts_per_second\": %.4f}", (NR > 1 ? ",\n" : ""), $1, $2, $3, $2 / $3 } END { printf "\n}\n" }' \
    "$OUT/times.txt" > "$OUT/../mpi.json"
cat "$OUT/../mpi.json"
