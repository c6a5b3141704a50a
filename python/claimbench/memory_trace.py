"""Reads the CUDA allocator traces that CLAIMBENCH_CUDA_MEMORY_TRACE makes the workers write, and
says where two of them part: which allocations are live at each one's peak, and which
allocations made the allocator reserve a new segment.

    python3 -m claimbench.memory_trace REAL.csv [REPLICA.csv]

A trace starts after the workload is built and the cache emptied, so its figures are relative
to that moment: "allocated" and "reserved" here are what the first call added on top of the
weights (negative where it released more than it allocated).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

MIB = 1 << 20
# Both workers keep the newest 4,000,000 events; a trace that long may have lost its start.
TRACE_ENTRIES = 4_000_000


@dataclass
class Event:
    action: str
    address: int
    size: int
    frame: str = ""


@dataclass
class Replay:
    """The trace replayed: running totals and the moments of their peaks."""

    events: List[Event]
    peak_allocated: int = 0
    peak_allocated_at: int = -1
    peak_reserved: int = 0
    peak_reserved_at: int = -1
    segment_allocs: List[Tuple[int, Event, Optional[Event], int]] = field(default_factory=list)
    live_at_peak_allocated: Dict[int, Event] = field(default_factory=dict)
    oom_at: int = -1


def load(path: str) -> List[Event]:
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        missing = {"action", "address", "bytes"} - set(rows.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: line 1: no column {', '.join(sorted(missing))}")
        events = []
        for line, row in enumerate(rows, start=2):
            try:
                events.append(Event(row["action"], int(row["address"]), int(row["bytes"]), row.get("frame") or ""))
            except ValueError as e:
                raise ValueError(f"{path}: line {line}: {e}") from None
    return events


def replay(events: List[Event]) -> Replay:
    """Running totals from the start of the trace. A free of a block allocated before it (a
    released weight) counts too: allocated follows `memory_allocated`, and may go negative."""
    r = Replay(events)
    allocated = reserved = 0
    for i, e in enumerate(events):
        if e.action == "alloc":
            allocated += e.size
        elif e.action == "free_completed":
            allocated -= e.size
        elif e.action in ("segment_alloc", "segment_map"):
            reserved += e.size
            trigger = next((events[j] for j in range(i + 1, len(events)) if events[j].action == "alloc"), None)
            r.segment_allocs.append((i, e, trigger, allocated))
        elif e.action in ("segment_free", "segment_unmap"):
            reserved -= e.size
        elif e.action == "oom" and r.oom_at < 0:
            r.oom_at = i
        if allocated > r.peak_allocated:
            r.peak_allocated, r.peak_allocated_at = allocated, i
        if reserved > r.peak_reserved:
            r.peak_reserved, r.peak_reserved_at = reserved, i
    r.live_at_peak_allocated = live_after(events, r.peak_allocated_at)
    return r


def live_after(events: List[Event], index: int) -> Dict[int, Event]:
    """The blocks allocated within the trace and still live after event `index`."""
    live: Dict[int, Event] = {}
    for e in events[: index + 1]:
        if e.action == "alloc":
            live[e.address] = e
        elif e.action == "free_completed":
            live.pop(e.address, None)
    return live


def largest(live: Dict[int, Event], n: int = 12) -> List[Tuple[str, int, int]]:
    """The allocations live at a moment, grouped by (frame, size), largest totals first."""
    groups: Counter = Counter()
    for e in live.values():
        groups[(e.frame or "?", e.size)] += 1
    ranked = sorted(groups.items(), key=lambda kv: -kv[0][1] * kv[1])
    return [(frame, size, count) for (frame, size), count in ranked[:n]]


def describe(name: str, r: Replay) -> str:
    cut = " (the workers' limit: the oldest may be missing)" if len(r.events) >= TRACE_ENTRIES else ""
    lines = [
        f"== {name}: {len(r.events)} events{cut}",
        f"peak allocated +{r.peak_allocated / MIB:.1f} MiB (event {r.peak_allocated_at}); "
        f"peak reserved +{r.peak_reserved / MIB:.1f} MiB (event {r.peak_reserved_at}) "
        f"in {len(r.segment_allocs)} new segments",
        "live at the allocated peak (count × size, where):",
    ]
    lines += [f"  {c:4d} × {s / MIB:9.2f} MiB  {f}" for f, s, c in largest(r.live_at_peak_allocated)]
    if r.oom_at >= 0:
        oom = r.events[r.oom_at]
        # An `oom` row's bytes are the request; its address column, the device's free bytes.
        lines.append(
            f"out of memory at event {r.oom_at}: asked for {oom.size / MIB:.1f} MiB with "
            f"{oom.address / MIB:.1f} MiB free on the device; alive then:"
        )
        lines += [f"  {c:4d} × {s / MIB:9.2f} MiB  {f}" for f, s, c in largest(live_after(r.events, r.oom_at))]
    lines.append("new segments (segment size ← the allocation that asked for it, allocated then):")
    for i, seg, trigger, allocated in r.segment_allocs:
        asked = f"{trigger.size / MIB:9.2f} MiB {trigger.frame}" if trigger else "?"
        lines.append(f"  #{i:<8d} {seg.size / MIB:9.2f} MiB ← {asked}  (+{allocated / MIB:.1f} MiB live)")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m claimbench.memory_trace", description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+", metavar="TRACE.csv")
    args = parser.parse_args(argv)
    replays = []
    for path in args.traces:
        try:
            replays.append((path, replay(load(path))))
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    for path, r in replays:
        print(describe(path, r))
    if len(replays) == 2:
        (a, ra), (b, rb) = replays
        print(f"== {a} ÷ {b}")
        for what, x, y in (
            ("peak allocated", ra.peak_allocated, rb.peak_allocated),
            ("peak reserved", ra.peak_reserved, rb.peak_reserved),
        ):
            ratio = f"{x / y:.3f}×" if y else "n/a"
            print(f"  {what}: {x / MIB:.1f} vs {y / MIB:.1f} MiB, {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
