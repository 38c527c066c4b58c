#!/usr/bin/env bash
# The small-scale study of docs/results.md: the depth, data and cost sweeps on full
# Fashion-MNIST, 3 seeds per point, one after the other, each report written to its sweep
# directory (report.md, report.json, plots/*.svg).
#
#   cargo build --release && scripts/study.sh [OUT_DIR]        (default: runs/)
#
# About 2.5 hours on a 2-core machine (depth 50 minutes, data 40, cost 60); resumable: stop it
# at any moment and run it again, finished runs are skipped and interrupted stages resume.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/runs}"
bin="${INCUBATOR_BIN:-$root/target/release/incubator}"

"$bin" data fetch fashion-mnist
for sweep in depth data cost; do
    "$bin" sweep run "$root/examples/study-$sweep.toml" -d "$out/study-$sweep" --run-jobs 2
done
