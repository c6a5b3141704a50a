"""The SD 2.1 UNet and VAE-decode adapters on the CPU: tiny models through a call (inputs the UNet
sees, stages, counters), the attention processor on every attention module for each setting,
``upcast_attention`` as the config has it, VAE slicing and tiling as asked (decoder calls = tiles
x slices, as the replica counts them), full-size parameter counts on the meta device, parameter
validation, and the UNet fidelity manifests (same variants on both sides, accepted parameters).

Run from ``python/``: ``OMP_NUM_THREADS=1 python -m unittest tests.test_sd21 -v``.
"""

from __future__ import annotations

import tomllib
import unittest
from pathlib import Path
from typing import Any, Dict, List

import torch

from claimbench.adapters import sd21
from claimbench.adapters.sd21 import Sd21Unet, Sd21VaeDecode, attention_modules
from claimbench.context import Context

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "tests" / "manifests"


def make_ctx(params: Dict[str, Any], logs: List[str]) -> Context:
    return Context(torch.device("cpu"), torch.float32, None, params, {}, False,
                   lambda level, msg: logs.append(f"{level}: {msg}"))


def run(adapter, params: Dict[str, Any], calls: int = 1):
    """Sets ``adapter`` up with ``params`` and makes ``calls`` calls; returns the context (of the
    last call) and the log lines."""
    logs: List[str] = []
    ctx = make_ctx(params, logs)
    adapter.setup(dict(params), ctx)
    for _ in range(calls):
        ctx.begin_call(0.0)
        with torch.no_grad():
            adapter.call(ctx)
    return ctx, logs


def processor_names(model) -> set:
    return {type(m.processor).__name__ for m in attention_modules(model).values()}


