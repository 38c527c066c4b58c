#!/usr/bin/env bash
# On a machine with AVX-512 (the GPU machine's CPU), from the repository root, with
# target/cpu-bundle.tar.xz carried (scripts/gpu/cpu-bundle.sh): the CPU training benchmark
# against PyTorch at the CPU's widest level and capped at AVX2 (INCUBATOR_ISA, which the
# benchmark passes on to PyTorch's kernels), on 2 cores and on all of them, with the
# per-operation profile. Results in $OUT (summary.txt first).
set -uo pipefail
OUT="${OUT:?set OUT to the folder for the results}"
PYTHON="${PYTHON:-python3}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
[ -d target/cpu-bundle ] || tar -C target -xJf target/cpu-bundle.tar.xz
export LD_LIBRARY_PATH="$repo/target/cpu-bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exe="$repo/target/cpu-bundle/bin/incubator"
summary="$OUT/summary.txt"
echo "date: $(date -u); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); cores: $(nproc)" | tee "$summary"
for cores in 2 all; do
    pin=()
    [ "$cores" = all ] || pin=(taskset -c 0-$((cores - 1)))
    for level in avx512 avx2; do
        name="bench-$level-$cores"
        t0=$SECONDS
        INCUBATOR_ISA=$level timeout 200 "${pin[@]}" "$exe" bench --presets vit-tiny,mnist-small \
            --image 32 --channels 3 --steps 5 --pytorch "$PYTHON" --profile >"$OUT/$name.txt" 2>&1
        echo "$name: exit $? after $((SECONDS - t0)) s" | tee -a "$summary"
        grep -E "^machine|^baseline|^PyTorch|^\| (vit|mnist)" "$OUT/$name.txt" | sed 's/^/    /' | tee -a "$summary"
    done
done
