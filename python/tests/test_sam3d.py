"""The SAM 3D Objects adapter on the CPU: the real pipeline construction order, load strategies,
DINO input sizes, parameter validation, the compiled-module stand-ins, a tiny end-to-end call,
and full-size parameter counts on the meta device.

Needs the ``sam3d`` wheel and its pure-Python dependencies (python/requirements.txt); without them
every test errors with the adapter's ImportError (nothing is skipped).

Run from ``python/``: ``OMP_NUM_THREADS=1 python -m unittest tests.test_sam3d -v``.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import unittest
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from claimbench.adapters import sam3d
from claimbench.adapters.sam3d import (PRESETS, REAL_ORDER, Sam3dObjects, SubMConv3d,
                                       SparseConvTensor, Transform3d, look_at_view_transform,
                                       model_configs, parse_params, shell_occupancy)
from claimbench.context import Context

# The order in which one call uses the models (decode_slat runs the mesh decoder first).
USE_ORDER = ["moge", "ss_condition_embedder", "ss_generator", "ss_decoder",
             "slat_condition_embedder", "slat_generator", "slat_decoder_mesh", "slat_decoder_gs"]


def make_ctx(params: Dict, dtype: torch.dtype = torch.float32,
             logs: Optional[List[Tuple[str, str]]] = None) -> Context:
    sink = (lambda level, msg: logs.append((level, msg))) if logs is not None else None
    return Context(torch.device("cpu"), dtype, None, params, {}, False, sink)


class Run:
    """A tiny adapter: setup, then measured calls; per call the stage names, the counters and,
    for each model forward, which models were resident when it started."""

    def __init__(self, params: Dict, calls: int = 1, dtype: torch.dtype = torch.float32) -> None:
        self.params = {"preset": "tiny", **params}
        self.logs: List[Tuple[str, str]] = []
        self.ctx = make_ctx(self.params, dtype, self.logs)
        self.adapter = Sam3dObjects()
        self.adapter.setup(self.params, self.ctx)
        self.resident_after_setup = self.adapter.resident()
        self.build_log_after_setup = list(self.adapter.build_log)
        self.stages: List[List[str]] = []
        self.counters: List[Dict[str, int]] = []
        self.resident_during: List[Tuple[str, List[str]]] = []
        before = self.adapter._before

        def watching_before(slot, stage):
            before(slot, stage)
            self.resident_during.append((slot.name, self.adapter.resident()))

        self.adapter._before = watching_before
        for _ in range(calls):
            self.ctx.begin_call(0.0)
            with torch.no_grad():
                self.adapter.call(self.ctx)
            self.stages.append([s["name"] for s in self.ctx.stage_times])
            self.counters.append(dict(self.ctx.counters))


def evals(steps: int, rescale: float, interval=(0, 500)) -> int:
    """Backbone calls of the package's Euler sampler with interval CFG: one per step plus one
    per step whose model time 1000*t lies in the interval (t rescaled as the sampler does)."""
    total = 0
    for i in range(steps):
        t = i / steps
        t = t / (1 + (rescale - 1) * (1 - t))
        total += 1 + int(interval[0] <= 1000 * t <= interval[1])
    return total


class TinyAllAtOnce(unittest.TestCase):
    """One all-at-once adapter with cleanup, two calls."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.tiny = Run({"voxels": 250, "input_resolution": 72}, calls=2)

    def test_models_are_built_in_the_real_pipeline_order(self):
        self.assertEqual(self.tiny.build_log_after_setup, list(REAL_ORDER))
        self.assertEqual(self.tiny.resident_after_setup, list(REAL_ORDER))

    def test_end_to_end_counters(self):
        c = self.tiny.counters[0]
        # pipeline.yaml: ss rescale_t 3 (constructor default), slat rescale_t 1; CFG in [0, 500].
        self.assertEqual(c["ss_flow_evals"], evals(2, 3.0))
        self.assertEqual(c["slat_flow_evals"], evals(2, 1.0))
        self.assertEqual(c["voxels"], 250)
        self.assertEqual(c["gaussians"], 250 * 32)  # slat_decoder_gs: 32 Gaussians per voxel
        self.assertGreater(c["mesh_faces"], 0)
        self.assertEqual(c["dino_calls"], 8)  # 2 stages x 2 DINO x (cropped, full)

    def test_stages_and_cleanup_reload(self):
        first, second = self.tiny.stages
        for stage in ("depth", "preprocess", "condition_ss", "ss_flow", "ss_decode",
                      "condition_slat", "slat_flow", "decode_mesh", "decode_gaussians", "cleanup"):
            self.assertIn(stage, first)
        self.assertFalse([s for s in first if s.startswith("load_")], first)
        # cleanup freed everything; the next call re-creates all nine models first, in order.
        loads = [s[len("load_"):] for s in second if s.startswith("load_")]
        self.assertEqual(loads, list(REAL_ORDER))
        self.assertEqual(second[:len(loads)], [f"load_{n}" for n in loads])
        self.assertEqual(self.tiny.adapter.resident(), [])
        # Every model that runs had everything resident (all_at_once).
        for name, resident in self.tiny.resident_during:
            self.assertEqual(resident, list(REAL_ORDER), name)

    def test_dino_inputs_follow_the_configured_sizes(self):
        s1, s2 = PRESETS["tiny"]["dino_input"]
        shapes = self.tiny.adapter.dino_inputs[:8]
        self.assertEqual(shapes, [(1, 3, s1, s1)] * 4 + [(1, 3, s2, s2)] * 4)

    def test_mixed_precision_weights_as_configured(self):
        slots = self.tiny.adapter.slots
        # use_fp16 converts the torsos' linear layers (norms stay fp32), as convert_to_fp16 does.
        for name in ("ss_generator", "slat_generator"):
            torso = slots[name].model.reverse_fn.backbone.blocks
            linear = [m.weight.dtype for m in torso.modules() if isinstance(m, torch.nn.Linear)]
            self.assertTrue(linear and set(linear) == {torch.float16}, name)
        for name in ("ss_condition_embedder", "moge", "ss_decoder"):
            self.assertTrue(all(p.dtype == torch.float32 for p in slots[name].model.parameters()),
                            name)



