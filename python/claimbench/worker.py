"""``python -m claimbench.worker``: the Python twin of ``claimbench worker``.

It speaks the same protocol (one job as a JSON line on stdin; JSON lines tagged by ``kind`` on
stdout: ``hello``, ``sample``, ``log``, ``warmed_up``, ``measured``, ``outcome``), applies the
same knobs in the same order, and measures with the same definitions, so that a real pipeline
and a Rust workload are judged alike:

* environment knobs are set by the parent before this process starts (before CUDA initialises);
  backend flags (cuDNN, determinism, TF32) and the VRAM budget are applied before the pipeline
  builds anything; the budget takes the CUDA context, measured with NVML, off the allocator's
  share, as on a card of that size;
* per measured call (:meth:`Worker.measure`): the allocator's peak counters are reset and the
  device synchronised, and the bytes then allocated are read (what the pipeline keeps from one
  call to the next shows as growth over its first call's); the host clock is read and a CUDA
  start event recorded; the pipeline's ``call`` runs (under ``torch.no_grad`` and, if the knob says so, ``torch.autocast``); an end
  event is recorded, the device synchronised and the host clock read again: the wall time
  includes all device work (the sync is inside the timed region), the GPU time is the elapsed
  time between the events; then allocator peaks, NVML telemetry of the window and the process's
  peak RSS are read;
* stage boundaries (``ctx.stage``) synchronise and read the host clock like the Rust ``Stages``.

Whatever the pipeline or its libraries print goes to stderr: stdout is the protocol channel, so
it is taken over before user code is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import re
import resource
import statistics
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

PROTOCOL_VERSION = 1
NVML_INTERVAL_S = 0.010
# NVML clock-throttle reasons that flag a sample (see the Rust worker): hardware slowdown,
# software and hardware thermal, power brake; `sw_power_cap` alone is not throttling.
SLOWDOWN_REASONS = 0x8 | 0x20 | 0x40 | 0x80
THROTTLE_GPU_IDLE = 0x1
# Knobs that only act on CUDA, with their defaults: set on a CPU worker, they are recorded as
# not applicable (the same list and order as the Rust knob registry).
CUDA_ONLY_KNOBS = [
    ("cudnn.enabled", "cudnn_enabled", True),
    ("cudnn.benchmark", "cudnn_benchmark", False),
    ("cudnn.deterministic", "cudnn_deterministic", False),
    ("tf32.matmul", "tf32_matmul", False),
    ("tf32.cudnn", "tf32_cudnn", True),
    ("empty_cache", "empty_cache_between_stages", False),
    ("vram_budget_gib", "vram_budget_gib", None),
]


class Protocol:
    """Writes protocol messages to the real stdout; everything else printed goes to stderr."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        # From here on, print() and libraries writing to fd 1 land in stderr (the parent's log).
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout = sys.stderr

    def emit(self, message: Dict[str, Any]) -> None:
        try:
            self._out.write(json.dumps(message, allow_nan=False) + "\n")
            self._out.flush()
        except (BrokenPipeError, OSError):
            # The parent is gone; nothing useful is left to do.
            os._exit(141)

    def log(self, level: str, message: str) -> None:
        self.emit({"kind": "log", "level": level, "message": message})

    def finish(self, status: str, message: Optional[str] = None, oom: Optional[dict] = None) -> int:
        self.emit({"kind": "outcome", "status": status, "message": message, "oom": oom})
        return 0 if status == "ok" else 1


def is_oom_message(message: str) -> bool:
    m = message.lower()
    return "out of memory" in m or "outofmemoryerror" in m or "can't allocate memory" in m