class UnetTest(unittest.TestCase):
    def test_math_runs_every_attention_module_on_attn_processor(self) -> None:
        a = Sd21Unet()
        ctx, logs = run(a, {"preset": "tiny", "resolution": 64, "attention": "math"})
        modules = attention_modules(a.unet)
        # tiny: 1 cross-attention level (2 layers down, 3 up) + the mid block, attn1 and attn2 each.
        self.assertEqual(len(modules), 2 * (2 + 3 + 1))
        self.assertEqual(processor_names(a.unet), {"AttnProcessor"})
        self.assertEqual([s["name"] for s in ctx.stage_times], ["unet"])
        self.assertEqual(ctx.counters, {"unet_evals": 1})
        self.assertEqual(tuple(a.latents.shape), (2, 4, 8, 8))
        self.assertTrue(torch.isfinite(a.latents).all())
        self.assertTrue(any("AttnProcessor" in line for line in logs), logs)

    def test_sdpa_runs_every_attention_module_on_attn_processor2_0(self) -> None:
        a = Sd21Unet()
        run(a, {"preset": "tiny", "resolution": 64, "attention": "sdpa"})
        self.assertEqual(processor_names(a.unet), {"AttnProcessor2_0"})

    def test_sliced_attention_uses_diffusers_attention_slicing(self) -> None:
        a = Sd21Unet()
        run(a, {"preset": "tiny", "resolution": 64, "attention": "sliced:max"})
        self.assertEqual(processor_names(a.unet), {"SlicedAttnProcessor"})
        self.assertEqual({m.processor.slice_size for m in attention_modules(a.unet).values()}, {1})

    def test_upcast_attention_follows_the_sd21_config(self) -> None:
        self.assertTrue(sd21.SD21_UNET_CONFIG["upcast_attention"])
        for preset in ("tiny", "sd21"):
            unet = sd21.meta_unet(preset)
            self.assertTrue(unet.config.upcast_attention)
            flags = {m.upcast_attention for m in attention_modules(unet).values()}
            self.assertEqual(flags, {unet.config.upcast_attention}, preset)

    def test_inputs_steps_and_conditioning_as_the_replica(self) -> None:
        a = Sd21Unet()
        seen: List[Dict[str, Any]] = []

        def record(_module, args, kwargs) -> None:
            seen.append({"sample": tuple(args[0].shape), "t": args[1].tolist(),
                         "context": tuple(kwargs["encoder_hidden_states"].shape)})

        logs: List[str] = []
        params = {"preset": "tiny", "resolution": 48, "steps": 3, "in_channels": 8, "batch": 4}
        ctx = make_ctx(params, logs)
        a.setup(dict(params), ctx)
        a.unet.register_forward_pre_hook(record, with_kwargs=True)
        ctx.begin_call(0.0)
        with torch.no_grad():
            a.call(ctx)
        # 999 - s * 1000 / steps, one int64 timestep per forward; context [batch, 77, cross dim].
        self.assertEqual([s["t"] for s in seen], [[999], [666], [333]])
        self.assertEqual({s["sample"] for s in seen}, {(4, 8, 6, 6)})
        self.assertEqual({s["context"] for s in seen}, {(4, 77, 32)})
        self.assertEqual(ctx.counters, {"unet_evals": 3})
        self.assertEqual([s["name"] for s in ctx.stage_times], ["unet"])
        self.assertEqual(tuple(a.latents.shape), (4, 4, 6, 6))

    def test_full_size_parameter_count_and_heads(self) -> None:
        unet = sd21.meta_unet("sd21")
        self.assertEqual(sd21.parameter_count(unet), sd21.SD21_UNET_PARAMETERS)
        modules = attention_modules(unet)
        self.assertEqual(len(modules), 32)  # 16 transformer blocks, self + cross each
        self.assertEqual({m.inner_dim // m.heads for m in modules.values()}, {64})
        self.assertEqual(sd21.meta_unet("sd21", in_channels=8).conv_in.in_channels, 8)

    def test_rejects_bad_parameters(self) -> None:
        bad = [
            ({"attention": "flash"}, "attention"),
            ({"attention": "sliced:0"}, "attention"),
            ({"resolution": 100}, "resolution"),
            ({"preset": "sd15"}, "preset"),
            ({"multiview": "row"}, "unknown parameter `multiview`"),
            ({"batch": True}, "batch"),
        ]
        for params, needle in bad:
            with self.assertRaises(ValueError, msg=str(params)) as caught:
                sd21.parse_unet_params(params)
            self.assertIn(needle, str(caught.exception))
        self.assertEqual(sd21.parse_unet_params({"attention": "sliced"})["attention"], "auto")
        self.assertEqual(sd21.parse_unet_params({"attention": "sliced:3"})["attention"], 3)
        self.assertEqual(sd21.parse_unet_params({"entry": "x:Y"}), sd21.parse_unet_params({}))


class VaeDecodeTest(unittest.TestCase):
    def decode(self, **params: Any):
        a = Sd21VaeDecode()
        ctx, logs = run(a, dict({"preset": "tiny", "resolution": 96, "batch": 2}, **params))
        return a, ctx, logs

    def test_plain_decode(self) -> None:
        a, ctx, logs = self.decode()
        self.assertFalse(a.vae.use_slicing)
        self.assertFalse(a.vae.use_tiling)
        self.assertEqual(a.shape, (2, 3, 96, 96))
        self.assertEqual([s["name"] for s in ctx.stage_times], ["vae_decode"])
        self.assertEqual(ctx.counters, {"vae_decoder_calls": 1})
        self.assertEqual(processor_names(a.vae), {"AttnProcessor2_0"})
        self.assertEqual(ctx.not_applicable_knobs, [])

    def test_slicing_and_tiling_as_asked(self) -> None:
        # Tiny tiles are 8 latents with stride 6: 12 x 12 latents (96 px) are 2 x 2 tiles.
        for slicing, tiling, calls in [(False, False, 1), (True, False, 2), (False, True, 4), (True, True, 8)]:
            a, ctx, _ = self.decode(slicing=slicing, tiling=tiling)
            self.assertEqual((a.vae.use_slicing, a.vae.use_tiling), (slicing, tiling))
            self.assertEqual(ctx.counters, {"vae_decoder_calls": calls}, (slicing, tiling))
            self.assertEqual(a.shape, (2, 3, 96, 96))

    def test_counters_reset_per_call(self) -> None:
        a = Sd21VaeDecode()
        ctx, _ = run(a, {"preset": "tiny", "resolution": 96, "batch": 2, "slicing": True}, calls=2)
        self.assertEqual(ctx.counters, {"vae_decoder_calls": 2})

    def test_tile_size_and_no_op_knobs(self) -> None:
        # The image fits in one tile: tiling decodes whole and says so, as at 768 px full size.
        a, ctx, _ = self.decode(resolution=64, tiling=True)
        self.assertEqual(ctx.counters, {"vae_decoder_calls": 1})
        self.assertTrue(any(k.startswith("tiling:") for k in ctx.not_applicable_knobs))
        # 32-px tiles: 4 latents, stride 3, over 8 latents -> 3 x 3 tiles.
        a, ctx, _ = self.decode(resolution=64, tiling=True, tile_size=32)
        self.assertEqual((a.vae.tile_sample_min_size, a.vae.tile_latent_min_size), (32, 4))
        self.assertEqual(ctx.counters, {"vae_decoder_calls": 9})
        self.assertEqual(a.shape, (2, 3, 64, 64))
        a, ctx, _ = self.decode(batch=1, slicing=True)
        self.assertTrue(any(k.startswith("slicing:") for k in ctx.not_applicable_knobs))
        with self.assertRaises(ValueError):
            self.decode(tiling=True, tile_size=8)

    def test_full_size_parameter_counts_and_tile(self) -> None:
        vae = sd21.meta_vae("sd")
        decoder = sd21.parameter_count(vae.decoder) + sd21.parameter_count(vae.post_quant_conv)
        encoder = sd21.parameter_count(vae.encoder) + sd21.parameter_count(vae.quant_conv)
        self.assertEqual((decoder, encoder), (sd21.SD_VAE_DECODER_PARAMETERS, sd21.SD_VAE_ENCODER_PARAMETERS))
        # The 768-px tile is 96 latents: a 768-px image is one tile.
        self.assertEqual((vae.tile_sample_min_size, vae.tile_latent_min_size), (768, 96))
        self.assertEqual(vae.config.scaling_factor, 0.18215)

    def test_rejects_bad_parameters(self) -> None:
        for params, needle in [({"resolution": 100}, "resolution"), ({"slicing": 1}, "slicing"),
                               ({"attention": "math"}, "unknown parameter `attention`")]:
            with self.assertRaises(ValueError, msg=str(params)) as caught:
                sd21.parse_vae_params(params)
            self.assertIn(needle, str(caught.exception))


class ManifestTest(unittest.TestCase):
    """The UNet fidelity pair: the real suite names the replica suite, defines the same variants
    with the same parameters, and the adapter accepts what it passes under every profile."""

    def load(self, name: str) -> Dict[str, Any]:
        with open(MANIFESTS / name, "rb") as f:
            return tomllib.load(f)

    def test_pair_matches_and_adapter_accepts_every_profile(self) -> None:
        replica = self.load("gpu-sd21-fidelity.toml")
        real = self.load("gpu-sd21-fidelity-real.toml")
        self.assertEqual(real["suite"]["replica"], replica["suite"]["name"])
        self.assertEqual(replica["suite"]["workload"], "unet")
        self.assertEqual(real["params"]["entry"], "claimbench.adapters.sd21:Sd21Unet")
        variants = lambda m: [(v["name"], v.get("params", {})) for v in m["variant"]]  # noqa: E731
        self.assertEqual(variants(real), variants(replica))
        self.assertEqual({k: v for k, v in real["params"].items() if k != "entry"}, replica["params"])
        for key in ("knobs", "run", "profiles"):
            self.assertEqual(real[key], replica[key], key)
        for profile in [{}] + list(real["profiles"].values()):
            for variant in real["variant"]:
                params = dict(real["params"], **profile.get("params", {}), **variant.get("params", {}),
                              **profile.get("override_params", {}))
                sd21.parse_unet_params(params)  # raises on anything the adapter does not take


if __name__ == "__main__":
    unittest.main()