class InputSizeDoesNotChangeDino(unittest.TestCase):
    def test_other_input_resolution_gives_the_same_dino_inputs(self):
        run = Run({"voxels": 50, "input_resolution": 40, "decode_mesh": False})
        s1, s2 = PRESETS["tiny"]["dino_input"]
        self.assertEqual(run.adapter.dino_inputs, [(1, 3, s1, s1)] * 4 + [(1, 3, s2, s2)] * 4)
        self.assertNotIn("decode_mesh", run.stages[0])
        self.assertNotIn("mesh_faces", run.counters[0])

    def test_full_configs_use_the_released_dino_sizes(self):
        cfg = model_configs("full")
        ss = [e[0] for e in cfg["ss_generator"]["module"]["condition_embedder"]["backbone"]["embedder_list"]]
        slat = [e[0] for e in cfg["slat_generator"]["module"]["condition_embedder"]["backbone"]["embedder_list"]]
        self.assertEqual([d.get("input_size") for d in ss], [770, 770, 256])
        self.assertEqual([d["input_size"] for d in slat], [1036, 1036])
        self.assertEqual([d.get("prenorm_features", False) for d in slat], [True, True])
        self.assertEqual(sum("Dino" in d["_target_"] for d in ss + slat), 4)


class LoadStrategies(unittest.TestCase):
    def test_lazy_loads_on_first_use_and_keeps(self):
        run = Run({"load": "lazy", "cleanup": False, "voxels": 60, "decode_mesh": False}, calls=2)
        self.assertEqual(run.resident_after_setup, [])
        self.assertEqual(run.build_log_after_setup, [])
        used = [n for n in USE_ORDER if n != "slat_decoder_mesh"]
        loads = [s[len("load_"):] for s in run.stages[0] if s.startswith("load_")]
        self.assertEqual(loads, used)
        self.assertFalse([s for s in run.stages[1] if s.startswith("load_")], "lazy loads once")
        # slat_decoder_gs_4 (never decoded with) and the unused mesh decoder stay unloaded.
        self.assertEqual(run.adapter.resident(), [n for n in REAL_ORDER if n in used])

    def test_sequential_holds_one_model_at_a_time(self):
        run = Run({"load": "sequential", "cleanup": False, "voxels": 60}, calls=1)
        self.assertEqual(run.resident_after_setup, [])
        stages = run.stages[0]
        for name in USE_ORDER:
            self.assertIn(f"load_{name}", stages)
            self.assertIn(f"unload_{name}", stages)
            self.assertLess(stages.index(f"load_{name}"), stages.index(f"unload_{name}"))
        self.assertEqual([n for n, _ in run.resident_during], USE_ORDER)
        for name, resident in run.resident_during:
            self.assertEqual(resident, [name])
        self.assertEqual(run.adapter.resident(), [])
        self.assertNotIn("load_slat_decoder_gs_4", stages)

    def test_an_unloaded_model_leaves_no_weights_to_the_cyclic_collector(self):
        # Hydra puts the DINO models into OmegaConf nodes (reference cycles): a release that
        # only drops references leaves their weights allocated until the collector runs.
        gc.collect()
        gc.disable()
        try:
            run = Run({"load": "sequential", "cleanup": True, "voxels": 60}, calls=1)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            held = [t for t in gc.garbage if isinstance(t, torch.Tensor) and t.device.type != "meta"]
            self.assertEqual(sum(t.numel() * t.element_size() for t in held), 0,
                             f"{len(held)} tensors only a reference cycle held")
            self.assertEqual(run.adapter.resident(), [])
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()


