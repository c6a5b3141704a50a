# Sourced by the other scripts: makes a Python with torch 2.11.x available to the build, and
# keeps heavy state (virtual environment, cargo target folder) outside the checkout so that
# fresh clones on the same machine reuse it.
#
# Python choice, first match wins:
#   1. $CLAIMBENCH_PYTHON;
#   2. python3 on PATH, if it already has torch 2.11.x (a GPU box);
#   3. the project venv $CLAIMBENCH_CACHE/venv, created with `pip install torch==2.11.0` if needed.
# Variables honoured: CLAIMBENCH_CACHE (default ~/.cache/claimbench), CARGO_TARGET_DIR.

CLAIMBENCH_CACHE=${CLAIMBENCH_CACHE:-$HOME/.cache/claimbench}
export CLAIMBENCH_CACHE
TORCH_PIN=2.11.0

claimbench_has_torch() {
  "$1" -c 'import sys, importlib.util as u
s = u.find_spec("torch")
if s is None: sys.exit(1)
import pathlib
text = (pathlib.Path(s.submodule_search_locations[0]) / "version.py").read_text()
sys.exit(0 if "__version__ = '"'"'2.11." in text else 1)' 2>/dev/null
}

claimbench_python() {
  if [ -n "${CLAIMBENCH_PYTHON:-}" ]; then
    if ! claimbench_has_torch "$CLAIMBENCH_PYTHON"; then
      echo "error: CLAIMBENCH_PYTHON=$CLAIMBENCH_PYTHON has no torch 2.11.x" >&2
      return 1
    fi
    claimbench_python_deps "$CLAIMBENCH_PYTHON" check
    command -v "$CLAIMBENCH_PYTHON"
    return 0
  fi
  if command -v python3 >/dev/null && claimbench_has_torch python3; then
    claimbench_python_deps "$(command -v python3)" check
    command -v python3
    return 0
  fi
  local venv="$CLAIMBENCH_CACHE/venv"
  if [ ! -x "$venv/bin/python" ] || ! claimbench_has_torch "$venv/bin/python"; then
    echo "setting up $venv with torch==$TORCH_PIN (a one-time download of about 4.6 GB)" >&2
    mkdir -p "$CLAIMBENCH_CACHE"
    python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_PIN" >&2 || return 1
  fi
  claimbench_python_deps "$venv/bin/python" || return 1
  echo "$venv/bin/python"
}

# The adapters' packages (python/requirements.txt, the whole closure pinned): installed into
# the project venv when the file changes; another Python is only checked, never modified.
claimbench_python_deps() {
  local python=$1
  local requirements
  requirements="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/python/requirements.txt"
  [ -f "$requirements" ] || return 0
  local want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  local stamp
  stamp="$(dirname "$(dirname "$python")")/.claimbench-requirements"
  if [ "${2:-}" = check ]; then
    if ! "$python" -c 'import diffusers, transformers, accelerate' 2>/dev/null; then
      echo "note: $python lacks the adapters' packages; the python workload's adapters need: $python -m pip install --no-deps -r $requirements" >&2
    fi
    return 0
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing the adapters' Python packages into $(dirname "$(dirname "$python")")" >&2
    "$python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$requirements" >&2 || return 1
    echo "$want" >"$stamp"
  fi
}

claimbench_setup_env() {
  local python
  python=$(claimbench_python) || return 1
  local bin
  bin=$(dirname "$python")
  export PATH="$bin:$PATH"
  # torch-sys asks `python` when VIRTUAL_ENV is set, else `python3`.
  if [ -x "$bin/python" ]; then
    VIRTUAL_ENV=$(dirname "$bin")
    export VIRTUAL_ENV
  else
    unset VIRTUAL_ENV
  fi
  export LIBTORCH_USE_PYTORCH=1
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLAIMBENCH_CACHE/target}
  export CLAIMBENCH_PYTHON="$python"
}