_UNITS = {"b": 1, "bytes": 1, "byte": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def requested_bytes(message: str) -> Optional[int]:
    """The request size in an OOM message ("Tried to allocate 10.00 GiB", "you tried to
    allocate 1234 bytes"), as the Rust worker parses it."""
    m = re.search(r"tried to allocate (\S+)\s*(\S*)", message.lower())
    if not m:
        return None
    try:
        number = float(m.group(1))
    except ValueError:
        return None
    unit = (m.group(2) or "bytes").rstrip(".,;)")
    scale = _UNITS.get(unit)
    return None if scale is None else round(number * scale)


def median_interval_relative_width(values: List[float]) -> Optional[float]:
    """Relative width of the distribution-free 95 % interval of the median (order statistics,
    binomial), or ``None`` below 6 values, where no such interval reaches 95 %."""
    n = len(values)
    if n < 6:
        return None
    xs = sorted(values)
    # Largest k with P(Binomial(n, 1/2) < k) <= 2.5 %: the interval is [x_(k), x_(n-k+1)].
    cumulative, k = 0.0, 0
    for j in range(n + 1):
        cumulative += math.comb(n, j) / 2.0**n
        if cumulative > 0.025:
            k = j
            break
    if k < 1:
        return None
    low, high = xs[k - 1], xs[n - k]
    mid = (xs[(n - 1) // 2] + xs[n // 2]) / 2.0
    return (high - low) / mid if mid > 0 else None


class Telemetry:
    """NVML readings every 10 ms in a background thread, aggregated per call window as the
    Rust sampler does. Absent without pynvml or a driver: samples then carry no telemetry."""

    def __init__(self) -> None:
        import pynvml  # type: ignore[import-not-found]

        self._nvml = pynvml
        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        if not visible:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        elif visible.isdigit():
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible))
        else:
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(visible)
        h, n = self._handle, pynvml
        driver = n.nvmlSystemGetDriverVersion()
        cuda = n.nvmlSystemGetCudaDriverVersion()
        name, uuid = n.nvmlDeviceGetName(h), n.nvmlDeviceGetUUID(h)
        self.info = {
            "name": name.decode() if isinstance(name, bytes) else name,
            "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
            "driver_version": driver.decode() if isinstance(driver, bytes) else driver,
            "cuda_driver_version": f"{cuda // 1000}.{(cuda % 1000) // 10}",
            "memory_total_bytes": int(n.nvmlDeviceGetMemoryInfo(h).total),
            "sm_clock_max_mhz": int(n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
        }
        self._ring: List[Tuple[float, dict]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="nvml-sampler", daemon=True)
        self._thread.start()

    def _try(self, f: Callable[[], Any]) -> Any:
        try:
            return f()
        except Exception:  # NVML refuses some fields on some devices: recorded as absent.
            return None

    def _read(self) -> Tuple[float, dict]:
        n, h = self._nvml, self._handle
        procs = self._try(lambda: n.nvmlDeviceGetComputeRunningProcesses(h))
        return time.perf_counter(), {
            "memory_used_bytes": self._try(lambda: int(n.nvmlDeviceGetMemoryInfo(h).used)),
            "sm_clock_mhz": self._try(lambda: int(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM))),
            "temperature_c": self._try(lambda: int(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))),
            "power_mw": self._try(lambda: int(n.nvmlDeviceGetPowerUsage(h))),
            "throttle_reasons": self._try(lambda: int(n.nvmlDeviceGetCurrentClocksThrottleReasons(h))),
            "compute_processes": None if procs is None else len(procs),
        }

    def _poll(self) -> None:
        while not self._stop.is_set():
            reading = self._read()
            with self._lock:
                self._ring.append(reading)
                if len(self._ring) > 60_000:
                    del self._ring[:1000]
            time.sleep(NVML_INTERVAL_S)

    def window(self, start: float, end: float) -> dict:
        with self._lock:
            inside = [r for t, r in self._ring if start <= t <= end]
            if not inside and self._ring:
                inside = [min(self._ring, key=lambda tr: abs(tr[0] - end))[1]]

        def values(key: str) -> List[Any]:
            return [r[key] for r in inside if r[key] is not None]

        clocks, power = values("sm_clock_mhz"), values("power_mw")
        throttle = values("throttle_reasons")
        reasons = None
        if throttle:
            reasons = 0
            for bits in throttle:
                reasons |= bits
            reasons &= ~THROTTLE_GPU_IDLE
        return {
            "readings": len(inside),
            "memory_used_max_bytes": max(values("memory_used_bytes"), default=None),
            "sm_clock_min_mhz": min(clocks, default=None),
            "sm_clock_mean_mhz": sum(clocks) / len(clocks) if clocks else None,
            "temperature_max_c": max(values("temperature_c"), default=None),
            "power_mean_w": sum(power) / len(power) / 1000.0 if power else None,
            "throttle_reasons": reasons,
            "compute_processes_max": max(values("compute_processes"), default=None),
        }

    def process_overhead_bytes(self, reserved_bytes: int) -> int:
        """Device memory this process holds outside the allocator (CUDA context, handles); the
        device-wide figure when this PID is not visible (PID namespaces) and it is alone."""
        n, h = self._nvml, self._handle
        procs = n.nvmlDeviceGetComputeRunningProcesses(h)
        mine = [p for p in procs if p.pid == os.getpid()]
        if mine:
            used = mine[0].usedGpuMemory
            if used is None:
                raise RuntimeError("NVML does not report per-process memory")
        elif len(procs) == 1:
            used = n.nvmlDeviceGetMemoryInfo(h).used
        else:
            raise RuntimeError(f"this process is not among the device's {len(procs)} compute processes")
        return max(0, int(used) - reserved_bytes)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def cpu_ranges(cpus: List[int]) -> str:
    """``[0, 1, 2, 5]`` → ``0-2,5``, as the Rust worker writes CPU lists."""
    parts, i, cpus = [], 0, sorted(cpus)
    while i < len(cpus):
        start = cpus[i]
        while i + 1 < len(cpus) and cpus[i + 1] == cpus[i] + 1:
            i += 1
        parts.append(str(start) if cpus[i] == start else f"{start}-{cpus[i]}")
        i += 1
    return ",".join(parts)


