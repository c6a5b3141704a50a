"""``fast_build`` on the CPU: the device storage is allocated in the target dtype (never an fp32
copy that a cast then frees into the allocator's cache), parameters are initialised by the
documented rule, and buffers computed at construction survive.

Run from ``python/``: ``OMP_NUM_THREADS=1 python -m unittest tests.test_build -v``.
"""

from __future__ import annotations

import unittest
from typing import List

import torch
from torch import nn

from claimbench.build import fast_build


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 32)
        self.norm = nn.LayerNorm(32)
        self.register_buffer("positions", torch.arange(8, dtype=torch.float32))


class FastBuildTest(unittest.TestCase):
    def test_storage_is_allocated_in_the_target_dtype(self) -> None:
        seen: List[torch.dtype] = []
        original = nn.Module.to_empty

        def recording(module, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.extend(p.dtype for p in module.parameters())
            return original(module, *args, **kwargs)

        nn.Module.to_empty = recording  # type: ignore[assignment]
        try:
            model = fast_build(Net, torch.device("cpu"), torch.float16, seed=0)
        finally:
            nn.Module.to_empty = original  # type: ignore[assignment]
        self.assertTrue(seen, "to_empty allocated the storage")
        self.assertEqual(set(seen), {torch.float16}, "no fp32 storage is allocated and cast")
        self.assertTrue(all(p.dtype == torch.float16 for p in model.parameters()))

    def test_parameters_follow_the_rule_and_buffers_survive(self) -> None:
        model = fast_build(Net, torch.device("cpu"), torch.float32, seed=0)
        self.assertTrue(torch.equal(model.norm.weight, torch.ones(32)))
        self.assertTrue(torch.equal(model.linear.bias, torch.zeros(32)))
        std = model.linear.weight.std().item()
        self.assertAlmostEqual(std, 1 / 64 ** 0.5, delta=0.03)
        self.assertTrue(torch.equal(model.positions, torch.arange(8, dtype=torch.float32)))
        self.assertFalse(model.training)


if __name__ == "__main__":
    unittest.main()
