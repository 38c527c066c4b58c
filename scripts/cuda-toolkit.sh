#!/usr/bin/env bash
# A CUDA 13.0 root for building the engine with `--features cuda` on a machine without the
# CUDA toolkit or a GPU (this one):
#   - nvcc, headers, cuBLAS and NVRTC from NVIDIA's PyPI wheels, pinned to 13.0: the GPU
#     machine's driver (580) belongs to CUDA 13.0 and refuses PTX from a newer nvcc;
#   - a stub libcuda.so to link against (the driver supplies the real libcuda.so.1 where the
#     binary runs);
#   - an nvidia-smi stand-in, because dfdx's build script asks nvidia-smi for the GPU's compute
#     capability (9.0, the H200's, unless CUDA_COMPUTE_CAP says otherwise).
#
# Usage: scripts/cuda-toolkit.sh [DIR]     (DIR defaults to target/cuda-13.0)
# Prints the environment to build with; scripts/gpu/build.sh uses it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mkdir -p "${1:-$repo/target/cuda-13.0}" && cd "${1:-$repo/target/cuda-13.0}" && pwd)"
cap="${CUDA_COMPUTE_CAP:-90}"
root="$dir/root"

if [ ! -x "$dir/wheels/nvidia/cu13/bin/nvcc" ]; then
    python3 -m venv "$dir/venv" 2>/dev/null || {
        echo "python3 -m venv failed: installing python3-venv" >&2
        apt-get install -y python3-venv >&2
        python3 -m venv "$dir/venv"
    }
    # one pip call: a second `--target` install would replace the nvidia/ folder
    "$dir/venv/bin/pip" install --quiet --target "$dir/wheels" \
        nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-cuda-runtime==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 \
        nvidia-cuda-nvrtc==13.0.88 >&2
fi

wheel="$dir/wheels/nvidia/cu13"
mkdir -p "$root/lib64/stubs" "$dir/fake-bin"
for d in bin include nvvm; do ln -sfn "$wheel/$d" "$root/$d"; done
# the unversioned names the linker looks for (`-lcublas` and so on)
for lib in cublas cublasLt nvrtc cudart; do
    ln -sf "$wheel/lib/lib$lib.so.13" "$root/lib64/lib$lib.so"
done

# Stub libcuda: every driver function cudarc's bindings name, as an empty symbol, with the
# real library's soname so that the loader picks the driver's libcuda.so.1 at run time.
if [ ! -f "$root/lib64/stubs/libcuda.so" ]; then
    (cd "$repo" && cargo fetch --quiet)
    sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.9.15/src/driver/sys.rs | head -1)"
    grep -o 'pub fn cu[A-Za-z0-9_]*' "$sys" | sed 's/pub fn //' | sort -u |
        sed 's/.*/void &(void) {}/' >"$dir/libcuda-stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib64/stubs/libcuda.so" "$dir/libcuda-stub.c"
fi

cat >"$dir/fake-bin/nvidia-smi" <<SMI
#!/bin/sh
# Stand-in for the build only: dfdx's build script reads the compute capability from here.
echo compute_cap
echo "$((cap / 10)).$((cap % 10))"
SMI
chmod +x "$dir/fake-bin/nvidia-smi"

echo "export CUDA_ROOT=$root"
echo "export PATH=$root/bin:$dir/fake-bin:\$PATH"
