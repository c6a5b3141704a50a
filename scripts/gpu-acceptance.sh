#!/usr/bin/env bash
# Acceptance checks for a GPU box, run from the repository root with a dist folder built
# elsewhere: cuDNN on/off and dtype on the conv stack, allocator peaks against PyTorch's own
# counter, and a VRAM budget that turns a 10 GiB allocation into a recorded OOM.
#
#   scripts/gpu-acceptance.sh DIST_DIR OUT_DIR
#
# Writes logs and a tarball of the run records to OUT_DIR; exits non-zero if a check fails.
set -uo pipefail
dist=${1:?dist folder}
out=${2:?output folder}
mkdir -p "$out"
results="$out/results"
status=0

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,memory.used,memory.total \
  --format=csv >"$out/gpu-before.csv" 2>&1

latest_run() { ls -d "$results"/runs/* | sort | tail -n 1; }

echo "== conv stack (quick profile)"
"$dist/claimbench" run --quiet --profile quick --results "$results" "$dist/scenarios/conv-stack.toml" 2>&1 | tee "$out/conv-stack.log" || status=1

echo "== reference matmul vs torch.cuda.max_memory_allocated()"
"$dist/claimbench" run --quiet --results "$results" "$dist/scenarios/reference-matmul.toml" 2>&1 | tee "$out/reference.log" || status=1
python3 tests/reference/peak_memory.py "$(latest_run)" 2>&1 | tee -a "$out/reference.log" || status=1

echo "== VRAM budget: 10 GiB allocation without and with an 8 GiB budget"
"$dist/claimbench" run --quiet --results "$results" tests/manifests/gpu-budget.toml 2>&1 | tee "$out/budget.log"
python3 - "$(latest_run)" <<'PY' 2>&1 | tee -a "$out/budget.log" || status=1
import json, sys
run = json.load(open(sys.argv[1] + "/run.json"))
by = {p["variant"]: p for p in run["suites"][0]["processes"]}
print(json.dumps({k: {"status": v["status"], "oom": v["oom"], "message": (v["message"] or "")[:300]} for k, v in by.items()}, indent=1))
ok = by["no-budget"]["status"] == "ok" and by["budget-8gib"]["status"] == "oom"
print("budget check:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY

nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,memory.used --format=csv >"$out/gpu-after.csv" 2>&1
tar czf "$out/results.tgz" -C "$out" results && rm -rf "$results"
exit $status
