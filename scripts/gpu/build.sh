#!/usr/bin/env bash
# Builds, here (no GPU, no CUDA toolkit), what scripts/gpu/run.sh runs on the GPU machine (which
# has no Rust toolchain): the CUDA build of the `incubator` binary, the engine library, the
# standard library it links, and the engine's test executables, stripped, in target/gpu-bundle.
# Carry that folder: the device tool's `carry: ["target/gpu-bundle"]`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
eval "$(scripts/cuda-toolkit.sh)"
export CARGO_TARGET_DIR="$repo/target/cuda"
# One cargo command for the binary and the tests: the engine is a dylib at a fixed path, and a
# second command resolving features differently would replace it under the first one's files.
cargo test --release --features incubator/cuda,incubator-core/cuda -p incubator -p incubator-core \
    --no-run --message-format=json-render-diagnostics >target/cuda/artifacts.json

bundle="$repo/target/gpu-bundle"
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/tests"
cp target/cuda/release/incubator "$bundle/bin/"
cp target/cuda/release/libincubator_core.so "$bundle/lib/"
cp "$(rustc --print sysroot)"/lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-*.so "$bundle/lib/"
# the engine's unit tests and its integration tests, named by their target
python3 - "$bundle/tests" target/cuda/artifacts.json <<'PY'
import json, shutil, sys
for line in open(sys.argv[2]):
    a = json.loads(line)
    if a.get("reason") != "compiler-artifact" or not a.get("executable") or not a["profile"]["test"]:
        continue
    if "#incubator-core@" in a["package_id"]:
        unit = a["target"]["kind"][0] != "test"
        shutil.copy(a["executable"], f"{sys.argv[1]}/{'unit' if unit else a['target']['name']}")
PY
strip --strip-debug "$bundle"/bin/* "$bundle"/lib/* "$bundle"/tests/*
ls -la "$bundle"/*
du -sh "$bundle"
