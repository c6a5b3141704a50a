#!/usr/bin/env bash
# The test suite (CPU): unit and integration tests. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
claimbench_setup_env
exec cargo test --locked "$@"
