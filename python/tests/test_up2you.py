"""The UP2You reconstruction on the CPU: tiny models end to end (guidance interval, reference pass
through the same UNet, batches), the row-wise multiview attention's locality, full-size parameter
counts and shapes on the meta device, the shifted schedule, parameter validation.

Run from ``python/``: ``OMP_NUM_THREADS=1 python -m unittest tests.test_up2you -v``.
"""

from __future__ import annotations

import contextlib
import io
import unittest
import weakref
from typing import Any, Dict, List

import torch
from torch import nn

from claimbench.adapters.up2you import (MAX_SELECT_RATIO, SHIFT_SCALE, RowMultiviewReferenceProcessor,
                                        Up2You, guided_steps, make_scheduler, parameter_counts,
                                        parse_params, row_multiview_attention, t2i_adapter,
                                        up2you_unet)
from claimbench.context import Context

RESOLUTION = 64
LATENT = RESOLUTION // 8


def make_ctx(params: Dict, logs: List[str] = None) -> Context:
    sink = (lambda level, msg: logs.append(f"{level}: {msg}")) if logs is not None else None
    return Context(torch.device("cpu"), torch.float32, None, params, {}, False, sink)


class Run:
    """One tiny adapter: setup, ``calls`` measured calls, what the UNet saw on each forward."""

    def __init__(self, params: Dict[str, Any], calls: int = 1) -> None:
        self.params = dict(params, preset="tiny", resolution=RESOLUTION)
        self.logs: List[str] = []
        self.ctx = make_ctx(self.params, self.logs)
        self.adapter = Up2You()
        self.stdout = io.StringIO()
        self.unet_inputs: List[Dict[str, Any]] = []
        self.counters: List[Dict[str, int]] = []
        self.stages: List[List[str]] = []
        # Per call: the reference tokens the first UNet call of the loop gets, summarised
        # (shape, unconditional half all zero, conditional half's absolute sum), and weak
        # references to them, which must be dead once the call has returned.
        self.reference_tokens: List[Dict[str, Any]] = []
        self.reference_refs: List[List[weakref.ref]] = []
        with contextlib.redirect_stdout(self.stdout):
            self.adapter.setup(self.params, self.ctx)
            self.adapter.unet.register_forward_pre_hook(self._record, with_kwargs=True)
            for _ in range(calls):
                self.ctx.begin_call(0.0)
                self.adapter.call(self.ctx)
                # No collection first: the worker does none between calls either.
                self.reference_refs_alive_after_call = [r for refs in self.reference_refs
                                                        for r in refs if r() is not None]
                self.counters.append(dict(self.ctx.counters))
                self.stages.append([s["name"] for s in self.ctx.stage_times])

    def _record(self, _module, args, kwargs) -> None:
        ca = kwargs.get("cross_attention_kwargs") or {}
        refs = ca.get("ref_hidden_states")
        first_ref = next(iter(refs.values())) if refs else None
        if refs and len(self.reference_tokens) == len(self.counters):  # the loop's first call
            views = self.params["views"]
            self.reference_tokens.append({
                key: (tuple(t.shape), bool((t[:views] == 0).all()), float(t[views:].abs().sum()))
                for key, t in refs.items()})
            self.reference_refs.append([weakref.ref(t) for t in refs.values()])
        residuals = kwargs.get("down_intrablock_additional_residuals")
        self.unet_inputs.append({
            "batch": args[0].shape[0],
            "timestep": torch.as_tensor(args[1]).flatten()[0].item(),
            "context_batch": kwargs["encoder_hidden_states"].shape[0],
            "recording": "cache_hidden_states" in ca,
            "ref_batch": None if first_ref is None else first_ref.shape[0],
            "ref_uncond_zero": None if first_ref is None or first_ref.shape[0] == 0
            else bool((first_ref[0] == 0).all()),
            "residual_batches": None if residuals is None else [r.shape[0] for r in residuals],
        })

    def batches(self) -> List[int]:
        return [x["batch"] for x in self.unet_inputs]


_RUNS: Dict[str, Run] = {}