def host_usage_since(before: "resource.struct_rusage") -> dict:
    """CPU time, context switches and CPUs of this process since ``before`` (the Rust
    worker's ``measure::host`` method: ``getrusage(RUSAGE_SELF)`` deltas)."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    last_cpu = None
    try:
        with open("/proc/self/stat") as f:
            # Field 39 (processor), counted after the command name's closing parenthesis.
            last_cpu = int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "user_ms": (now.ru_utime - before.ru_utime) * 1e3,
        "system_ms": (now.ru_stime - before.ru_stime) * 1e3,
        "voluntary_switches": max(0, now.ru_nvcsw - before.ru_nvcsw),
        "involuntary_switches": max(0, now.ru_nivcsw - before.ru_nivcsw),
        "allowed_cpus": cpu_ranges(list(os.sched_getaffinity(0))),
        "last_cpu": last_cpu,
    }


class CpuProbe:
    """How fast the host CPU ran for this process (the Rust worker's ``measure::host::CpuProbe``,
    in Python, so it times the interpreter that runs the pipeline's host code): a dependent
    pointer chase through a fixed cyclic permutation of 65,536 entries, 50,000 steps, timed on
    the host clock, run ``REPEATS`` times before the first measured call and again after the
    last, outside every timed region. The record keeps the median (``stop.host.cpu_probe_ms``).
    Comparable between processes of the Python worker, not with the Rust worker's."""

    ENTRIES = 1 << 16
    STEPS = 50_000
    REPEATS = 5

    def __init__(self) -> None:
        # Sattolo's shuffle (a single cycle) driven by a fixed 64-bit xorshift.
        nxt = list(range(self.ENTRIES))
        state = 0x9E3779B97F4A7C15
        mask = (1 << 64) - 1
        for i in range(self.ENTRIES - 1, 0, -1):
            state ^= (state << 13) & mask
            state ^= state >> 7
            state ^= (state << 17) & mask
            j = state % i
            nxt[i], nxt[j] = nxt[j], nxt[i]
        self.next = nxt
        self.times_ms: List[float] = []

    def run(self) -> None:
        nxt = self.next
        for _ in range(self.REPEATS):
            start = time.perf_counter()
            at = 0
            for _ in range(self.STEPS):
                at = nxt[at]
            self.times_ms.append((time.perf_counter() - start) * 1e3)

    def median_ms(self) -> Optional[float]:
        return statistics.median(self.times_ms) if self.times_ms else None


def peak_rss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux), as the Rust worker reads it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_entry(entry: str) -> Any:
    """``module:Attr`` (importable) or ``path/to/file.py:Attr`` (loaded from that file; a
    relative path is taken from the manifest's folder, which the parent passes in
    ``CLAIMBENCH_MANIFEST_DIR``)."""
    target, sep, attr = entry.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"entry `{entry}`: expected `module:Class` or `file.py:Class`")
    if target.endswith(".py"):
        base = os.environ.get("CLAIMBENCH_MANIFEST_DIR") or os.getcwd()
        path = os.path.normpath(os.path.join(base, target))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"entry `{entry}`: no file {path}")
        name = "claimbench_user_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"entry `{entry}`: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, os.path.dirname(path))
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"entry `{entry}`: `{target}` has no attribute `{attr}`") from None


