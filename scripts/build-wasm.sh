#!/usr/bin/env bash
# Builds the dashboard for the browser into dashboard/dist (served by `incubator serve`).
#
# With the rustup target installed (`rustup target add wasm32-unknown-unknown`), a plain cargo
# build. Without it (machines whose rustup cannot download targets), the toolchain's own rustc
# builds std for wasm32 from source (-Zbuild-std), linked by the toolchain's rust-lld.
set -euo pipefail
cd "$(dirname "$0")/.."

wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb_version\$"; then
    echo "installing wasm-bindgen-cli $wb_version (it must match the crate exactly)"
    # from outside the workspace: its .cargo/config.toml (prefer-dynamic) is not for tools
    (cd / && cargo install wasm-bindgen-cli --version "=$wb_version")
fi

target=wasm32-unknown-unknown
# no debug info in the bundle (the native release profile keeps line tables)
export CARGO_PROFILE_RELEASE_DEBUG=false
out=target/wasm/$target/release/incubator_dashboard.wasm
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    cargo rustc -p incubator-dashboard --lib --release --target "$target" --target-dir target/wasm --crate-type cdylib
else
    # No prebuilt std for wasm32: build it from the standard library's source (-Zbuild-std).
    # rustup cannot download its rust-src component here, so take Debian's rust-src package
    # of the same release (it is architecture-independent) and install it where rustup's
    # component would go.
    sysroot=$(rustc --print sysroot)
    version=$(rustc --version | awk '{print $2}')
    if [ ! -f "$sysroot/lib/rustlib/src/rust/library/std/Cargo.toml" ]; then
        src_dir=target/rust-src-$version
        if [ ! -d "$src_dir/usr/lib/rustlib/src/rust/library" ]; then
            deb=""
            for dist in trixie-backports trixie sid; do
                deb=$(curl -fsS "http://deb.debian.org/debian/dists/$dist/main/binary-all/Packages.xz" | xz -dc |
                    awk -v v="$version" '/^Package: rust-src$/ {p=1} p && /^Version:/ {ok = index($2, v "+") == 1}
                        p && ok && /^Filename:/ {print $2; exit} /^$/ {p=0; ok=0}') || true
                [ -n "$deb" ] && break
            done
            if [ -z "$deb" ]; then
                echo "no Debian rust-src package for rustc $version; install the target instead: rustup target add $target" >&2
                exit 1
            fi
            echo "fetching the standard library's source for rustc $version: $deb"
            mkdir -p "$src_dir"
            curl -fsS "http://deb.debian.org/debian/$deb" -o "$src_dir/rust-src.deb"
            dpkg-deb -x "$src_dir/rust-src.deb" "$src_dir"
        fi
        mkdir -p "$sysroot/lib/rustlib/src"
        ln -sfn "$PWD/$src_dir/usr/lib/rustlib/src/rust" "$sysroot/lib/rustlib/src/rust"
    fi
    lld="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
    RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$lld" \
        cargo rustc -p incubator-dashboard --lib --release --target "$target" --target-dir target/wasm \
        --crate-type cdylib -Zbuild-std=std,panic_abort
fi

rm -rf dashboard/dist
wasm-bindgen --target web --no-typescript --out-dir dashboard/dist "$out"
cp dashboard/web/index.html dashboard/dist/
# Size: binaryen's wasm-opt from npm (Debian's binaryen 108 produces modules eframe cannot run).
if command -v npm >/dev/null; then
    (cd dashboard/web && npm install --no-audit --no-fund --silent)
    dashboard/web/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-mutable-globals \
        dashboard/dist/incubator_dashboard_bg.wasm -o dashboard/dist/incubator_dashboard_bg.wasm
fi
ls -l dashboard/dist
wasm=dashboard/dist/incubator_dashboard_bg.wasm
echo "built dashboard/dist: $(wc -c < "$wasm") bytes of wasm, $(gzip -c "$wasm" | wc -c) gzipped; \`incubator serve RUN_DIR\` serves it"