RUN_PARAMS = {
    "thg3": ({"views": 3, "steps": 6, "guidance_interval": 3, "reference_images": 2}, 2),
    "cfg_every_step": ({"views": 3, "steps": 6, "guidance_interval": 1, "reference_images": 2}, 1),
    "no_cfg": ({"views": 2, "steps": 3, "guidance": 1.0, "reference_images": 2}, 1),
    "views5_one_ref": ({"views": 5, "steps": 2, "guidance_interval": 2, "reference_images": 1,
                        "vae_slicing": False, "row_attention": "grouped"}, 1),
}


def run(name: str) -> Run:
    if name not in _RUNS:
        params, calls = RUN_PARAMS[name]
        _RUNS[name] = Run(params, calls)
    return _RUNS[name]


class GuidanceInterval(unittest.TestCase):
    def test_rule(self) -> None:
        self.assertEqual(guided_steps(6, 3, 3.0), [True, False, False, True, False, False])
        self.assertEqual(guided_steps(4, 1, 3.0), [True] * 4)
        self.assertEqual(guided_steps(4, 1, 1.0), [False] * 4)  # CFG off at guidance <= 1
        # The note: 50 steps at interval 3 -> 17 guided steps, 67 evaluations instead of 100.
        g = guided_steps(50, 3, 3.0)
        self.assertEqual(sum(g), 17)
        self.assertEqual(50 + sum(g), 67)
        self.assertEqual(sum(guided_steps(30, 4, 3.0)), 8)  # the note's low preset

    def test_interval_3_end_to_end(self) -> None:
        r = run("thg3")
        expected = {"text_encoder_evals": 2, "ref_unet_evals": 1, "unet_calls": 6,
                    "unet_evals": 6 + 2, "cfg_steps": 2}
        self.assertEqual(r.counters, [expected, expected])  # reset between calls
        self.assertEqual(r.stages, [["reference_unet", "rgb_multiview", "decode_rgb"]] * 2)
        # Per call: the reference pass (2 photos), then CFG (2 x 3 views) on steps 0 and 3 only.
        per_call = [2, 6, 3, 3, 6, 3, 3]
        self.assertEqual(r.batches(), per_call * 2)
        steps = r.unet_inputs[1:7]
        for i, x in enumerate(steps):
            guided = i in (0, 3)
            with self.subTest(step=i):
                n = 6 if guided else 3
                self.assertEqual(x["context_batch"], n)
                self.assertEqual(x["ref_batch"], n)
                self.assertEqual(x["residual_batches"], [n, n])  # 2 adapter levels (tiny)
                # Guided steps: [uncond, cond] with zero reference tokens for uncond; the other
                # steps get the conditional half only (non-zero reference tokens).
                self.assertEqual(x["ref_uncond_zero"], guided)
        # Timesteps strictly decreasing, one UNet call per step (DDPM: first order).
        ts = [x["timestep"] for x in steps]
        self.assertEqual(ts, sorted(ts, reverse=True))
        self.assertEqual(len(set(ts)), 6)
        self.assertEqual(r.stdout.getvalue(), "", "stdout is the protocol channel")

    def test_interval_1_is_cfg_every_step(self) -> None:
        r = run("cfg_every_step")
        self.assertEqual(r.counters[0]["unet_evals"], 12)
        self.assertEqual(r.counters[0]["cfg_steps"], 6)
        self.assertEqual(r.batches(), [2] + [6] * 6)

    def test_guidance_1_turns_cfg_off(self) -> None:
        r = run("no_cfg")
        self.assertEqual(r.counters[0], {"text_encoder_evals": 1, "ref_unet_evals": 1,
                                         "unet_calls": 3, "unet_evals": 3, "cfg_steps": 0})
        self.assertEqual(r.batches(), [2, 2, 2, 2])
        # No doubling: the reference tokens have one row per view, none zeroed.
        self.assertEqual([x["ref_batch"] for x in r.unet_inputs[1:]], [2, 2, 2])
        self.assertEqual([x["ref_uncond_zero"] for x in r.unet_inputs[1:]], [False] * 3)


