#!/usr/bin/env python3
"""Reference for claimbench's `unet` workload: times diffusers' UNet2DConditionModel built from
the Stable Diffusion 2.1 config with random weights, the way tests/manifests/gpu-unet.toml runs
claimbench's replica (fp16, SDPA attention, batch 2, one forward per call, 512 and 768 px).

Written for diffusers >= 0.30 (targeted: the 0.3x API — `UNet2DConditionModel(**config)`,
`set_attn_processor(AttnProcessor2_0())`); needs only torch with CUDA and the pure-Python
diffusers wheel. Runs offline: the model is built from the config below, nothing is downloaded.

Method, per resolution: build inputs (latents [B, 4, H/8, W/8], one timestep, text context
[B, 77, 1024], all fp16 on the GPU), make `--warmup` unmeasured calls, then for each of
`--repetitions` calls: synchronise, reset the allocator's peak statistics, read the host clock
and record a CUDA event, run one forward under torch.no_grad(), record an event, synchronise,
read the clock. Reported: median (and all) wall and GPU milliseconds, median peak allocated
bytes (torch.cuda.max_memory_allocated() after the call; it includes the resident weights, as
claimbench's peak_allocated_bytes does).

Usage: unet_diffusers.py [--resolutions 512 768] [--batch 2] [--warmup 5] [--repetitions 30]
                         [--seed 0]
Prints one JSON object per line: first the environment, then one per resolution.
"""
import argparse
import json
import statistics
import time

import torch

SD21_PARAMETERS = 865_910_724

# stabilityai/stable-diffusion-2-1 unet/config.json (the keys that shape the network).
SD21_CONFIG = dict(
    sample_size=96,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=(
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=(
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
    upcast_attention=True,
    dual_cross_attention=False,
    class_embed_type=None,
    num_class_embeds=None,
)

TEXT_TOKENS = 77


def build_unet(seed):
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SD21_CONFIG)
    params = sum(p.numel() for p in unet.parameters())
    unet = unet.to(device="cuda", dtype=torch.float16).eval()
    unet.set_attn_processor(AttnProcessor2_0())
    return unet, params


def measure(unet, resolution, batch, warmup, repetitions, seed):
    torch.manual_seed(seed)
    latent = resolution // 8
    opts = dict(device="cuda", dtype=torch.float16)
    sample = torch.randn(batch, 4, latent, latent, **opts)
    context = torch.randn(batch, TEXT_TOKENS, SD21_CONFIG["cross_attention_dim"], **opts)
    timestep = torch.tensor([999], device="cuda")
    walls, gpus, peaks = [], [], []
    with torch.no_grad():
        for _ in range(warmup):
            unet(sample, timestep, encoder_hidden_states=context)
        for _ in range(repetitions):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            start.record()
            out = unet(sample, timestep, encoder_hidden_states=context).sample
            end.record()
            torch.cuda.synchronize()
            walls.append((time.perf_counter() - t0) * 1e3)
            gpus.append(start.elapsed_time(end))
            peaks.append(torch.cuda.max_memory_allocated())
            assert out.shape == sample.shape
            del out
    return {
        "kind": "result",
        "resolution": resolution,
        "batch": batch,
        "dtype": "fp16",
        "attention": "sdpa",
        "warmup": warmup,
        "repetitions": repetitions,
        "wall_ms_median": statistics.median(walls),
        "gpu_ms_median": statistics.median(gpus),
        "peak_allocated_bytes_median": int(statistics.median(peaks)),
        "wall_ms": walls,
        "gpu_ms": gpus,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[512, 768])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repetitions", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: this reference needs a CUDA device")

    import diffusers

    unet, params = build_unet(args.seed)
    print(
        json.dumps(
            {
                "kind": "environment",
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "cuda": torch.version.cuda,
                "device": torch.cuda.get_device_name(0),
                "parameters": params,
                "parameters_match_sd21": params == SD21_PARAMETERS,
            }
        ),
        flush=True,
    )
    for resolution in args.resolutions:
        result = measure(unet, resolution, args.batch, args.warmup, args.repetitions, args.seed)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