class AllocatorTrace:
    """Diagnostic: with CLAIMBENCH_CUDA_MEMORY_TRACE=DIR, the CUDA caching allocator's trace of
    one call (also when it fails) goes to DIR/<suite>.<variant>.p<process>.csv, as the Rust
    worker writes it, plus the innermost frame outside torch that made each allocation, then
    the segments held when the call ends (`segment_at_end`). The call is the first (from the
    weights alone) or, with CLAIMBENCH_CUDA_MEMORY_TRACE_CALL=N, call N counted from 0 with
    warm-ups. Its sample carries the `allocator_trace` flag: recording slows it. A trace that
    cannot be made is a warning, never the outcome."""

    ENTRIES = 4_000_000  # memory_trace.TRACE_ENTRIES

    def __init__(self, path: str, call: int, protocol: Protocol) -> None:
        self.path, self.call, self.protocol = path, call, protocol

    @classmethod
    def plan(cls, job: dict, device: Any, protocol: Protocol) -> Optional["AllocatorTrace"]:
        directory = os.environ.get("CLAIMBENCH_CUDA_MEMORY_TRACE")
        if not directory:
            return None
        text = os.environ.get("CLAIMBENCH_CUDA_MEMORY_TRACE_CALL")
        call = traced_call_index(text)
        if call is None:
            protocol.log("warn", f"CLAIMBENCH_CUDA_MEMORY_TRACE: CLAIMBENCH_CUDA_MEMORY_TRACE_CALL={text!r} "
                                 "is not a call index (0 is the first call, warm-ups counted); no trace written")
            return None
        if device.type != "cuda":
            protocol.log("warn", "CLAIMBENCH_CUDA_MEMORY_TRACE: no CUDA allocator on this device; no trace written")
            return None
        name = f"{job['suite']}.{job['variant']['name']}.p{job['process']}.csv"
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            protocol.log("warn", f"CLAIMBENCH_CUDA_MEMORY_TRACE: {e}")
            return None
        return cls(os.path.join(directory, name), call, protocol)

    def begin(self) -> bool:
        """Starts recording, just before the traced call; False (with a warning) if it cannot."""
        import torch

        try:
            # Stacks of allocations only: recording the frees' too would slow the call further.
            torch.cuda.memory._record_memory_history(max_entries=self.ENTRIES, context="alloc", stacks="python")
        except Exception as e:  # noqa: BLE001 - a diagnostic must not fail the variant
            self.protocol.log("warn", f"CLAIMBENCH_CUDA_MEMORY_TRACE: {e}")
            return False
        return True

    def write(self) -> None:
        import torch

        try:
            try:
                snapshot = torch.cuda.memory._snapshot()
            finally:
                torch.cuda.memory._record_memory_history(enabled=None)
            write_trace(self.path, snapshot)
        except Exception as e:  # noqa: BLE001 - the call may be failing already: keep its outcome
            self.protocol.log("warn", f"CLAIMBENCH_CUDA_MEMORY_TRACE: {self.path}: {e!r}")
            return
        self.protocol.log("info", f"allocator trace of call {self.call}: {self.path}")


