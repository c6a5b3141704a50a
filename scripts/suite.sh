#!/usr/bin/env bash
# The main job: builds claimbench (release) and runs the default suite, every
# scenarios/*.toml, on CUDA when a GPU is present, else on CPU at reduced size.
# Extra arguments go to `claimbench run` (e.g. --profile quick, or manifest paths).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
claimbench_setup_env
cargo build --release --locked --bins
exec "$CARGO_TARGET_DIR/release/claimbench" run "$@"
