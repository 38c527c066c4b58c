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

cargo test --workspace --all-targets -- --include-ignored --skip regenerate_assets