def traced_call_index(text: Optional[str]) -> Optional[int]:
    """CLAIMBENCH_CUDA_MEMORY_TRACE_CALL: the index of the traced call (0 when unset), None if
    the text is not one."""
    if text is None:
        return 0
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def write_trace(path: str, snapshot: dict) -> None:
    """The snapshot's trace as CSV. An `oom` entry has no address: its `address` column holds
    the device's free bytes then, as the Rust worker writes it."""
    import csv

    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["action", "address", "bytes", "stream", "frame"])
        for trace in snapshot["device_traces"]:
            for e in trace:
                address = e.get("addr", e.get("device_free", 0))
                out.writerow([e["action"], address, e["size"], e.get("stream", 0), _caller(e.get("frames") or [])])
        # The segments held at the end: with the trace's segment events they give what was
        # reserved before it began (segments cached by earlier calls).
        segments = snapshot.get("segments", [])
        out.writerow(["trace_end", 0, len(segments), 0, ""])
        for segment in segments:
            out.writerow(["segment_at_end", segment["address"], segment["total_size"], segment.get("stream", 0), ""])


def _caller(frames: List[dict]) -> str:
    """The innermost frame outside torch's own modules: the library line that allocated."""
    for f in frames:
        name = f.get("filename", "")
        if "/torch/" not in name and not name.startswith("<"):
            return f"{name.rsplit('/site-packages/', 1)[-1]}:{f.get('line')}:{f.get('name')}"
    return ""


