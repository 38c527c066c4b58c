#!/usr/bin/env bash
# On the GPU machine, from the repository root, with target/gpu-bundle.tar.xz (or the folder
# target/gpu-bundle) carried, built here by scripts/gpu/build.sh: checks the device, runs the engine's tests on CUDA, trains the tiny
# example end to end, and benchmarks training against PyTorch on the same GPU. Everything goes
# to $OUT (summary.txt first). Budget: about 8 minutes; each part has its own time limit and a
# failure does not stop the others.
set -uo pipefail
OUT="${OUT:?set OUT to the folder for the results}"
PYTHON="${PYTHON:-python3}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bundle="$repo/target/gpu-bundle"
cd "$repo"
if [ ! -d "$bundle" ] && [ -f "$bundle.tar.xz" ]; then
    tar -C "$repo/target" -xJf "$bundle.tar.xz"
fi
summary="$OUT/summary.txt"
note() { echo "$*" | tee -a "$summary"; }
# step NAME SECONDS CMD...: runs CMD with a time limit, output to $OUT/NAME.txt
step() {
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    note "$name: exit $rc after $((SECONDS - t0)) s"
    return $rc
}

note "date: $(date -u)"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
note "gpu: $(nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader 2>&1)"

# CUDA 13.0 libraries for cuBLAS and NVRTC: the toolkit's own (matching the driver, see
# ../shared/notes/gpu.md on PTX versions) before anything PyTorch bundles.
cuda_lib=""
for d in "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")/../lib64" \
    /usr/local/cuda/lib64 /usr/local/cuda-13.0/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    if [ -e "$d/libcublas.so.13" ] && [ -e "$d/libnvrtc.so.13" ]; then cuda_lib="$(cd "$d" && pwd)"; break; fi
done
if [ -z "$cuda_lib" ]; then
    # fall back to the wheels PyTorch came with
    cuda_lib="$("$PYTHON" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)"
fi
note "cuda libraries: ${cuda_lib:-none found} ($(ls "$cuda_lib" 2>/dev/null | grep -E 'nvrtc.so|cublas.so' | tr '\n' ' '))"
export LD_LIBRARY_PATH="$bundle/lib:$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The include paths dfdx's run-time kernel compiles (NVRTC) were given at build time: make
# them exist here. CUDA headers: this machine's, beside the libraries found above, else the
# two the bundle carries.
while read -r what path; do
    [ -e "$path" ] && continue
    src="$bundle/include/$what"
    if [ "$what" = cuda ] && [ -e "$cuda_lib/../include/cuda_fp16.h" ]; then
        src="$(cd "$cuda_lib/../include" && pwd)"
    fi
    mkdir -p "$(dirname "$path")" && ln -s "$src" "$path"
    note "nvrtc include path $path -> $src"
done <"$bundle/include-paths"
ldd "$bundle/bin/incubator" >"$OUT/ldd.txt" 2>&1
grep -q "not found" "$OUT/ldd.txt" && note "missing libraries: $(grep 'not found' "$OUT/ldd.txt" | tr -s ' \t' ' ')"

# The engine's tests on CUDA (the fixtures are read relative to core/, as under cargo).
for t in unit pytorch_parity gradients assembly reference; do
    [ -x "$bundle/tests/$t" ] || { note "test $t: not in the bundle"; continue; }
    (cd core && step "test-$t" 120 "$bundle/tests/$t" --test-threads 1 --nocapture)
    grep -E "^test result|FAILED|panicked" "$OUT/test-$t.txt" | head -5 | sed 's/^/    /' | tee -a "$summary"
done

# The whole method on the embedded data, small.
step tiny-run 180 "$bundle/bin/incubator" run -c examples/tiny.toml -d "$OUT/tiny-run" --no-progress -j 1
tail -12 "$OUT/tiny-run.txt" | sed 's/^/    /' | tee -a "$summary"

# Training speed against PyTorch on the same GPU, same batch and model.
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())' \
    >"$OUT/torch.txt" 2>&1
note "$(cat "$OUT/torch.txt")"
bench() {
    local name="$1"
    shift
    step "$name" 150 "$bundle/bin/incubator" bench --pytorch "$PYTHON" "$@"
    grep -E "^\| (mnist|vit)|^baseline|^batch|^machine|^PyTorch" "$OUT/$name.txt" | sed 's/^/    /' | tee -a "$summary"
}
bench bench-mnist-small --presets mnist-small --patch 7 --steps 20
bench bench-vit-tiny-28 --presets vit-tiny --steps 10
bench bench-vit-tiny-32 --presets vit-tiny --image 32 --channels 3 --steps 10
note "done: $(date -u)"
