#!/usr/bin/env bash
# Packs the release binaries, scenarios/ and the Python worker into a folder (default
# dist/claimbench) that runs on a GPU box with PyTorch 2.11 and no Rust toolchain: copy it there
# and run ./claimbench run. Also packs, into wheels/, the pure-Python wheels that the adapters
# need beyond a typical PyTorch image (pinned in python/requirements.txt), for boxes without
# network access; set CLAIMBENCH_DIST_WHEELS=0 to skip them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
claimbench_setup_env
out="${1:-dist/claimbench}"
cargo build --release --locked --bins
"$CARGO_TARGET_DIR/release/claimbench" dist --out "$out"
if [ "${CLAIMBENCH_DIST_WHEELS:-1}" != 0 ]; then
  pins=$(grep -i -E '^(diffusers|hy3dgen|importlib[-_]metadata|trimesh)==' python/requirements.txt)
  # shellcheck disable=SC2086 # one argument per pin
  "$CLAIMBENCH_PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$out/wheels" $pins
fi
