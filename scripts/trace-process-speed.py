#!/usr/bin/env python3
"""Why is one process of a launch-bound GPU workload slower than another of the same configuration?

One process (run it many times: plain, under `taskset -c N`, with CLAIMBENCH_TRACE_SAMPLER=1):
build diffusers' SD 2.1 UNet with random weights (fp16, batch 2, 512 px) on CUDA, then for each
of three blocks (cuDNN off, on, off) warm up 10 calls and time CALLS calls, each with the device
synchronised inside the timed region, recording the calling thread's CPU time per call and the
CPU it ran on; then profile 3 calls with the PyTorch profiler (CUPTI) for the summed kernel time
per call, the kernel count and a hash of the kernel names (an algorithm-selection difference
changes it). With CLAIMBENCH_TRACE_SAMPLER=1 a thread polls NVML at 100 Hz, as the worker's
telemetry sampler does. Prints one JSON line.

    python3 scripts/trace-process-speed.py LABEL [CALLS]     # needs torch, diffusers, pynvml
"""
import hashlib
import json
import os
import resource
import statistics
import sys
import threading
import time

label = sys.argv[1]
calls = int(sys.argv[2]) if len(sys.argv) > 2 else 30
sampler = os.environ.get("CLAIMBENCH_TRACE_SAMPLER", "0") == "1"

t_start = time.time()
import torch
from diffusers import UNet2DConditionModel

def last_cpu():
    # Field 39 of /proc/self/stat (processor), counted after the command name.
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])

def cpu_mhz():
    out = {}
    cpu = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("processor"):
                cpu = int(line.split(":")[1])
            elif line.startswith("cpu MHz"):
                out[cpu] = float(line.split(":")[1])
    return out

cfg = dict(sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
           block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
           cross_attention_dim=1024, use_linear_projection=True,
           down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
           up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
dev = torch.device("cuda")
with torch.device("meta"):
    unet = UNet2DConditionModel(**cfg)
unet = unet.to_empty(device=dev).to(torch.float16).eval()
with torch.no_grad():
    for p in unet.parameters():
        if p.ndim > 1:
            p.normal_(0, 1.0 / max(1, p[0].numel()) ** 0.5)
        else:
            p.fill_(0.0)
x = torch.randn(2, 4, 64, 64, device=dev, dtype=torch.float16)
ehs = torch.randn(2, 77, 1024, device=dev, dtype=torch.float16)
t = torch.tensor([500.0, 500.0], device=dev)

stop = threading.Event()
if sampler:
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    def loop():
        while not stop.is_set():
            pynvml.nvmlDeviceGetMemoryInfo(h)
            pynvml.nvmlDeviceGetClockInfo(h, 1)
            pynvml.nvmlDeviceGetPowerUsage(h)
            pynvml.nvmlDeviceGetComputeRunningProcesses(h)
            time.sleep(0.01)
    threading.Thread(target=loop, daemon=True).start()

def call():
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=ehs)
    torch.cuda.synchronize()

blocks = []
for cud in (False, True, False):
    torch.backends.cudnn.enabled = cud
    for _ in range(10):
        call()
    walls, thr, cpus = [], [], []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(calls):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        call()
        walls.append((time.perf_counter() - t0) * 1e3)
        thr.append((time.thread_time() - c0) * 1e3)
        cpus.append(last_cpu())
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            call()
    ks = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kern_us = sum(e.device_time for e in ks) / 3
    names = sorted(set(e.name for e in ks))
    sig = hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
    by = {}
    for e in ks:
        by[e.name] = by.get(e.name, 0) + e.device_time / 3
    top = sorted(by.items(), key=lambda kv: -kv[1])[:6]
    blocks.append(dict(cudnn=cud, median=statistics.median(walls), p10=sorted(walls)[len(walls)//10],
                       p90=sorted(walls)[9*len(walls)//10], thread_ms=statistics.median(thr),
                       cpus=sorted(set(cpus)), kernel_ms=kern_us / 1e3, kernels=len(ks) // 3,
                       sig=sig, top=[(n[:60], round(v / 1e3, 3)) for n, v in top],
                       nvcsw=ru1.ru_nvcsw - ru0.ru_nvcsw, nivcsw=ru1.ru_nivcsw - ru0.ru_nivcsw))
stop.set()
mhz = cpu_mhz()
print(json.dumps(dict(label=label, pid=os.getpid(), affinity=sorted(os.sched_getaffinity(0)),
                      sampler=sampler, startup_s=round(time.time() - t_start, 1),
                      mhz_used={c: mhz.get(c) for c in blocks[-1]["cpus"]},
                      loadavg=open("/proc/loadavg").read().split()[:3], blocks=blocks)), flush=True)
