#!/usr/bin/env bash
# Packs the CPU release build (`incubator`, the engine library, the standard library it links)
# as target/cpu-bundle.tar.xz, for measuring the CPU kernels on another machine that has no
# Rust toolchain (the GPU machine's CPU has AVX-512, this one only AVX2): carry it and run
# scripts/gpu/cpu-levels.sh there.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
cargo build --release
bundle="$repo/target/cpu-bundle"
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
cp target/release/incubator "$bundle/bin/"
cp target/release/libincubator_core.so "$bundle/lib/"
cp "$(rustc --print sysroot)"/lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-*.so "$bundle/lib/"
strip --strip-all "$bundle"/bin/*
strip --strip-unneeded "$bundle"/lib/*
tar -C "$repo/target" -cJf "$repo/target/cpu-bundle.tar.xz" cpu-bundle
ls -la "$repo/target/cpu-bundle.tar.xz"
