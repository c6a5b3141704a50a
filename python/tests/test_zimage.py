"""The Z-Image adapter runs the real diffusers ZImagePipeline: tiny preset end to end on the CPU,
the full preset's shapes on the meta device."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import time
import unittest

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from claimbench.adapters import zimage  # noqa: E402
from claimbench.context import Context  # noqa: E402

TINY = {"preset": "tiny", "height": 64, "width": 64, "steps": 2}


def make_ctx(params):
    logs = []
    ctx = Context(torch.device("cpu"), torch.float32, None, params, {}, False,
                  lambda level, message: logs.append((level, message)))
    return ctx, logs


@contextlib.contextmanager
def captured_fd1():
    """Everything written to file descriptor 1 (the worker's protocol channel) in the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        box = {}
        try:
            yield box
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            box["out"] = tmp.read()


def run(params, calls=1):
    """Setup and ``calls`` measured calls; returns the adapter and the context of the last call."""
    ctx, logs = make_ctx(params)
    z = zimage.ZImage()
    z.setup(params, ctx)
    for _ in range(calls):
        ctx.begin_call(time.perf_counter())
        z.call(ctx)
    return z, ctx, logs


class Params(unittest.TestCase):
    def assert_rejects(self, key, value):
        ctx, _ = make_ctx({})
        with self.assertRaises(ValueError) as cm:
            zimage.ZImage().setup({**TINY, key: value}, ctx)
        self.assertIn(f"`{key}`", str(cm.exception))

    def test_bad_values_name_the_parameter(self):
        self.assert_rejects("offload", "bogus")
        self.assert_rejects("attention", "sliced:x")
        self.assert_rejects("attention", "sliced:0")
        self.assert_rejects("preset", "huge")
        self.assert_rejects("height", 100)  # not a multiple of 16
        self.assert_rejects("steps", 0)
        self.assert_rejects("vae_slicing", "yes")
        self.assert_rejects("guidance", -1.0)
        self.assert_rejects("batch", True)

    def test_attention_spellings(self):
        self.assertIsNone(zimage.parse_attention("default"))
        self.assertEqual(zimage.parse_attention("sliced:auto"), "auto")
        self.assertEqual(zimage.parse_attention("sliced:max"), "max")
        self.assertEqual(zimage.parse_attention("sliced:4"), 4)

    def test_defaults_are_the_turbo_call(self):
        p, unknown = zimage.parse_params({})
        self.assertEqual((p["height"], p["width"], p["steps"], p["guidance"]), (1024, 1024, 9, 0.0))
        self.assertEqual((p["preset"], p["offload"], p["batch"]), ("full", "none", 1))
        self.assertEqual(unknown, [])
        self.assertEqual(zimage.parse_params({"text_tokens": 16})[1], ["text_tokens"])


class FullPresetShapes(unittest.TestCase):
    def test_parameter_counts(self):
        models = zimage.meta_models("full")
        counts = {name: zimage.parameter_count(m) for name, m in models.items()}
        self.assertEqual(counts, {
            "text_encoder": 4_022_468_096,
            "transformer": 6_154_908_736,
            "vae": 83_819_683,
        })
        self.assertTrue(all(p.is_meta for m in models.values() for p in m.parameters()))

    def test_full_transformer_is_the_turbo_default(self):
        dit = zimage.meta_models("full")["transformer"]
        cfg = dit.config
        self.assertEqual((cfg.dim, cfg.n_layers, cfg.n_refiner_layers, cfg.n_heads, cfg.cap_feat_dim),
                         (3840, 30, 2, 30, 2560))


class Tokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tok = zimage.build_tokenizer([zimage.DEFAULT_PROMPT, ""])

    def render(self, prompt):
        return self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                            add_generation_prompt=True, enable_thinking=True)

    def test_chat_template_is_qwen3(self):
        self.assertEqual(self.render("hi"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        no_think = self.tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                add_generation_prompt=True, enable_thinking=False)
        self.assertTrue(no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n"))

    def test_special_ids_padding_and_caption_length(self):
        enc = self.tok([self.render(zimage.DEFAULT_PROMPT)], padding="max_length", max_length=512,
                       truncation=True, return_tensors="pt")
        ids, mask = enc.input_ids[0], enc.attention_mask[0]
        self.assertEqual(ids.shape[0], 512)
        n = int(mask.sum())
        # 19 prompt pieces + <|im_start|> user \n ... <|im_end|> \n <|im_start|> assistant \n
        self.assertEqual(n, 27)
        self.assertEqual(ids[0].item(), 151644)
        self.assertEqual(ids[n - 5].item(), 151645)
        self.assertTrue(bool((ids[n:] == 151643).all()))
        self.assertTrue(bool((mask[n:] == 0).all()))
        # Every prompt piece is in the vocabulary: no fallback to <|endoftext|> inside the caption.
        self.assertNotIn(151643, ids[:n].tolist())
        self.assertLess(int(ids[:n].max()), 151646)

    def test_words_and_han_characters(self):
        tok = zimage.build_tokenizer(["a b c", "一幅海报"])
        count = lambda s: len(tok(s).input_ids)  # noqa: E731
        self.assertEqual(count("a b c"), 3)
        self.assertEqual(count("一幅海报"), 4)
        self.assertEqual(tok.decode(tok("a b c").input_ids), "a b c")


class BuildOnHost(unittest.TestCase):
    def test_fill_follows_random_init_and_keeps_computed_buffers(self):
        factory = zimage.text_encoder_factory("tiny")
        m = zimage.build_on_host(factory, torch.device("cpu"), torch.float32, seed=3)
        for name, p in m.named_parameters():
            self.assertEqual(p.device.type, "cpu")
            self.assertTrue(bool(torch.isfinite(p).all()), name)
            if name.endswith("norm.weight"):
                self.assertTrue(bool((p == 1).all()), name)
        w = m.layers[0].mlp.up_proj.weight  # 128 x 64: N(0, 1/64)
        self.assertAlmostEqual(float(w.detach().std()), 1 / 8, delta=0.01)
        ref = factory().rotary_emb.inv_freq
        self.assertTrue(torch.equal(m.rotary_emb.inv_freq, ref))


class TinyCalls(unittest.TestCase):
    def check_plain_counts(self, ctx, steps):
        self.assertEqual(ctx.counters["text_encoder_evals"], 1)
        self.assertEqual(ctx.counters["dit_evals"], steps)
        self.assertEqual(ctx.counters["dit_samples"], steps)
        self.assertEqual(ctx.counters["vae_decodes"], 1)
        self.assertEqual(ctx.counters["vae_decoder_evals"], 1)
        self.assertEqual([s["name"] for s in ctx.stage_times],
                         ["text_encoder", "dit", "vae_decode", "postprocess"])

    def test_no_offload_end_to_end_silent_and_offline(self):
        def refuse(*args, **kwargs):
            raise AssertionError(f"network access: {args}")

        connect, create = socket.socket.connect, socket.create_connection
        socket.socket.connect, socket.create_connection = refuse, refuse
        try:
            with captured_fd1() as fd1:
                z, ctx, logs = run({**TINY, "steps": 3}, calls=2)
        finally:
            socket.socket.connect, socket.create_connection = connect, create
        self.assertEqual(fd1["out"], b"")
        import huggingface_hub.constants

        self.assertTrue(huggingface_hub.constants.HF_HUB_OFFLINE)
        self.assertEqual(os.environ["HF_HUB_OFFLINE"], "1")
        self.check_plain_counts(ctx, 3)  # counters are per call
        self.assertEqual(z.images[0].size, (64, 64))
        self.assertEqual(ctx.not_applicable_knobs, [])
        for name in ("text_encoder", "transformer", "vae"):
            self.assertFalse(hasattr(getattr(z.pipe, name), "_hf_hook"), name)
        counts = [m for _, m in logs if "parameters" in m]
        self.assertEqual(len(counts), 3)
        self.assertTrue(any("Qwen3Model 9,835,040 parameters" in m for m in counts), counts)

    def test_dit_sees_the_unmasked_caption(self):
        z, ctx, _ = run(TINY, calls=0)
        seen = []
        z.pipe.transformer.register_forward_pre_hook(
            lambda m, args: seen.append([c.shape[0] for c in args[2]]))
        ctx.begin_call(time.perf_counter())
        z.call(ctx)
        self.assertEqual(seen, [[27], [27]])

    def test_model_offload_installs_hooks_and_runs(self):
        z, ctx, _ = run({**TINY, "offload": "model"}, calls=2)
        self.check_plain_counts(ctx, 2)
        for name in ("text_encoder", "transformer", "vae"):
            self.assertTrue(hasattr(getattr(z.pipe, name), "_hf_hook"), name)
        # maybe_free_model_hooks re-arms the chain after every call.
        self.assertEqual(len(z.pipe._all_hooks), 3)
        self.assertEqual(z.images[0].size, (64, 64))

    def test_sequential_offload_on_cpu_is_recorded_and_runs_without(self):
        z, ctx, _ = run({**TINY, "offload": "sequential"})
        self.assertEqual(z.offload, "none")
        self.assertEqual(len(ctx.not_applicable_knobs), 1)
        self.assertTrue(ctx.not_applicable_knobs[0].startswith("offload: "))
        self.assertFalse(hasattr(z.pipe.transformer, "_hf_hook"))
        self.check_plain_counts(ctx, 2)

    def test_guidance_runs_cfg_as_a_doubled_list(self):
        # Z-Image's CFG threshold is guidance > 0: the negative prompt is encoded too.
        for guidance in (0.5, 4.0):
            z, ctx, _ = run({**TINY, "guidance": guidance, "batch": 2})
            self.assertEqual(ctx.counters["text_encoder_evals"], 2)
            self.assertEqual(ctx.counters["dit_evals"], 2)
            self.assertEqual(ctx.counters["dit_samples"], 2 * 2 * 2)
            self.assertEqual(ctx.counters["vae_decodes"], 1)
            self.assertEqual(len(z.images), 2)

    def test_attention_slicing_is_not_applicable_and_still_runs(self):
        for attention in ("sliced:auto", "sliced:max", "sliced:1"):
            z, ctx, _ = run({**TINY, "attention": attention})
            self.assertEqual(len(ctx.not_applicable_knobs), 1, attention)
            self.assertTrue(ctx.not_applicable_knobs[0].startswith("attention: "))
            procs = {type(m.processor).__name__ for m in z.pipe.transformer.modules()
                     if hasattr(m, "processor")}
            self.assertEqual(procs, {"ZSingleStreamAttnProcessor"})  # no sliced processor
            self.check_plain_counts(ctx, 2)

    def test_vae_slicing_and_tiling_set_the_flags(self):
        z, ctx, _ = run({**TINY, "vae_slicing": True, "vae_tiling": True})
        self.assertTrue(z.pipe.vae.use_slicing)
        self.assertTrue(z.pipe.vae.use_tiling)
        # Batch 1 at the preset's default size: both are no-ops, as at 1024² on the full model.
        self.assertEqual(sorted(k.split(":")[0] for k in ctx.not_applicable_knobs),
                         ["vae_slicing", "vae_tiling"])
        self.check_plain_counts(ctx, 2)
        z, ctx, _ = run({**TINY})
        self.assertFalse(z.pipe.vae.use_slicing)
        self.assertFalse(z.pipe.vae.use_tiling)

    def test_vae_slicing_and_tiling_take_effect_where_they_apply(self):
        z, ctx, _ = run({**TINY, "batch": 2, "vae_slicing": True})
        self.assertEqual(ctx.counters["vae_decoder_evals"], 2)  # one per image
        self.assertEqual(ctx.not_applicable_knobs, [])
        z, ctx, _ = run({**TINY, "height": 128, "width": 128, "vae_tiling": True})
        self.assertGreater(ctx.counters["vae_decoder_evals"], 1)  # overlapping tiles
        self.assertEqual(z.images[0].size, (128, 128))
        self.assertEqual(ctx.not_applicable_knobs, [])

    def test_unknown_parameter_is_recorded(self):
        _, ctx, _ = run({**TINY, "text_tokens": 16})
        self.assertEqual(ctx.not_applicable_knobs[0].split(":")[0], "text_tokens")


if __name__ == "__main__":
    unittest.main()
