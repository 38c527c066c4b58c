#!/usr/bin/env bash
# The small-scale study of docs/results.md at the paper's proportions: the depth sweep with
# E2E at the method's epochs, the same depths with E2E at the method's compute, and the data
# sweep, 3 seeds per point, one after the other, each report written to its sweep directory
# (report.md, report.json, plots/*.svg).
#
#   cargo build --release && scripts/study.sh [OUT_DIR]        (default: runs/)
#
# About 3.5 hours on a 2-core machine (depth 55 minutes, depth at equal compute 70, data 50,
# measured with the stages two at a time); resumable: stop it at any moment and run it again,
# finished runs are skipped and interrupted stages resume.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/runs}"
bin="${INCUBATOR_BIN:-$root/target/release/incubator}"

"$bin" data fetch fashion-mnist
for sweep in depth depth-compute data; do
    "$bin" sweep run "$root/examples/study-$sweep.toml" -d "$out/study-$sweep" --run-jobs 2
done
