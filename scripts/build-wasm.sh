#!/usr/bin/env bash
# Builds the dashboard for the browser into dashboard/dist (served by `incubator serve`).
#
# With the rustup target installed (`rustup target add wasm32-unknown-unknown`), a plain cargo
# build. Without it (machines whose rustup cannot download targets), Debian's rustc-web and the
# standard library's source build std for wasm32 (-Zbuild-std), linked by the toolchain's lld.
set -euo pipefail
cd "$(dirname "$0")/.."

wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb_version\$"; then
    echo "installing wasm-bindgen-cli $wb_version (it must match the crate exactly)"
    # from outside the workspace: its .cargo/config.toml (prefer-dynamic) is not for tools
    (cd / && cargo install wasm-bindgen-cli --version "=$wb_version")
fi

target=wasm32-unknown-unknown
out=target/wasm/$target/release/incubator_dashboard.wasm
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    cargo rustc -p incubator-dashboard --lib --release --target "$target" --target-dir target/wasm --crate-type cdylib
else
    if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust/library ]; then
        echo "no $target target in rustup: installing Debian's rustc-web and rust-web-src to build std for it"
        sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
        $sudo_cmd apt-get install -y rustc-web rust-web-src
    fi
    lld="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$lld" \
        cargo rustc -p incubator-dashboard --lib --release --target "$target" --target-dir target/wasm \
        --crate-type cdylib -Zbuild-std=std,panic_abort
fi

rm -rf dashboard/dist
wasm-bindgen --target web --no-typescript --out-dir dashboard/dist "$out"
cp dashboard/web/index.html dashboard/dist/
if command -v wasm-opt >/dev/null && wasm-opt --version | grep -qv "version 10[0-9]"; then
    # Debian's binaryen 108 breaks eframe modules; npm's binaryen works
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
        dashboard/dist/incubator_dashboard_bg.wasm -o dashboard/dist/incubator_dashboard_bg.wasm
fi
ls -l dashboard/dist
echo "built dashboard/dist ($(du -sh dashboard/dist | cut -f1)); \`incubator serve RUN_DIR\` serves it"
