#!/usr/bin/env python3
"""Splits a finished unsharded run into the shards that `claimbench run --shard I/N` runs,
keeping its own samples: for each shard record given, a copy of RUN with that shard's
assignment and only the processes (and samples.csv rows) assigned to it.

Merging the copies (`claimbench merge OUT/runs/*`) must give RUN's record and report exactly:
the check that a merge analyses samples as an unsharded run does, free of measurement noise.

    scripts/split_run.py RUN SHARD_RUN... --out DIR     # writes DIR/runs/part-<I>/
"""

import argparse
import csv
import json
import pathlib
import shutil
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=pathlib.Path, help="the unsharded run folder")
    parser.add_argument("shards", type=pathlib.Path, nargs="+", help="shard run folders (their assignments are used)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="results folder for the copies")
    args = parser.parse_args()
    full = json.loads((args.run / "run.json").read_text())
    for shard_dir in args.shards:
        info = json.loads((shard_dir / "run.json").read_text()).get("shard")
        if info is None:
            sys.exit(f"{shard_dir}: not a shard's run (no `shard` in run.json)")
        mine = {(j["suite"], j["variant"], j["process"]) for j in info["jobs"]}
        to = args.out / "runs" / f"part-{info['index']}"
        (to / "logs").mkdir(parents=True, exist_ok=False)
        (to / "manifests").mkdir()
        record = json.loads(json.dumps(full))
        record["shard"] = info
        for suite in record["suites"]:
            name = suite["plan"]["suite"]
            shutil.copy(args.run / suite["manifest_file"], to / suite["manifest_file"])
            suite["processes"] = [p for p in suite["processes"] if (name, p["variant"], p["process"]) in mine]
            for p in suite["processes"]:
                log = args.run / p["log_file"]
                if log.is_file():
                    shutil.copy(log, to / p["log_file"])
        (to / "run.json").write_text(json.dumps(record, indent=2))
        with open(args.run / "samples.csv", newline="") as src, open(to / "samples.csv", "w", newline="") as dst:
            reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
            writer.writerow(next(reader))
            for row in reader:
                if (row[0], row[1], int(row[2])) in mine:
                    writer.writerow(row)
        print(to)
    return 0


if __name__ == "__main__":
    sys.exit(main())
