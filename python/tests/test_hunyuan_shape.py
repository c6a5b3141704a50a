"""The Hunyuan3D-2 shape adapter on the CPU: tiny models end to end, full-size parameter counts on
the meta device, parameter validation.

Run from ``python/``: ``OMP_NUM_THREADS=1 python -m unittest tests.test_hunyuan_shape -v``.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import unittest
from typing import Dict, List, Tuple

import numpy as np
import torch

from claimbench.adapters.hunyuan_shape import (HunyuanShape, analytic_field, parameter_counts,
                                               parse_params, pipeline_config)
from claimbench.context import Context

STAGES = ["conditioning", "dit", "vae_decode", "volume_decode", "surface_extraction"]


def make_ctx(params: Dict, logs: List[Tuple[str, str]] = None) -> Context:
    sink = (lambda level, msg: logs.append((level, msg))) if logs is not None else None
    return Context(torch.device("cpu"), torch.float32, None, params, {}, False, sink)


class Run:
    """One tiny adapter: setup, measured calls, and what the modules saw in each call."""

    def __init__(self, params: Dict, calls: int = 2) -> None:
        self.logs: List[Tuple[str, str]] = []
        self.ctx = make_ctx(params, self.logs)
        self.adapter = HunyuanShape()
        self.stdout = io.StringIO()
        self.counters: List[Dict[str, int]] = []
        self.stages: List[List[str]] = []
        # Per call: DiT (latent batch, context batch), geo-decoder chunk sizes, logits finite.
        self.dit_inputs: List[List[Tuple[int, int]]] = []
        self.chunks: List[List[int]] = []
        self.finite: List[bool] = []
        with contextlib.redirect_stdout(self.stdout):
            self.adapter.setup(params, self.ctx)
            pipe = self.adapter.pipe
            pipe.model.register_forward_pre_hook(self._dit, with_kwargs=True)
            pipe.vae.geo_decoder.register_forward_pre_hook(self._chunk, with_kwargs=True)
            pipe.vae.geo_decoder.register_forward_hook(self._logits)
            for _ in range(calls):
                self.dit_inputs.append([])
                self.chunks.append([])
                self.finite.append(True)
                self.ctx.begin_call(0.0)
                self.adapter.call(self.ctx)
                self.counters.append(dict(self.ctx.counters))
                self.stages.append([s["name"] for s in self.ctx.stage_times])

    def _dit(self, _module, args, kwargs):
        x, contexts = args[0], args[2]
        self.dit_inputs[-1].append((x.shape[0], contexts["main"].shape[0]))

    def _chunk(self, _module, args, kwargs):
        queries = kwargs["queries"]
        self.chunks[-1].append(queries.shape[0] * queries.shape[1])

    def _logits(self, _module, _args, output):
        self.finite[-1] = self.finite[-1] and bool(torch.isfinite(output).all())

    def not_applicable(self) -> List[str]:
        return self.ctx.not_applicable_knobs


RUN_PARAMS = {
    # tiny defaults: 2 steps, guidance 5.0 (CFG), octree 16, chunks of 1000 points
    "default": {},
    "chunks": {"num_chunks": 2000, "steps": 3},
    "no_cfg": {"guidance": -1.0, "octree_resolution": 12},
    "options": {"offload": "model", "flashvdm": True},
}
_RUNS: Dict[str, Run] = {}


def run(name: str) -> Run:
    if name not in _RUNS:
        _RUNS[name] = Run(dict(RUN_PARAMS[name], preset="tiny"), calls=2 if name == "default" else 1)
    return _RUNS[name]


class EndToEnd(unittest.TestCase):
    def test_stdout_stays_clean(self):
        self.assertEqual(run("default").stdout.getvalue(), "")

    def test_stages_in_pipeline_order(self):
        for stages in run("default").stages:
            self.assertEqual(stages, STAGES)

    def test_dit_evals_equal_steps_and_cfg_is_a_batch_of_two(self):
        r = run("default")
        for counters, inputs in zip(r.counters, r.dit_inputs):
            self.assertEqual(counters["dit_evals"], 2)
            self.assertEqual(len(inputs), 2)
            # cond and uncond go through one forward: latents and context both batch 2
            self.assertEqual(inputs, [(2, 2), (2, 2)])
        c = run("chunks")
        self.assertEqual(c.counters[0]["dit_evals"], 3)
        self.assertEqual(len(c.dit_inputs[0]), 3)

    def test_negative_guidance_turns_cfg_off(self):
        r = run("no_cfg")
        self.assertEqual(r.counters[0]["dit_evals"], 2)
        self.assertEqual(r.dit_inputs[0], [(1, 1), (1, 1)])

    def test_query_points_cover_the_dense_grid(self):
        r = run("default")
        for counters, chunks in zip(r.counters, r.chunks):
            self.assertEqual(counters["query_points"], 17 ** 3)
            self.assertEqual(sum(chunks), 17 ** 3)
            self.assertEqual(chunks, [1000] * 4 + [913])
            self.assertEqual(counters["volume_decoder_chunks"], 5)
        n = run("no_cfg")
        self.assertEqual(n.counters[0]["query_points"], 13 ** 3)
        self.assertEqual(n.chunks[0], [1000, 1000, 197])

    def test_num_chunks_changes_chunk_calls_not_points(self):
        a, b = run("default"), run("chunks")
        self.assertEqual(len(a.chunks[0]), 5)
        self.assertEqual(len(b.chunks[0]), math.ceil(17 ** 3 / 2000))
        self.assertEqual(b.chunks[0], [2000, 2000, 913])
        self.assertEqual(b.counters[0]["volume_decoder_chunks"], 3)
        self.assertEqual(a.counters[0]["query_points"], b.counters[0]["query_points"])

    def test_real_grid_reaches_the_extractor(self):
        r = run("default")
        self.assertTrue(all(r.finite))
        self.assertEqual(r.adapter.extractor.decoded, {"shape": (17, 17, 17), "dtype": "float32"})

    def test_surface_is_the_analytic_ellipsoid(self):
        from skimage import measure

        r = run("default")
        mesh = r.adapter.last_mesh
        _, faces, _, _ = measure.marching_cubes(analytic_field(17), 0.0, method="lewiner")
        self.assertGreater(len(faces), 0)
        for counters in r.counters:
            self.assertEqual(counters["mesh_faces"], len(faces))
        self.assertEqual(len(mesh.faces), len(faces))
        # Vertices mapped into the box [-1.01, 1.01]^3 by the real extractor: the ellipsoid's
        # semi-axes are 0.6 / 0.78 / 0.6 on [-1, 1], slightly shrunk by the 17/16 grid scaling.
        v = np.asarray(mesh.vertices)
        extent = v.max(axis=0) - v.min(axis=0)
        self.assertGreater(extent[1], extent[0] * 1.1)
        self.assertTrue(np.all(np.abs(v) < 1.01))

    def test_substitution_is_logged(self):
        text = "\n".join(m for _, m in run("default").logs)
        self.assertIn("analytic ellipsoid field", text)
        for part in ("conditioner", "dit (Hunyuan3DDiT)", "vae (ShapeVAE)"):
            self.assertIn(part, text)

    def test_package_init_not_run(self):
        run("default")
        self.assertNotIn("pymeshlab", sys.modules)
        self.assertNotIn("hy3dgen.postprocessors", sys.modules)
        self.assertNotIn("hy3dgen.shapegen.postprocessors", sys.modules)


class MemoryOptions(unittest.TestCase):
    def test_failing_package_options_are_recorded_and_the_call_runs(self):
        r = run("options")
        na = r.not_applicable()
        self.assertEqual(len(na), 2, na)
        self.assertTrue(na[0].startswith("offload: "), na)
        self.assertIn("AttributeError", na[0])
        self.assertIn("components", na[0])
        self.assertTrue(na[1].startswith("flashvdm: "), na)
        self.assertIn("KeyError", na[1])
        self.assertIn("from_pretrained_kwargs", na[1])
        # The vanilla decoder still ran over the whole grid, on the original device.
        self.assertEqual(r.counters[0]["query_points"], 17 ** 3)
        self.assertEqual(r.stages[0], STAGES)
        pipe = r.adapter.pipe
        self.assertEqual(pipe.device.type, "cpu")
        self.assertEqual(next(pipe.model.parameters()).device.type, "cpu")

    def test_sequential_offload_is_not_a_method_of_the_pipeline(self):
        ctx = make_ctx({})
        adapter = HunyuanShape()
        adapter.setup({"preset": "tiny", "offload": "sequential"}, ctx)
        self.assertEqual(len(ctx.not_applicable_knobs), 1)
        self.assertIn("enable_sequential_cpu_offload", ctx.not_applicable_knobs[0])


class FullSize(unittest.TestCase):
    def test_parameter_counts(self):
        counts = parameter_counts("full")
        self.assertEqual(counts["dit"], 1_113_274_432)
        self.assertEqual(counts["shape_vae"], 214_212_865)
        self.assertEqual(counts["shape_vae_geo_decoder"], 12_651_777)
        self.assertEqual(counts["conditioner"], 1_136_480_768)

    def test_dinov2_giant_builds_from_the_config_dict(self):
        from claimbench.adapters.hunyuan_shape import factory

        with torch.device("meta"):
            conditioner = factory("conditioner", "full")()
        enc = conditioner.main_image_encoder
        cfg = enc.model.config
        self.assertEqual((cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads),
                         (1536, 40, 24))
        self.assertTrue(cfg.use_swiglu_ffn)
        self.assertEqual(enc.num_patches, 37 * 37 + 1)  # 1370 tokens at 518 px
        full = pipeline_config("full")
        self.assertEqual(full["image_processor"]["params"], {"size": 512, "border_ratio": 0.15})
        self.assertEqual(full["vae"]["params"]["num_latents"], 3072)


class Params(unittest.TestCase):
    def test_defaults(self):
        full = parse_params({})
        self.assertEqual((full.preset, full.steps, full.guidance, full.octree_resolution,
                          full.num_chunks, full.seed), ("full", 50, 5.0, 384, 8000, 0))
        tiny = parse_params({"preset": "tiny", "entry": "hunyuan_shape:HunyuanShape"})
        self.assertEqual((tiny.steps, tiny.octree_resolution, tiny.num_chunks), (2, 16, 1000))

    def test_bad_params_name_the_parameter(self):
        bad = [
            ({"preset": "huge"}, "preset"),
            ({"steps": 0}, "steps"),
            ({"steps": "5"}, "steps"),
            ({"steps": True}, "steps"),
            ({"guidance": float("nan")}, "guidance"),
            ({"guidance": "high"}, "guidance"),
            ({"octree_resolution": 1}, "octree_resolution"),
            ({"octree_resolution": 256.0}, "octree_resolution"),
            ({"num_chunks": 0}, "num_chunks"),
            ({"seed": -1}, "seed"),
            ({"offload": "disk"}, "offload"),
            ({"flashvdm": "yes"}, "flashvdm"),
            ({"octree": 128}, "octree"),
        ]
        for params, name in bad:
            with self.subTest(params=params):
                with self.assertRaises(ValueError) as cm:
                    parse_params(params)
                self.assertIn(f"`{name}`", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            HunyuanShape().setup({"num_chunks": -5}, make_ctx({}))
        self.assertIn("`num_chunks`", str(cm.exception))

    def test_analytic_field(self):
        f = analytic_field(9)
        self.assertEqual((f.shape, f.dtype), ((9, 9, 9), np.float32))
        self.assertAlmostEqual(float(f[4, 4, 4]), 0.6, places=6)
        self.assertLess(float(f[0, 0, 0]), 0.0)
        # stretched along y: (0, 0.75, 0) is inside, (0.75, 0, 0) outside
        self.assertGreater(float(f[4, 7, 4]), 0.0)
        self.assertLess(float(f[7, 4, 4]), 0.0)


if __name__ == "__main__":
    unittest.main()
