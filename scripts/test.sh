#!/usr/bin/env bash
# The test suite (CPU): the Python worker's adapters (unittest), then the Rust unit and
# integration tests. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
claimbench_setup_env
(cd python && OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$CLAIMBENCH_PYTHON" -m unittest discover -s tests -t .)
exec cargo test --locked "$@"
