#!/usr/bin/env bash
# Builds, here (no GPU, no CUDA toolkit), what scripts/gpu/run.sh runs on the GPU machine (which
# has no Rust toolchain): the CUDA build of the `incubator` binary, the engine library, the
# standard library it links, and the engine's test executables, stripped, in target/gpu-bundle,
# and that folder compressed as target/gpu-bundle.tar.xz (14 MB against 54: what the device
# tool carries must fit in 64 MiB with the working tree). Carry the archive:
# `carry: ["target/gpu-bundle.tar.xz"]`; scripts/gpu/run.sh unpacks it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
eval "$(scripts/cuda-toolkit.sh)"
export CARGO_TARGET_DIR="$repo/target/cuda"
mkdir -p "$CARGO_TARGET_DIR"
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
# dfdx compiles some kernels at run time with NVRTC, with the include paths of this build
# baked in (its OUT_DIR for `cuda_utils.cuh`, our CUDA root for `cuda_fp16.h`): the headers go
# in the bundle and the paths in include-paths, and run.sh puts them back where the binary
# looks (symlinks), using the GPU machine's own CUDA 13.0 headers when it has them.
python3 - "$bundle" target/cuda/artifacts.json "$CUDA_ROOT/include" <<'PY'
import glob, json, os, shutil, sys
bundle, artifacts, cuda_include = sys.argv[1:]
out_dirs = [json.loads(l)["out_dir"] for l in open(artifacts)
            if '"build-script-executed"' in l and "#dfdx@" in l]
assert len(out_dirs) == 1, f"expected one dfdx build script, found {out_dirs}"
os.makedirs(f"{bundle}/include/dfdx")
os.makedirs(f"{bundle}/include/cuda")
for f in glob.glob(f"{out_dirs[0]}/*.cuh"):
    shutil.copy(f, f"{bundle}/include/dfdx/")
for f in ["cuda_fp16.h", "cuda_fp16.hpp"]:
    shutil.copy(os.path.realpath(f"{cuda_include}/{f}"), f"{bundle}/include/cuda/")
with open(f"{bundle}/include-paths", "w") as o:
    o.write(f"dfdx {out_dirs[0]}\ncuda {os.path.abspath(cuda_include)}\n")
PY
strip --strip-all "$bundle"/bin/* "$bundle"/tests/*
strip --strip-unneeded "$bundle"/lib/*
ls -la "$bundle"/*
du -sh "$bundle"
tar -C "$repo/target" -cJf "$repo/target/gpu-bundle.tar.xz" gpu-bundle
ls -la "$repo/target/gpu-bundle.tar.xz"
