#!/usr/bin/env bash
# Coverage-guided fuzzing of every input parser (fuzz/, cargo-fuzz + libFuzzer), outside CI:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]      (default: 60 s, every target)
# Each target runs on its corpus (fuzz/corpus/<target>, kept in git), which is then minimised
# (`cargo fuzz cmin`); a crash stops the script with the input in fuzz/artifacts/<target>/.
# Add a crashing input to the corpus once fixed: `cargo test --test fuzz_corpus` replays it.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); it uses the stable compiler with
# RUSTC_BOOTSTRAP=1 (dfdx 0.13 no longer builds on nightly).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config idx cifar checkpoint events tail server import image)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
# the seeds made from real files, fresh, into the corpora
INCUBATOR_WRITE_FUZZ_SEEDS=1 cargo test --release --test fuzz_corpus seeds
export RUSTC_BOOTSTRAP=1
cargo +stable fuzz build
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="fuzz/artifacts/$t.log"
    mkdir -p fuzz/artifacts
    start=$(date +%s)
    cargo +stable fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
        -max_len=8192 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1 || {
        echo "$t: CRASH after $(( $(date +%s) - start )) s; input and log in fuzz/artifacts/ ($log)"
        tail -30 "$log"
        exit 1
    }
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    cargo +stable fuzz cmin "$t" "fuzz/corpus/$t" >/dev/null 2>&1
    n=$(ls "fuzz/corpus/$t" | wc -l)
    echo "$t: $runs executions in $(( $(date +%s) - start )) s, coverage $cov edges, corpus $n inputs"
done