class Params(unittest.TestCase):
    def test_unknown_and_bad_parameters_are_rejected(self):
        for bad in ({"bogus": 1}, {"load": "eager"}, {"preset": "huge"}, {"voxels": 0},
                    {"ss_steps": 0}, {"cleanup": "yes"}, {"input_resolution": 8}):
            with self.assertRaises(ValueError, msg=str(bad)):
                parse_params(bad)
        with self.assertRaises(ValueError):
            Sam3dObjects().setup({"preset": "tiny", "voxels": 5000}, make_ctx({}))

    def test_defaults_and_replica_parameters(self):
        cfg, ignored = parse_params({"slat_tokens": 64, "attention": "sliced:auto"})
        self.assertEqual((cfg.load, cfg.ss_steps, cfg.slat_steps, cfg.voxels, cfg.cleanup),
                         ("all_at_once", 25, 25, 20000, True))
        self.assertEqual(sorted(k for k, _ in ignored), ["attention", "slat_tokens"])
        tiny, _ = parse_params({"preset": "tiny", "entry": "x:y"})
        self.assertEqual((tiny.ss_steps, tiny.voxels, tiny.input_resolution), (2, 300, 64))

    def test_dtype_knob_is_the_pipeline_autocast_dtype_not_the_weights(self):
        for dtype in (torch.float16, torch.float32):
            adapter = Sam3dObjects()
            adapter.setup({"preset": "tiny", "load": "lazy"}, make_ctx({}, dtype))
            self.assertEqual((adapter.pipe.dtype, adapter.pipe.shape_model_dtype), (dtype, dtype))
            embedder = {p.dtype for p in adapter.slots["slat_condition_embedder"].model.parameters()}
            self.assertEqual(embedder, {torch.float32})
            decoder = adapter.slots["slat_decoder_gs"].model.blocks
            self.assertEqual({m.weight.dtype for m in decoder.modules()
                              if isinstance(m, torch.nn.Linear)}, {torch.float16})

    def test_fp16_weights_false_keeps_everything_fp32(self):
        ctx = make_ctx({})
        adapter = Sam3dObjects()
        adapter.setup({"preset": "tiny", "load": "lazy", "fp16_weights": False}, ctx)
        dtypes = {p.dtype for s in adapter.slots.values() for p in s.model.parameters()}
        self.assertEqual(dtypes, {torch.float32})


class FullSize(unittest.TestCase):
    def test_parameter_counts_on_meta(self):
        adapter = Sam3dObjects()
        adapter.setup({"preset": "full", "load": "lazy"}, make_ctx({}))
        counts = {n: sum(p.numel() for p in s.model.parameters()) for n, s in adapter.slots.items()}
        self.assertEqual(counts, {
            "moge": 314_174_020, "ss_generator": 959_962_133, "slat_generator": 600_432_520,
            "ss_decoder": 73_671_201, "slat_decoder_gs": 85_369_024,
            "slat_decoder_gs_4": 85_067_576, "slat_decoder_mesh": 90_926_693,
            "ss_condition_embedder": 634_485_760, "slat_condition_embedder": 626_054_144})
        self.assertTrue(all(p.is_meta for s in adapter.slots.values() for p in s.model.parameters()))
        half = sum(p.numel() for p in adapter.slots["ss_generator"].model.parameters()
                   if p.dtype == torch.float16)
        self.assertEqual(half, 957_087_744)


