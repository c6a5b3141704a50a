"""The allocator-trace reader: peaks and segment growth replayed from a known trace."""

import os
import tempfile
import unittest

from claimbench import memory_trace

MIB = 1 << 20

TRACE = """action,address,bytes,stream,frame
segment_alloc,1000,20971520,0,
alloc,1000,4194304,0,diffusers/a.py:10:f
alloc,5000,8388608,0,diffusers/a.py:11:f
free_requested,1000,4194304,0,
free_completed,1000,4194304,0,
free_completed,99,123,0,
segment_alloc,90000,41943040,0,
alloc,90000,33554432,0,diffusers/b.py:20:g
free_completed,5000,8388608,0,
segment_free,1000,20971520,0,
"""


class MemoryTraceTest(unittest.TestCase):
    def load(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return memory_trace.load(f.name)

    def test_replay_finds_the_peaks_and_what_each_segment_was_reserved_for(self):
        r = memory_trace.replay(self.load(TRACE))
        # 8 MiB still live + 32 MiB; the free of a block from before the trace is ignored.
        self.assertEqual(r.peak_allocated, 40 * MIB)
        self.assertEqual(r.peak_reserved, 60 * MIB)
        self.assertEqual(sorted(e.size for e in r.live_at_peak_allocated.values()), [8 * MIB, 32 * MIB])
        triggers = [(seg.size, t.frame) for _, seg, t, _ in r.segment_allocs]
        self.assertEqual(triggers, [(20 * MIB, "diffusers/a.py:10:f"), (40 * MIB, "diffusers/b.py:20:g")])
        top = memory_trace.largest(r.live_at_peak_allocated)
        self.assertEqual(top[0], ("diffusers/b.py:20:g", 32 * MIB, 1))

    def test_a_malformed_row_names_the_file_and_line(self):
        with self.assertRaisesRegex(ValueError, r"\.csv: line 3: "):
            self.load("action,address,bytes\nalloc,1,2\nalloc,x,2\n")

    def test_compare_prints_the_ratio_of_the_peaks_and_a_bad_file_exits_2(self):
        import contextlib
        import io

        paths = []
        for text in (TRACE, TRACE.replace("33554432", "16777216")):
            with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
                f.write(text)
            self.addCleanup(os.unlink, f.name)
            paths.append(f.name)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(memory_trace.main(paths), 0)
        self.assertIn("peak allocated: 40.0 vs 24.0 MiB, 1.667×", out.getvalue())
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(memory_trace.main([paths[0], paths[0] + ".missing"]), 2)
        self.assertIn(".missing", err.getvalue())

if __name__ == "__main__":
    unittest.main()
