#!/usr/bin/env bash
# The time each test file took in a `cargo test` log (what ./scripts/test.sh prints), slowest
# first:   ./scripts/test.sh 2>&1 | tee suite.log; scripts/test-times.sh suite.log [N]
# (the time cargo's harness reports for the file's tests, not its build)
set -euo pipefail
log=${1:?a cargo test log}
n=${2:-10}
awk '
    /^ *Running / {
        file = $2
        # unit tests: "Running unittests src/lib.rs (target/debug/deps/incubator_core-HASH)"
        if ($2 == "unittests") { d = $4; sub(/^.*\//, "", d); sub(/-[0-9a-f]+\)$/, "", d); file = $3 " (" d ")" }
        next
    }
    /^ *Doctests / { file = "doctests " $2; next }
    /^test result:/ && file != "" {
        for (i = 1; i <= NF; i++) if ($i == "in") { t = $(i + 1); sub(/s$/, "", t) }
        printf "%10.1f s  %s\n", t, file
        file = ""
    }
' "$log" | sort -rn | head -n "$n"
