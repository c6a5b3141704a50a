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
  req=python/requirements.txt
  wheels="$out/wheels"
  pip=("$CLAIMBENCH_PYTHON" -m pip --quiet --disable-pip-version-check)
  # What a PyTorch image typically lacks. Pure wheels as published; antlr4's runtime is only
  # published as a source archive, so it is built into a wheel here; optree and pydantic-core
  # are compiled, so their wheels are fetched for each CPython a box may have and pip picks the
  # matching one there.
  pure=$(grep -i -E '^(diffusers|hy3dgen|importlib[-_]metadata|trimesh|sam3d|hydra-core|omegaconf|loguru|easydict|plyfile|astor|pydantic|annotated-types|typing-inspection)==' "$req")
  # shellcheck disable=SC2086 # one argument per pin
  "${pip[@]}" download --no-deps --only-binary=:all: -d "$wheels" $pure
  "${pip[@]}" wheel --no-deps -w "$wheels" "$(grep -i '^antlr4-python3-runtime==' "$req")"
  compiled=$(grep -i -E '^(optree|pydantic_core)==' "$req")
  for py in 3.10 3.11 3.12 3.13; do
    # shellcheck disable=SC2086
    "${pip[@]}" download --no-deps --only-binary=:all: --python-version "$py" \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$wheels" $compiled
  done
  { echo "# pip install --no-index --no-deps --find-links wheels --target pylib -r wheels/requirements.txt"
    # shellcheck disable=SC2086
    printf '%s\n' $pure "$(grep -i '^antlr4-python3-runtime==' "$req")" $compiled
  } >"$wheels/requirements.txt"
fi
