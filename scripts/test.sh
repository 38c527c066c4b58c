#!/usr/bin/env bash
# The test suite: unit, gradient, reference and integration tests (the last run the real
# binary on the embedded MNIST subset), plus the TensorBoard files read back by TensorBoard's
# own Python reader.
set -euo pipefail
cd "$(dirname "$0")/.."

# A Python with the tensorboard package, the real consumer of our event files.
if [ ! -x .venv-tb/bin/python ] || ! .venv-tb/bin/python -c "import tensorboard" 2>/dev/null; then
    python3 -m venv .venv-tb
    .venv-tb/bin/pip install --quiet --disable-pip-version-check tensorboard
fi
export INCUBATOR_TB_PYTHON="$PWD/.venv-tb/bin/python"

# PyTorch with timm (and torchvision, which timm installs): the other side of `incubator export
# --format timm` (tests/timm.rs) and of the folder pipeline's resizes (tests/torchvision_transforms.rs)
if [ ! -x .venv-torch/bin/python ] || ! .venv-torch/bin/python -c "import torch, torchvision, timm, safetensors" 2>/dev/null; then
    python3 -m venv .venv-torch
    .venv-torch/bin/pip install --quiet --disable-pip-version-check torch timm safetensors
fi
export INCUBATOR_TORCH_PYTHON="$PWD/.venv-torch/bin/python"

# Data-parallel stages (tests/ranks.rs): Open MPI's mpirun, and its library, headers and
# libclang to build the `mpi` feature
if ! dpkg -s openmpi-bin libopenmpi-dev libclang-dev >/dev/null 2>&1; then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends \
        openmpi-bin libopenmpi-dev libclang-dev >/dev/null
fi
# mpirun refuses root unless told (CI runs as root)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# tests/slurm.rs starts a single-node Slurm (scripts/slurm-local.sh); stop it when done
trap './scripts/slurm-local.sh stop >/dev/null 2>&1 || true' EXIT
# every test, those that need root, network, Python or MPI included (each says what it needs;
# without them a plain `cargo test` lists them as ignored, with the reason)
cargo test --workspace --all-targets --features mpi -- --include-ignored

# The dashboard in a real browser: the WASM bundle, then a live run watched in headless
# Chromium (screenshots in target/browser-test, CI's artefacts).
./scripts/build-wasm.sh
if ! command -v chromium >/dev/null; then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y chromium
fi
(cd tests/browser && npm install --no-audit --no-fund --silent)
node tests/browser/live.mjs target/debug/incubator

# The CUDA code paths type-check (dfdx's ci-check: no CUDA toolkit needed, nothing runs),
# NCCL's data-parallel path with them (`nccl` = cuda + mpi + NCCL's all-reduce).
cargo check --workspace --exclude incubator-dashboard --features nccl,ci-check --target-dir target/cuda-check
