#!/usr/bin/env python3
"""Reference for claimbench's allocator peaks: runs the `matmul` workload's op in PyTorch and
compares torch.cuda.max_memory_allocated() with the peak_allocated_bytes claimbench recorded.

Usage: peak_memory.py RUN_DIR [--suite reference-matmul]

For every variant of the suite in RUN_DIR (params and dtype read from run.json), it creates the
same operands, makes the same number of warm-up calls, resets the peak, runs one product,
synchronises and reads the peak. Exit status 1 if any variant differs by more than 1 MiB.
"""
import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE_BYTES = 1 << 20


def reference_peak(m, k, n, dtype, warmup, seed):
    torch.manual_seed(seed)
    a = torch.randn(m, k, device="cuda", dtype=dtype)
    b = torch.randn(k, n, device="cuda", dtype=dtype)
    for _ in range(warmup):
        a @ b
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    c = a @ b
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del c
    return peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--suite", default="reference-matmul")
    args = ap.parse_args()
    run = json.loads((args.run_dir / "run.json").read_text())
    suite = next(s for s in run["suites"] if s["plan"]["suite"] == args.suite)
    recorded = {}
    with open(args.run_dir / "samples.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["suite"] == args.suite and row["warmup"] == "false" and row["peak_allocated_bytes"]:
                recorded.setdefault(row["variant"], []).append(int(row["peak_allocated_bytes"]))
    failed = False
    print(f"{'variant':<12} {'claimbench MiB':>16} {'torch MiB':>12} {'diff bytes':>12}")
    for v in suite["plan"]["variants"]:
        p = v["params"]
        ours = recorded.get(v["name"])
        if not ours:
            print(f"{v['name']:<12} no CUDA samples recorded")
            failed = True
            continue
        ours_median = int(statistics.median(ours))
        theirs = reference_peak(p["m"], p["k"], p["n"], DTYPES[v["knobs"]["dtype"]], v["warmup"], p["seed"])
        diff = ours_median - theirs
        failed |= abs(diff) > TOLERANCE_BYTES
        print(f"{v['name']:<12} {ours_median / 2**20:>16.2f} {theirs / 2**20:>12.2f} {diff:>12}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
