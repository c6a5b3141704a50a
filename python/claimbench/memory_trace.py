"""Reads the CUDA allocator traces that CLAIMBENCH_CUDA_MEMORY_TRACE makes the workers write, and
says where two of them part: which allocations are live at each one's peak, and which
allocations made the allocator reserve a new segment.

    python3 -m claimbench.memory_trace REAL.csv [REPLICA.csv]

A trace starts just before the traced call (the first unless CLAIMBENCH_CUDA_MEMORY_TRACE_CALL
says another), so its running figures are relative to that moment: "allocated" and "reserved"
here are what the call added (negative where it released more than it allocated). The
`segment_at_end` rows the workers append (the segments held when the call ended) give what was
reserved before it, i.e. what earlier calls left cached, and so the absolute reserved peak and
the segments held at it.
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
    # From `segment_at_end` rows (None without them): the bytes reserved before the trace, and
    # the segments held at the reserved peak, address → (size, held before the trace).
    reserved_before: Optional[int] = None
    segments_at_peak_reserved: Dict[int, Tuple[int, bool]] = field(default_factory=dict)


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
    held_at_end = {e.address: e.size for e in events if e.action == "segment_at_end"}
    # `trace_end` precedes the end rows, so a call that ends holding no segment is told apart
    # from a trace written before these rows existed.
    with_end_state = any(e.action in ("trace_end", "segment_at_end") for e in events)
    events = [e for e in events if e.action not in ("trace_end", "segment_at_end")]
    r = Replay(events)
    segments = segments_before(events, held_at_end)
    if with_end_state:
        r.reserved_before = sum(size for size, _ in segments.values())
    # Until reserved rises above its start, the peak is the start.
    r.segments_at_peak_reserved = dict(segments)
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
            segments[e.address] = (e.size, False)
        elif e.action in ("segment_free", "segment_unmap"):
            reserved -= e.size
            segments.pop(e.address, None)
        elif e.action == "oom" and r.oom_at < 0:
            r.oom_at = i
        if allocated > r.peak_allocated:
            r.peak_allocated, r.peak_allocated_at = allocated, i
        if reserved > r.peak_reserved:
            r.peak_reserved, r.peak_reserved_at = reserved, i
            r.segments_at_peak_reserved = dict(segments)
    r.live_at_peak_allocated = live_after(events, r.peak_allocated_at)
    return r


def segments_before(events: List[Event], held_at_end: Dict[int, int]) -> Dict[int, Tuple[int, bool]]:
    """The segments held when the trace began: those it frees before allocating them, and
    those held at its end that it never allocated."""
    before: Dict[int, Tuple[int, bool]] = {}
    allocated = set()
    for e in events:
        if e.action in ("segment_alloc", "segment_map"):
            allocated.add(e.address)
        elif e.action in ("segment_free", "segment_unmap") and e.address not in allocated:
            before[e.address] = (e.size, True)
    for address, size in held_at_end.items():
        if address not in allocated:
            before[address] = (size, True)
    return before


def segments_at_peak(r: Replay, n: int = 12) -> List[Tuple[int, bool, int, str]]:
    """The segments held at the reserved peak, largest first: (size, held before the trace,
    bytes in it of blocks this trace allocated and had not freed, the largest of those's frame)."""
    live = live_after(r.events, r.peak_reserved_at)
    rows = []
    for address, (size, before) in r.segments_at_peak_reserved.items():
        inside = [e for a, e in live.items() if address <= a < address + size]
        top = max(inside, key=lambda e: e.size).frame if inside else ""
        rows.append((size, before, sum(e.size for e in inside), top or ("" if not inside else "?")))
    rows.sort(key=lambda row: -row[0])
    return rows[:n]


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
    if r.reserved_before is not None:
        lines.append(
            f"reserved before the trace: {r.reserved_before / MIB:.1f} MiB; at the peak: "
            f"{(r.reserved_before + r.peak_reserved) / MIB:.1f} MiB in "
            f"{len(r.segments_at_peak_reserved)} segments (size, whether held before, "
            f"bytes of this trace's live blocks in it, the largest one's frame):"
        )
        for size, before, used, frame in segments_at_peak(r):
            held = "held before" if before else "new        "
            lines.append(f"  {size / MIB:9.2f} MiB {held} {used / MIB:9.2f} MiB used  {frame}")
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
        pairs = [
            ("peak allocated", ra.peak_allocated, rb.peak_allocated),
            ("peak reserved", ra.peak_reserved, rb.peak_reserved),
        ]
        if ra.reserved_before is not None and rb.reserved_before is not None:
            pairs.append(("reserved before the trace", ra.reserved_before, rb.reserved_before))
            pairs.append(("peak reserved, absolute", ra.reserved_before + ra.peak_reserved,
                          rb.reserved_before + rb.peak_reserved))
        for what, x, y in pairs:
            ratio = f"{x / y:.3f}×" if y else "n/a"
            print(f"  {what}: {x / MIB:.1f} vs {y / MIB:.1f} MiB, {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
