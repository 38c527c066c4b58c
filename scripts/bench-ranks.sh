#!/usr/bin/env bash
# Data-parallel training against one process on the same cores, in one command: one process
# with T threads and batch 2b against 2 MPI ranks with T/2 threads each and batch b (the same
# effective batch, model and data), in turn, PAIRS times. Prints each run's training
# samples/s (the meta stage's epoch line: training only, evaluation excluded), the share of
# rank 0's step time spent in the gradients' all-reduce, and the ratio of each pair.
#   scripts/bench-ranks.sh [PAIRS]    (needs: cargo build --release --features mpi; mpirun)
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
bin=${INCUBATOR_BIN:-target/release/incubator}
threads=${THREADS:-$(nproc)}
half=$(( threads / 2 > 0 ? threads / 2 : 1 ))
[ -x "$bin" ] || { echo "no $bin: cargo build --release --features mpi" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "no mpirun: apt-get install openmpi-bin" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the default run's model (mnist-small, patch 7) on 4096 embedded MNIST images, one epoch
for b in 64 128; do
    cat > "$work/b$b.toml" <<TOML
seed = 1
[model]
embed_dim = 64
depth = 8
num_heads = 4
[split]
divided_depths = [2, 2, 2, 2]
[data]
train_limit = 4096
test_limit = 256
[augment]
mix_prob = 0.0
[optim]
batch_size = $b
[meta]
epochs = 1
warmup_epochs = 0
TOML
done
rate() { sed -n 's/.*epoch 1\/1 .* \([0-9.]*\) samples\/s.*/\1/p' | head -1; }
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $threads threads"
echo "| pair | 1 process x $threads threads, batch 128 (samples/s) | 2 ranks x $half threads, batch 64 each (samples/s) | ratio (2 ranks / 1) | all-reduce share of a step |"
echo "|---|---:|---:|---:|---|"
for i in $(seq "$pairs"); do
    rm -rf "$work/one" "$work/two"
    one=$(RAYON_NUM_THREADS=$threads "$bin" meta --no-progress -c "$work/b128.toml" -d "$work/one" 2>&1 | rate)
    out=$(RAYON_NUM_THREADS=$half mpirun --oversubscribe -np 2 "$bin" meta --no-progress -c "$work/b64.toml" -d "$work/two" 2>&1)
    two=$(echo "$out" | rate)
    share=$(echo "$out" | sed -n 's/.*ranks: \([0-9.]*%\) of rank 0.*/\1/p' | head -1)
    ratio=$(awk -v a="$two" -v b="$one" 'BEGIN { printf "%.2f", a / b }')
    echo "| $i | $one | $two | **$ratio** | $share |"
done