class ReferencePassAndOutputs(unittest.TestCase):
    def test_reference_pass_runs_the_same_unet(self) -> None:
        r = run("thg3")
        ref = r.unet_inputs[0]
        self.assertTrue(ref["recording"])
        self.assertEqual((ref["batch"], ref["timestep"], ref["context_batch"]), (2, 0, 2))
        self.assertIsNone(ref["residual_batches"])  # no adapter residuals in the reference pass
        # The hook sits on adapter.unet; both the reference pass and the steps went through it.
        self.assertEqual(len(r.unet_inputs), 2 * 7)
        # And there is no other UNet anywhere in the adapter.
        from diffusers import UNet2DConditionModel
        unets = {id(m) for v in vars(r.adapter).values() if isinstance(v, nn.Module)
                 for m in v.modules() if isinstance(m, UNet2DConditionModel)}
        self.assertEqual(unets, {id(r.adapter.unet)})
        resident = {k for k, v in vars(r.adapter).items() if isinstance(v, nn.Module)}
        self.assertEqual(resident, {"unet", "vae", "text_encoder", "adapter"})

    def test_views_change_the_unet_batch(self) -> None:
        r = run("views5_one_ref")
        # 1 reference photo, then 5 views: CFG on step 0 (interval 2, 2 steps) only.
        self.assertEqual(r.batches(), [1, 10, 5])
        self.assertEqual(r.counters[0]["unet_evals"], 3)
        self.assertEqual(len(r.adapter.last_images), 5)
        self.assertFalse(r.adapter.vae.use_slicing)
        self.assertTrue(run("thg3").adapter.vae.use_slicing)

    def test_reference_tokens_per_layer(self) -> None:
        for name, views, n_ref in (("thg3", 3, 2), ("views5_one_ref", 5, 1)):
            r = run(name)
            tokens = r.reference_tokens[-1]
            processors = r.adapter.unet.attn_processors
            # Every processor (self- and cross-attention) recorded its input, as UP2You's does.
            self.assertEqual(set(tokens), set(processors))
            for key, (shape, uncond_zero, cond_sum) in tokens.items():
                proc = processors[key]
                with self.subTest(run=name, layer=key):
                    side = LATENT if key.startswith(("down_blocks.0", "up_blocks.1")) else LATENT // 2
                    keep = int(min(MAX_SELECT_RATIO, n_ref) * side * side)
                    self.assertEqual(shape[:2], (2 * views, keep))
                    self.assertEqual(shape[2], proc.to_q_mv.in_features if proc.use_mv
                                     else r.adapter.unet.config.block_out_channels[
                                         0 if side == LATENT else 1])
                    self.assertTrue(uncond_zero)  # uncond: no reference
                    self.assertGreater(cond_sum, 0.0)

    def test_reference_tokens_die_with_the_call(self) -> None:
        # Kept into the next call, they would hold device memory that call needs (the script
        # keeps them in locals of one pipeline call).
        r = run("thg3")
        self.assertEqual(len(r.reference_refs), 2)
        self.assertTrue(all(len(refs) > 0 for refs in r.reference_refs))
        self.assertEqual(r.reference_refs_alive_after_call, [])

    def test_outputs(self) -> None:
        r = run("thg3")
        images = r.adapter.last_images
        self.assertEqual(len(images), 3)
        self.assertEqual({im.size for im in images}, {(RESOLUTION, RESOLUTION)})
        logs = "\n".join(r.logs)
        self.assertIn("CFG on 2 of 6 steps", logs)


