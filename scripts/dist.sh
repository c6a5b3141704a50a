#!/usr/bin/env bash
# Packs the release binaries and scenarios/ into a folder (default dist/claimbench) that runs
# on a GPU box with PyTorch 2.11 and no Rust toolchain: copy it there and run ./claimbench run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
claimbench_setup_env
cargo build --release --locked --bins
exec "$CARGO_TARGET_DIR/release/claimbench" dist --out "${1:-dist/claimbench}"