class StandIns(unittest.TestCase):
    def test_package_imports_with_stand_ins_and_no_leftover_placeholders(self):
        lib = sam3d._libs()
        if "spconv" in lib.standins:
            self.assertIs(sys.modules["spconv.pytorch"].SubMConv3d, SubMConv3d)
        for name in lib.placeholders:
            self.assertNotIn(name, sys.modules)
        self.assertIn(lib.sparse_attention, ("sdpa", "flash_attn"))

    def test_flash_attn_stand_in_coexists_with_transformers_checks(self):
        # On A100/H100/H200 the flash_attn stand-in is registered before MoGe's and DINO's
        # transformers models are built; transformers' availability checks call find_spec on it.
        # Run in a fresh interpreter: the imports are cached per process.
        script = (
            "import importlib.util\n"
            "from claimbench.adapters import sam3d\n"
            "sam3d._gpu_attention_backend = lambda: 'flash_attn'\n"
            "lib = sam3d._libs()\n"
            "assert 'flash_attn' in lib.standins, lib.standins\n"
            "from transformers import Dinov2Config, Dinov2Model\n"
            "Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,"
            " intermediate_size=64, image_size=28, patch_size=14))\n"
            "from transformers.utils import is_flash_attn_2_available\n"
            "print(is_flash_attn_2_available(), importlib.util.find_spec('flash_attn') is not None)\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, timeout=600)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        self.assertEqual(out.stdout.split()[-2:], ["False", "True"], out.stdout)

    def test_submanifold_conv_equals_dense_conv_at_active_sites(self):
        g = torch.Generator().manual_seed(0)
        occ = torch.rand(2, 7, 7, 7, generator=g) < 0.3
        coords = occ.nonzero().int()
        feats = torch.randn(coords.shape[0], 5, generator=g)
        conv = SubMConv3d(5, 4, 3, indice_key="k")
        torch.nn.init.normal_(conv.weight, generator=g)
        torch.nn.init.normal_(conv.bias, generator=g)
        x = SparseConvTensor(feats, coords, [7, 7, 7], 2)
        out = conv(x).features
        dense = torch.zeros(2, 5, 7, 7, 7)
        c = coords.long()
        dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = feats
        ref = F.conv3d(dense, conv.weight.permute(0, 4, 1, 2, 3), conv.bias, padding=1)
        torch.testing.assert_close(out, ref[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]], rtol=1e-4, atol=1e-4)
        self.assertIn(("k", 3), x.indice_dict)  # rulebook cached per indice_key
        with self.assertRaises(ValueError):
            x.features = feats

    def test_flash_attn_stand_in_matches_per_sequence_attention(self):
        g = torch.Generator().manual_seed(1)
        lens = [5, 9, 3]
        q, k, v = (torch.randn(sum(lens), 2, 8, generator=g).half() for _ in range(3))
        cu = torch.tensor([0, 5, 14, 17], dtype=torch.int32)
        out = sam3d.flash_attn_varlen_func(q, k, v, cu, cu, 9, 9).float()
        start = 0
        for n in lens:
            sl = slice(start, start + n)
            ref = F.scaled_dot_product_attention(*(t[sl].float().transpose(0, 1)[None] for t in (q, k, v)))
            torch.testing.assert_close(out[sl], ref[0].transpose(0, 1), rtol=2e-2, atol=2e-2)
            start += n
        with self.assertRaises(RuntimeError):
            sam3d.flash_attn_func(q[None].float(), k[None].float(), v[None].float())

    def test_pytorch3d_pieces(self):
        rot, t = look_at_view_transform(eye=[[0, 0, -1]], at=[[0, 0, 0]], up=[[0, -1, 0]])
        torch.testing.assert_close(rot[0], torch.diag(torch.tensor([-1.0, -1.0, 1.0])))
        torch.testing.assert_close(t[0], torch.tensor([0.0, 0.0, 1.0]))
        pts = torch.randn(10, 3)
        tf = Transform3d().scale(torch.tensor([[2.0, 3.0, 4.0]])).translate(torch.tensor([[1.0, 0.0, -1.0]]))
        torch.testing.assert_close(tf.transform_points(pts), pts * torch.tensor([2.0, 3.0, 4.0])
                                   + torch.tensor([1.0, 0.0, -1.0]))
        torch.testing.assert_close(tf.inverse().transform_points(tf.transform_points(pts)), pts,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(Transform3d().rotate(rot).transform_points(pts), pts @ rot[0])

    def test_shell_occupancy_survives_the_real_pruning(self):
        sam3d._libs()
        from sam3d_objects.pipeline.inference_utils import prune_sparse_structure

        occ = shell_occupancy(64, 20000)
        self.assertEqual(int(occ.sum()), 20000)
        coords = torch.cat([torch.zeros(20000, 1, dtype=torch.long), occ.nonzero()], 1)
        self.assertEqual(prune_sparse_structure(coords, 1).shape[0], 20000)


if __name__ == "__main__":
    unittest.main()