class RowWiseAttention(unittest.TestCase):
    VIEWS, H, W, C, HEADS = 3, 4, 5, 8, 2

    def _tokens(self, seed: int = 0, square: bool = False) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        w = self.H if square else self.W
        return torch.randn(2 * self.VIEWS, self.H * w, self.C, generator=g, dtype=torch.float64)

    def _perturb_row(self, x: torch.Tensor, item: int, row: int) -> torch.Tensor:
        y = x.clone()
        w = x.shape[1] // self.H
        y[item, row * w:(row + 1) * w] += 1.0
        return y

    def _rows(self, out: torch.Tensor) -> torch.Tensor:  # [batch, H, W, C]
        return out.view(out.shape[0], self.H, -1, self.C)

    def test_branch_mixes_only_the_same_row_across_views(self) -> None:
        x = self._tokens()
        row = 2
        y = self._perturb_row(x, 1, row)  # view 1 of the first object
        for mode in ("repeat", "grouped"):
            with self.subTest(mode=mode):
                a, b = (self._rows(row_multiview_attention(t, t, t, self.HEADS, self.VIEWS, self.H,
                                                           self.W, mode)) for t in (x, y))
                changed = (a - b).abs().amax(dim=(2, 3)) > 1e-9  # [batch, H]
                expected = torch.zeros_like(changed)
                expected[:self.VIEWS, row] = True  # every view of that object, that row only
                self.assertTrue(torch.equal(changed, expected), changed)

    def test_repeat_and_grouped_agree(self) -> None:
        q, k, v = self._tokens(1), self._tokens(2), self._tokens(3)
        a = row_multiview_attention(q, k, v, self.HEADS, self.VIEWS, self.H, self.W, "repeat")
        b = row_multiview_attention(q, k, v, self.HEADS, self.VIEWS, self.H, self.W, "grouped")
        torch.testing.assert_close(a, b)
        # Not the full-sequence attention: a query does not see other rows of other views.
        full = torch.nn.functional.scaled_dot_product_attention(
            *(t.view(2, -1, self.HEADS, self.C // self.HEADS).transpose(1, 2) for t in (q, k, v)))
        self.assertFalse(torch.allclose(a, full.transpose(1, 2).reshape_as(a)))

    def test_attention_layer_with_the_processor(self) -> None:
        from diffusers.models.attention_processor import Attention

        torch.manual_seed(0)
        attn = Attention(query_dim=self.C, heads=self.HEADS, dim_head=self.C // self.HEADS,
                         bias=False, out_bias=True)
        attn.set_processor(RowMultiviewReferenceProcessor("t", self.C, self.VIEWS, use_mv=True,
                                                          use_ref=False))
        attn = attn.double()
        self.assertIn("processor.to_q_mv.weight", dict(attn.named_parameters()))
        x = self._tokens(square=True)  # the processor takes H = W, as UP2You's does
        row, view = 1, 0
        y = self._perturb_row(x, view, row)
        with torch.no_grad():
            a, b = self._rows(attn(x, num_views=self.VIEWS)), self._rows(attn(y, num_views=self.VIEWS))
        changed = (a - b).abs().amax(dim=3) > 1e-9  # [batch, H, W]
        # The perturbed view: its own (full) self-attention reaches every token.
        self.assertTrue(bool(changed[view].all()))
        # Other views of the same object: only the perturbed row, all of it.
        for other in range(1, self.VIEWS):
            self.assertTrue(bool(changed[other, row].all()))
            self.assertFalse(bool(changed[other, :row].any()) or bool(changed[other, row + 1:].any()))
        # The second object is untouched.
        self.assertFalse(bool(changed[self.VIEWS:].any()))
        # Switching the branch off for a call leaves plain self-attention: other views unchanged.
        with torch.no_grad():
            a0, b0 = attn(x, num_views=self.VIEWS, use_mv=False), attn(y, num_views=self.VIEWS, use_mv=False)
        self.assertTrue(torch.equal(a0[1:], b0[1:]))


class FullSize(unittest.TestCase):
    def test_parameter_counts_on_meta(self) -> None:
        counts = parameter_counts("full")
        sd21 = 865_910_724
        # Per self-attention, two decoupled branches (MV, reference), each q/k/v (d x d, no
        # bias) + out (d x d + d): 16 transformer blocks, 5 at d=320, 5 at 640, 6 at 1280.
        widths = [320] * 5 + [640] * 5 + [1280] * 6
        added = 2 * sum(4 * d * d + d for d in widths)
        layer = 4 * (1024 * 1024 + 1024) + (1024 * 4096 + 4096) + (4096 * 1024 + 1024) + 4 * 1024
        self.assertEqual(counts, {
            "unet_sd21": sd21,
            "unet": sd21 + added,
            "unet_added": added,
            "text_encoder": 49408 * 1024 + 77 * 1024 + 23 * layer + 2 * 1024,
            "vae": 83_653_863,
            "t2i_adapter": 77_369_280,
            "resident": sd21 + added + 340_387_840 + 83_653_863 + 77_369_280,
        })
        self.assertEqual(added, 99_148_160)
        self.assertEqual(counts["unet"], 965_058_884)
        self.assertEqual(counts["text_encoder"], 340_387_840)
        # The count does not depend on the number of views.
        self.assertEqual(parameter_counts("full", views=20)["unet"], 965_058_884)

    def test_note_setting_shapes_on_meta(self) -> None:
        """20 views at 768 (latent 96) through the full UNet and T2I-Adapter on the meta device:
        shapes only, no memory."""
        views, side = 20, 96
        with torch.device("meta"):
            unet, adapter = up2you_unet("full", views), t2i_adapter("full")
            recorded: Dict[str, torch.Tensor] = {}
            unet(torch.randn(4, 4, side, side), torch.zeros(4, dtype=torch.long),
                 encoder_hidden_states=torch.randn(4, 77, 1024),
                 cross_attention_kwargs={"cache_hidden_states": recorded, "use_mv": False,
                                         "use_ref": False})
            self.assertEqual(len(recorded), 32)  # 16 blocks x (attn1, attn2)
            self.assertEqual(tuple(recorded["down_blocks.0.attentions.0.transformer_blocks.0"
                                            ".attn1.processor"].shape), (4, side * side, 320))
            refs = {k: torch.randn(2 * views, 2 * v.shape[1], v.shape[2]) for k, v in recorded.items()}
            states = adapter(torch.randn(2 * views, 3, 8 * side, 8 * side))
            self.assertEqual([tuple(s.shape) for s in states],
                             [(40, 320, 96, 96), (40, 640, 48, 48), (40, 1280, 24, 24), (40, 1280, 12, 12)])
            out = unet(torch.randn(2 * views, 4, side, side), torch.tensor(981),
                       encoder_hidden_states=torch.randn(2 * views, 77, 1024),
                       cross_attention_kwargs={"num_views": views, "ref_hidden_states": refs},
                       down_intrablock_additional_residuals=list(states), return_dict=False)[0]
        self.assertEqual(tuple(out.shape), (40, 4, 96, 96))


class Schedule(unittest.TestCase):
    def test_shifted_ddpm(self) -> None:
        from diffusers import DDPMScheduler

        s = make_scheduler()
        self.assertIsInstance(s, DDPMScheduler)
        base = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
        snr = lambda ac: ac / (1 - ac)  # noqa: E731
        a, b = s.alphas_cumprod.double(), base.alphas_cumprod.double()
        # No shift at t = 0, the full 1/8 at t = 999, log-linear in between.
        self.assertAlmostEqual(float(snr(a[0]) / snr(b[0])), 1.0, places=4)
        self.assertAlmostEqual(float(snr(a[999]) / snr(b[999])), 1 / SHIFT_SCALE, places=4)
        self.assertAlmostEqual(float(snr(a[500]) / snr(b[500])), SHIFT_SCALE ** (-500 / 999), places=4)
        s.set_timesteps(50)
        self.assertEqual(len(s.timesteps), 50)
        self.assertEqual((int(s.timesteps[0]), int(s.timesteps[-1])), (981, 1))


class Params(unittest.TestCase):
    def test_defaults(self) -> None:
        full, ignored = parse_params({})
        self.assertEqual(ignored, [])
        self.assertEqual(
            (full.preset, full.views, full.resolution, full.steps, full.guidance,
             full.guidance_interval, full.vae_slicing, full.reference_images, full.row_attention),
            ("full", 20, 768, 50, 3.0, 3, True, 4, "repeat"))
        tiny, _ = parse_params({"preset": "tiny"})
        self.assertEqual((tiny.resolution, tiny.steps), (64, 6))

    def test_bad_params_name_the_parameter(self) -> None:
        bad = [
            ("preset", "huge"), ("views", 0), ("views", 65), ("views", "20"), ("views", True),
            ("resolution", 100), ("resolution", 32), ("resolution", 768.0), ("steps", 0),
            ("steps", 2.5), ("guidance", -1.0), ("guidance", float("nan")), ("guidance", "3"),
            ("guidance_interval", 0), ("vae_slicing", "yes"), ("vae_slicing", 1),
            ("reference_images", 0), ("row_attention", "diagonal"), ("seed", -1), ("viewz", 6),
        ]
        for name, value in bad:
            with self.subTest(name=name, value=value):
                with self.assertRaises(ValueError) as err:
                    Up2You().setup({name: value}, make_ctx({name: value}))
                self.assertIn(f"`{name}`", str(err.exception))

    def test_replica_only_params_are_reported(self) -> None:
        params = {"normal_stage": True, "reconstruction_iterations": 700, "attention": "sdpa",
                  "entry": "claimbench.adapters.up2you:Up2You"}
        cfg, ignored = parse_params(params)
        self.assertEqual(sorted(k for k, _ in ignored),
                         ["attention", "normal_stage", "reconstruction_iterations"])
        self.assertEqual(cfg.views, 20)


if __name__ == "__main__":
    unittest.main()