class Worker:
    def __init__(self, job: dict, protocol: Protocol) -> None:
        import torch

        self.torch = torch
        self.protocol = protocol
        self.job = job
        self.variant = job["variant"]
        self.knobs = self.variant["knobs"]
        self.device: Any = None
        self.telemetry: Optional[Telemetry] = None
        self.budget_bytes: Optional[int] = None
        self.completed_calls = 0

    # -- set-up ------------------------------------------------------------------------------

    def select_device(self) -> Any:
        torch = self.torch
        choice = self.knobs.get("device", "auto")
        has_cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
        if choice == "cpu" or (choice == "auto" and not has_cuda):
            return torch.device("cpu")
        if has_cuda:
            return torch.device("cuda", 0)
        raise RuntimeError('device = "cuda" was requested but torch sees no CUDA device')

    def apply_flags(self) -> List[str]:
        """Backend flags, applied before any tensor exists; returns the knobs that cannot act."""
        torch, k = self.torch, self.knobs
        torch.backends.cudnn.enabled = bool(k.get("cudnn_enabled", True))
        torch.backends.cudnn.benchmark = bool(k.get("cudnn_benchmark", False))
        torch.backends.cudnn.deterministic = bool(k.get("cudnn_deterministic", False))
        mode = k.get("deterministic_algorithms", "off")
        torch.use_deterministic_algorithms(mode != "off", warn_only=mode == "warn-only")
        torch.backends.cuda.matmul.allow_tf32 = bool(k.get("tf32_matmul", False))
        torch.backends.cudnn.allow_tf32 = bool(k.get("tf32_cudnn", True))
        not_applicable = []
        if self.device.type != "cuda":
            for name, key, default in CUDA_ONLY_KNOBS:
                if k.get(key, default) != default:
                    not_applicable.append(f"{name}: acts on CUDA only; this worker runs on CPU")
        return not_applicable

    def apply_budget(self, budget_gib: float) -> Optional[dict]:
        torch = self.torch
        _, total = torch.cuda.mem_get_info(self.device)
        budget = int(budget_gib * (1 << 30))
        if budget > total:
            return None
        reserved = torch.cuda.memory_reserved(self.device)
        overhead = None
        if self.telemetry is not None:
            try:
                overhead = self.telemetry.process_overhead_bytes(reserved)
            except Exception as e:  # noqa: BLE001 - any NVML failure means "unknown"
                self.protocol.log("warn", f"CUDA context size unknown ({e}); the whole budget goes to the allocator")
        else:
            self.protocol.log("warn", "CUDA context size unknown (no NVML); the whole budget goes to the allocator")
        share = budget - (overhead or 0)
        if share <= 0:
            raise RuntimeError(f"vram_budget_gib = {budget_gib} is smaller than this process's CUDA context")
        torch.cuda.set_per_process_memory_fraction(share / total, self.device)
        return {"budget_bytes": budget, "overhead_bytes": overhead, "fraction": share / total}

    def versions(self) -> dict:
        torch = self.torch
        cuda = torch.version.cuda
        cudart = None
        if cuda and self.device.type == "cuda":
            major, minor = (int(x) for x in cuda.split(".")[:2])
            cudart = major * 1000 + minor * 10
        cudnn = torch.backends.cudnn.version() if self.device.type == "cuda" else None
        return {
            "torch": torch.__version__,
            "cudnn": cudnn,
            "cuda_runtime": cudart,
            "python": sys.version.split()[0],
        }

    def backend_flags(self, autocast: Optional[str]) -> dict:
        torch = self.torch
        flags = {
            "cudnn_enabled": torch.backends.cudnn.enabled,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        }
        if autocast:
            flags["autocast_cuda" if self.device.type == "cuda" else "autocast_cpu"] = autocast
        return flags

    # -- measuring ---------------------------------------------------------------------------

    def measure(self, pipeline: Any, ctx: Any, autocast_dtype: Any) -> dict:
        """One call, measured as the module docstring says."""
        torch = self.torch
        cuda = self.device.type == "cuda"
        events = None
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            torch.cuda.synchronize(self.device)
        allocated_at_start = torch.cuda.memory_allocated(self.device) if cuda else None
        start = time.perf_counter()
        ctx.begin_call(start)
        if events:
            events[0].record()
        with torch.no_grad(), torch.autocast(
            self.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            pipeline.call(ctx)
        if events:
            events[1].record()
        if cuda:
            torch.cuda.synchronize(self.device)
        end = time.perf_counter()
        gpu_ms = None
        if events:
            events[1].synchronize()
            gpu_ms = events[0].elapsed_time(events[1])
        return {
            "wall_ms": (end - start) * 1e3,
            "gpu_ms": gpu_ms,
            "stages": list(ctx.stage_times),
            "counters": dict(ctx.counters),
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(self.device) if cuda else None,
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device) if cuda else None,
            "allocated_at_start_bytes": allocated_at_start,
            "telemetry": self.telemetry.window(start, end) if self.telemetry else None,
            "host_peak_rss_bytes": peak_rss_bytes(),
        }

    def quality_flags(self, m: dict) -> List[str]:
        t = m.get("telemetry")
        flags: List[str] = []
        if not t:
            return flags
        if t["throttle_reasons"] is not None and t["throttle_reasons"] & SLOWDOWN_REASONS:
            flags.append("throttled")
        clock_max = self.telemetry.info["sm_clock_max_mhz"] if self.telemetry else None
        fraction = (self.variant.get("settle") or {}).get("min_clock_fraction", 0.75)
        if t["sm_clock_min_mhz"] is not None and clock_max and t["sm_clock_min_mhz"] < fraction * clock_max:
            flags.append("low_clock")
        if (t["compute_processes_max"] or 0) > 1:
            flags.append("shared_gpu")
        return flags

    def settled(self, warm: List[dict]) -> bool:
        rule = self.variant.get("settle")
        if rule is None:
            return False
        window = rule["window"]
        if len(warm) < window:
            return False
        last = warm[-window:]
        lo, hi = min(m["wall_ms"] for m in last), max(m["wall_ms"] for m in last)
        agree = lo > 0 and hi / lo - 1.0 <= rule["tolerance"]
        clock_max = self.telemetry.info["sm_clock_max_mhz"] if self.telemetry else None
        if clock_max:
            for m in last:
                c = (m.get("telemetry") or {}).get("sm_clock_min_mhz")
                if c is not None and c < rule["min_clock_fraction"] * clock_max:
                    return False
        return agree

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        from claimbench.context import DTYPES, Context

        torch, p = self.torch, self.protocol
        self.device = self.select_device()
        not_applicable = self.apply_flags()
        compile_mode = self.knobs.get("torch_compile")
        if compile_mode:
            not_applicable.append(
                f'compile: torch.compile(mode="{compile_mode}") is the pipeline\'s to apply '
                "(ctx.knobs); recorded, not applied by the worker"
            )
        memory_fraction = overhead = None
        if self.device.type == "cuda":
            # Creates the CUDA context and the allocator's state before limits are set.
            torch.zeros(1, device=self.device)
            torch.cuda.empty_cache()
            try:
                self.telemetry = Telemetry()
            except Exception as e:  # noqa: BLE001 - no pynvml or no driver: no telemetry
                p.log("warn", f"no device telemetry: {e}")
        budget_gib = self.knobs.get("vram_budget_gib")
        if budget_gib is not None and self.device.type == "cuda":
            applied = self.apply_budget(float(budget_gib))
            if applied is None:
                not_applicable.append(
                    f"vram_budget_gib: {budget_gib} GiB exceeds this device's memory, so a larger "
                    "card cannot be emulated; ran without a limit"
                )
            else:
                self.budget_bytes = applied["budget_bytes"]
                memory_fraction, overhead = applied["fraction"], applied["overhead_bytes"]
        autocast_name = self.knobs.get("autocast", "off")
        autocast_name = None if autocast_name in (None, "off") else autocast_name
        env_keys = self.knobs.get("env", {}).keys()
        p.emit(
            {
                "kind": "hello",
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "device": "cpu" if self.device.type == "cpu" else f"cuda:{self.device.index or 0}",
                "versions": self.versions(),
                "gpu": self.telemetry.info if self.telemetry else None,
                "backend_flags": self.backend_flags(autocast_name),
                "memory_fraction": memory_fraction,
                "budget_bytes": self.budget_bytes,
                "cuda_overhead_bytes": overhead,
                "not_applicable": not_applicable,
                "environment": {k: os.environ[k] for k in env_keys if k in os.environ},
            }
        )

        params = dict(self.variant["params"])
        entry = params.pop("entry", None)
        if not entry:
            return p.finish("error", "the python workload needs `params.entry` (module:Class or file.py:Class)")
        ctx = Context(
            device=self.device,
            dtype=DTYPES[self.knobs.get("dtype", "fp32")],
            autocast=DTYPES[autocast_name] if autocast_name else None,
            params=params,
            knobs=self.knobs,
            empty_cache_between_stages=bool(self.knobs.get("empty_cache_between_stages", False)),
            log=p.log,
        )
        torch.manual_seed(0)
        factory = load_entry(entry)
        pipeline = factory() if callable(factory) else factory
        for method in ("setup", "call"):
            if not callable(getattr(pipeline, method, None)):
                return p.finish("error", f"entry `{entry}` has no `{method}` method")
        with torch.no_grad():
            pipeline.setup(params, ctx)
        self.sync()
        if self.device.type == "cuda":
            # What building left in the allocator's cache (casts, initialisation temporaries) is
            # not the pipeline's: calls start from the weights alone, as the Rust worker's do.
            torch.cuda.empty_cache()
        trace = AllocatorTrace.plan(self.job, self.device, p)
        return self.loop(pipeline, ctx, trace)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def loop(self, pipeline: Any, ctx: Any, trace: Optional["AllocatorTrace"] = None) -> int:
        p, v = self.protocol, self.variant
        autocast = ctx.autocast
        call = 0

        def one(warmup: bool) -> dict:
            nonlocal call, trace
            if trace is not None and trace.call == call and not trace.begin():
                trace = None
            # Recording began if this is the traced call (else the plan is gone).
            traced = trace is not None and trace.call == call
            try:
                m = self.measure(pipeline, ctx, autocast)
            finally:
                # Also when the call fails: an out-of-memory trace shows what was alive.
                if traced:
                    trace.write()
                    trace = None
            flags = self.quality_flags(m) + (["allocator_trace"] if traced else [])
            p.emit({"kind": "sample", "call": call, "warmup": warmup, "flags": flags, **m})
            call += 1
            return m

        warm: List[dict] = []
        while True:
            n = len(warm)
            settled = self.settled(warm) if v.get("settle") else n >= v["warmup"]
            if n >= v["warmup_max"] or (n >= v["warmup"] and settled):
                break
            warm.append(one(True))
        p.emit({"kind": "warmed_up", "calls": len(warm), "settled": settled})

        target = v.get("target_rel_ci")
        times: List[float] = []
        probe = CpuProbe()
        probe.run()
        host_before = resource.getrusage(resource.RUSAGE_SELF)
        while True:
            n = len(times)
            if n >= v["repetitions"] and target is None:
                stop = {"reason": "fixed", "relative_ci": None}
                break
            if n >= v["repetitions_max"]:
                stop = {"reason": "max", "relative_ci": None}
                break
            if target is not None and n >= v["repetitions"]:
                width = median_interval_relative_width(times)
                if width is not None and width <= target:
                    stop = {"reason": "precise", "relative_ci": width}
                    break
            self.completed_calls = n
            times.append(one(False)["wall_ms"])
        self.completed_calls = len(times)
        if trace is not None:
            p.log("warn", f"CLAIMBENCH_CUDA_MEMORY_TRACE_CALL={trace.call}: the process made only {call} calls; "
                          "no trace written")
        stop["host"] = host_usage_since(host_before)
        probe.run()
        stop["host"]["cpu_probe_ms"] = probe.median_ms()
        p.emit({"kind": "measured", **stop})
        return p.finish("ok")

    def failure(self, message: str) -> int:
        """An ``oom`` outcome with allocator state, or an ``error``."""
        if is_oom_message(message):
            torch = self.torch
            cuda = self.device is not None and self.device.type == "cuda"
            oom = {
                "requested_bytes": requested_bytes(message),
                "allocated_bytes": torch.cuda.memory_allocated(self.device) if cuda else None,
                "reserved_bytes": torch.cuda.memory_reserved(self.device) if cuda else None,
                "budget_bytes": self.budget_bytes,
                "completed_calls": self.completed_calls,
            }
            return self.protocol.finish("oom", message, oom)
        return self.protocol.finish("error", message)


def main() -> int:
    protocol = Protocol()
    line = sys.stdin.readline()
    try:
        job = json.loads(line)
    except json.JSONDecodeError as e:
        return protocol.finish("error", f"malformed job on stdin: {e}")
    if job.get("protocol") != PROTOCOL_VERSION:
        return protocol.finish(
            "error", f"protocol {job.get('protocol')} requested, this worker speaks {PROTOCOL_VERSION}"
        )
    try:
        worker = Worker(job, protocol)
    except ImportError as e:
        return protocol.finish(
            "error",
            f"cannot import torch in {sys.executable}: {e}; set CLAIMBENCH_PYTHON to a Python "
            "that has torch (and, for the adapters, python/requirements.txt)",
        )
    try:
        return worker.run()
    except BaseException as e:  # noqa: BLE001 - every failure becomes an outcome
        if isinstance(e, KeyboardInterrupt):
            raise
        # The traceback goes to the log (stderr); the outcome carries the message.
        traceback.print_exc(file=sys.stderr)
        message = f"{type(e).__name__}: {e}"
        return worker.failure(message)


if __name__ == "__main__":
    sys.exit(main())
