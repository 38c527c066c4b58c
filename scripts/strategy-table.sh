#!/usr/bin/env bash
# Every incubation strategy on examples/strategies-fashion-mnist.toml, three seeds each, then
# a Markdown table (mean and standard deviation over seeds of the assembled top-1, the method's
# training compute and wall time; the E2E baseline of the same seeds below it).
#
#   scripts/strategy-table.sh OUT_DIR [SEEDS...]      (default seeds: 0 1 2)
#
# Uses the release build (cargo build --release --workspace). Resumable: finished runs skip.
# m2mKD is taught by the deep-incubation run's E2E model of the same seed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: strategy-table.sh OUT_DIR [SEEDS...]}"; shift
seeds=("${@:-0 1 2}"); seeds=(${seeds[*]})
bin="${INCUBATOR_BIN:-$root/target/release}"
base="$root/examples/strategies-fashion-mnist.toml"
mkdir -p "$out"; out="$(cd "$out" && pwd)"

strategies=(deep-incubation meta-kd m2mkd feature-kd sequential stitch template dgl infopro)

plugins_of() { # the [plugins] section of examples/$1.toml with the library path made absolute
    local ex="$root/examples/$1.toml"
    [ "$1" = deep-incubation ] && return 0
    [ "$1" = template ] && { printf '[plugins]\nstrategy = "template"\nlibraries = ["%s/libincubator_template.so"]\n' "$bin"; return 0; }
    sed -n '/^\[plugins\]/,$p' "$ex" | sed "s#\"\.\./target/release/#\"$bin/#"
}

for seed in "${seeds[@]}"; do
    for s in "${strategies[@]}"; do
        run="$out/$s-seed$seed"
        cfg="$out/$s-seed$seed.toml"
        {
            sed "s/^seed = .*/seed = $seed/" "$base"
            plugins_of "$s"
        } > "$cfg"
        if [ "$s" != deep-incubation ]; then
            # one E2E baseline per seed (the deep-incubation run's): the others leave it out
            python3 - "$cfg" <<'PY'
import sys, re
p = sys.argv[1]; s = open(p).read()
s = s.replace("[e2e]\nepochs = 10\n", "[e2e]\nenabled = false\nepochs = 10\n")
open(p, "w").write(s)
PY
        fi
        if [ "$s" = m2mkd ]; then
            sed -i "s#^teacher = .*#teacher = \"../deep-incubation-seed$seed:e2e\"#" "$cfg"
        fi
        echo "== $s seed $seed"
        "$bin/incubator" run --no-progress --jobs 2 -c "$cfg" -d "$run" > "$run.log" 2>&1 \
            || { echo "failed: see $run.log"; tail -5 "$run.log"; exit 1; }
    done
done

python3 - "$out" "${seeds[@]}" <<'PY'
import json, statistics, sys, glob, os
out, seeds = sys.argv[1], sys.argv[2:]
def summary(run, stage):
    p = os.path.join(run, "stages", stage, "summary.json")
    return json.load(open(p)) if os.path.exists(p) else None
def method(run):
    stages = sorted(os.listdir(os.path.join(run, "stages")))
    parts = [summary(run, s) for s in stages if s == "meta" or s.startswith("incubate-") or s == "assemble"]
    parts = [p for p in parts if p]
    return (summary(run, "assemble")["top1"] * 100,
            sum(p["train_gflop"] for p in parts), sum(p["wall_s"] for p in parts))
def ms(xs, fmt):
    if len(xs) < 2: return fmt.format(xs[0])
    return (fmt + " ± " + fmt).format(statistics.mean(xs), statistics.stdev(xs))
rows = []
names = ["deep-incubation", "meta-kd", "m2mkd", "feature-kd", "sequential", "stitch", "template", "dgl", "infopro"]
print(f"| strategy | assembled top-1 (%) | method compute (GFLOP) | method wall (s) | per seed top-1 ({', '.join(seeds)}) |")
print("|---|---:|---:|---:|---|")
for n in names:
    res = [method(os.path.join(out, f"{n}-seed{s}")) for s in seeds]
    t, g, w = zip(*res)
    print(f"| {n} | {ms(t, '{:.2f}')} | {ms(g, '{:.0f}')} | {ms(w, '{:.1f}')} | {' / '.join(f'{x:.2f}' for x in t)} |")
e2e = [summary(os.path.join(out, f"deep-incubation-seed{s}"), "e2e") for s in seeds]
t = [e["top1"] * 100 for e in e2e]
print(f"| E2E baseline (10 epochs) | {ms(t, '{:.2f}')} | {ms([e['train_gflop'] for e in e2e], '{:.0f}')} | {ms([e['wall_s'] for e in e2e], '{:.1f}')} | {' / '.join(f'{x:.2f}' for x in t)} |")
PY
