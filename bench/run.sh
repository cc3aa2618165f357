#!/bin/sh
# bench/run.sh: knwb against PyTorch, side by side (`make bench` runs this; see bench/README.md).
#
#   sh bench/run.sh                       the full run (1 and 2 threads, about 6-10 minutes)
#   BENCH_QUICK=1 BENCH_THREADS=1 sh bench/run.sh      a quick end-to-end check (few repetitions)
#
# Steps: builds ./knwb if needed; compiles bench/sgemm_ceiling.c against the same OpenBLAS;
# makes the random BERT-base model, the small training model and the shared inputs once
# (bench/prepare.lua, cached in bench/out); then for every thread count T runs, one process
# each and one after the other: the sgemm ceiling, knwb (bench/knwb_bench.lua) and PyTorch
# (bench/torch_bench.py; for T > 1 twice, with OMP_WAIT_POLICY unset and =passive, and the
# report keeps the better of the two per measurement). Every process gets
# OPENBLAS_NUM_THREADS=T and OMP_NUM_THREADS=T; OPENBLAS_CORETYPE is left as the environment
# sets it. PyTorch refuses to time anything when its attribution scores disagree with knwb's.
# Last, the Gauss-Legendre study (bench/knwb_quadrature.lua, at the largest T) and the report
# (bench/report.lua), which prints the table and writes bench/out/results.md.
#
# Environment: BENCH_THREADS (default "1 2"), BENCH_QUICK=1 (few repetitions), PYTHON (default
# /usr/bin/python3, Debian's python3-torch), BENCH_OUT (default bench/out).
set -eu
cd "$(dirname "$0")/.."

OUT=${BENCH_OUT:-bench/out}
THREADS=${BENCH_THREADS:-"1 2"}
PY=${PYTHON:-/usr/bin/python3}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    KNWB_OPTS="load=2 fwd=3 attr=1 train=3"
    TORCH_OPTS="--load 2 --fwd 3 --attr 1 --train 3"
    SGEMM_SECONDS=0.05
    QUAD_OPTS="steps=2,3,4,6,20 prompts=4"
else
    KNWB_OPTS="load=5 fwd=30 attr=5 train=15"
    TORCH_OPTS="--load 5 --fwd 30 --attr 5 --train 15"
    SGEMM_SECONDS=0.5
    QUAD_OPTS="steps=2-20 prompts=16"
fi

say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

make -s --no-print-directory knwb >&2 || die "building ./knwb failed"
"$PY" -c 'import torch, numpy' 2>/dev/null ||
    die "$PY cannot import torch and numpy: apt-get install python3-torch python3-numpy"
command -v pkg-config >/dev/null || die "pkg-config is needed to find OpenBLAS"

mkdir -p "$OUT"
cat /proc/loadavg > "$OUT/loadavg.txt"
rm -f "$OUT"/sgemm-T*.json "$OUT"/knwb-T*.json "$OUT"/torch-T*.json "$OUT"/quadrature.json "$OUT"/results.md
# shellcheck disable=SC2046
${CC:-cc} -O2 -o "$OUT/sgemm_ceiling" bench/sgemm_ceiling.c $(pkg-config --cflags --libs openblas) ||
    die "compiling bench/sgemm_ceiling.c failed"
./knwb bench/prepare.lua "$OUT" || die "bench/prepare.lua failed"

TMAX=1
for T in $THREADS; do
    TMAX=$T
    say "---- $T thread(s) ----"
    OPENBLAS_NUM_THREADS=$T OMP_NUM_THREADS=$T "$OUT/sgemm_ceiling" "$SGEMM_SECONDS" > "$OUT/sgemm-T$T.json" ||
        die "sgemm_ceiling failed"
    say "sgemm ceiling done"
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=$T OMP_NUM_THREADS=$T ./knwb bench/knwb_bench.lua "$OUT" $KNWB_OPTS > "$OUT/knwb-T$T.json" ||
        die "bench/knwb_bench.lua failed"
    if [ "$T" -gt 1 ]; then policies="default passive"; else policies="default"; fi
    for pol in $policies; do
        say "PyTorch, OMP_WAIT_POLICY=$([ "$pol" = passive ] && echo passive || echo '(unset)')"
        rc=0
        if [ "$pol" = passive ]; then
            # shellcheck disable=SC2086
            OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=$T OMP_NUM_THREADS=$T \
                "$PY" bench/torch_bench.py "$OUT" --threads "$T" $TORCH_OPTS > "$OUT/torch-T$T-$pol.json" || rc=$?
        else
            # shellcheck disable=SC2086
            env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS=$T OMP_NUM_THREADS=$T \
                "$PY" bench/torch_bench.py "$OUT" --threads "$T" $TORCH_OPTS > "$OUT/torch-T$T-$pol.json" || rc=$?
        fi
        [ "$rc" -eq 3 ] && die "PyTorch refused to time: its results disagree with knwb's (see the errors above)"
        [ "$rc" -eq 0 ] || die "bench/torch_bench.py failed (exit $rc)"
    done
done

say "---- Gauss-Legendre vs left Riemann, $TMAX thread(s) ----"
# shellcheck disable=SC2086
OPENBLAS_NUM_THREADS=$TMAX OMP_NUM_THREADS=$TMAX ./knwb bench/knwb_quadrature.lua "$OUT" $QUAD_OPTS > "$OUT/quadrature.json" ||
    die "bench/knwb_quadrature.lua failed"

# shellcheck disable=SC2086
./knwb bench/report.lua "$OUT" $THREADS
