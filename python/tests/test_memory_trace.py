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
free_completed,99,1048576,0,
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
        # 8 MiB still live, a 1 MiB block from before the trace freed, then 32 MiB.
        self.assertEqual(r.peak_allocated, 39 * MIB)
        self.assertEqual(r.peak_reserved, 60 * MIB)
        self.assertEqual(sorted(e.size for e in r.live_at_peak_allocated.values()), [8 * MIB, 32 * MIB])
        triggers = [(seg.size, t.frame) for _, seg, t, _ in r.segment_allocs]
        self.assertEqual(triggers, [(20 * MIB, "diffusers/a.py:10:f"), (40 * MIB, "diffusers/b.py:20:g")])
        top = memory_trace.largest(r.live_at_peak_allocated)
        self.assertEqual(top[0], ("diffusers/b.py:20:g", 32 * MIB, 1))

    def test_segments_held_at_the_end_give_what_earlier_calls_left_reserved(self):
        text = """action,address,bytes,stream,frame
segment_free,3000000,10485760,0,
alloc,100000000,8388608,0,diffusers/y.py:2:g
segment_alloc,1000,20971520,0,
alloc,1000,4194304,0,diffusers/x.py:1:f
segment_at_end,1000,20971520,0,
segment_at_end,100000000,67108864,0,
"""
        r = memory_trace.replay(self.load(text))
        # Held before: the 10 MiB segment the trace returns and the 64 MiB one it never made.
        self.assertEqual(r.reserved_before, 74 * MIB)
        self.assertEqual(r.peak_reserved, 10 * MIB)
        self.assertEqual(r.peak_reserved_at, 2)
        self.assertEqual(memory_trace.segments_at_peak(r), [
            (64 * MIB, True, 8 * MIB, "diffusers/y.py:2:g"),
            (20 * MIB, False, 0, ""),
        ])
        self.assertNotIn("segment_at_end", {e.action for e in r.events})
        self.assertIsNone(memory_trace.replay(self.load(TRACE)).reserved_before, "older traces have no end rows")
        # A call that returns every segment and ends holding none: the marker row says so.
        emptied = memory_trace.replay(self.load(
            "action,address,bytes\nsegment_free,3000000,10485760\ntrace_end,0,0\n"))
        self.assertEqual(emptied.reserved_before, 10 * MIB)
        self.assertEqual(emptied.peak_reserved_at, -1, "reserved never rose above its start")
        self.assertEqual(memory_trace.segments_at_peak(emptied), [(10 * MIB, True, 0, "")],
                         "at a peak that is the start, the segments held then")

    def test_releasing_a_block_from_before_the_trace_and_reallocating_it_adds_nothing(self):
        r = memory_trace.replay(self.load(
            "action,address,bytes\nfree_completed,7000,104857600\nalloc,7000,104857600\n"))
        self.assertEqual(r.peak_allocated, 0)

    def test_an_out_of_memory_row_is_reported_with_what_was_alive(self):
        import contextlib
        import io

        text = TRACE + "alloc,200000,1048576,0,diffusers/c.py:5:h\noom,2097152,1073741824,0,\n"
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(memory_trace.main([f.name]), 0)
        self.assertIn("out of memory at event 11: asked for 1024.0 MiB with 2.0 MiB free", out.getvalue())
        self.assertIn("diffusers/c.py:5:h", out.getvalue())

    def test_the_python_writer_handles_every_action_the_snapshot_gives(self):
        # torch's snapshot: an `oom` entry has `device_free` and no `addr`.
        from claimbench.worker import write_trace

        snapshot = {"device_traces": [[
            {"action": "segment_alloc", "addr": 4096, "size": 2 * MIB, "stream": 0},
            {"action": "alloc", "addr": 4096, "size": MIB, "stream": 0,
             "frames": [{"filename": "/x/torch/nn/functional.py", "line": 1, "name": "f"},
                        {"filename": "/s/site-packages/diffusers/a.py", "line": 7, "name": "g"}]},
            {"action": "oom", "device_free": 5, "size": 3 * MIB, "stream": 0},
        ]], "segments": [{"address": 4096, "total_size": 2 * MIB, "stream": 0, "blocks": []}]}
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            path = f.name
        self.addCleanup(os.unlink, path)
        write_trace(path, snapshot)
        events = memory_trace.load(path)
        self.assertEqual([(e.action, e.address, e.size) for e in events],
                         [("segment_alloc", 4096, 2 * MIB), ("alloc", 4096, MIB), ("oom", 5, 3 * MIB),
                          ("trace_end", 0, 1), ("segment_at_end", 4096, 2 * MIB)])
        self.assertEqual(memory_trace.replay(events).reserved_before, 0)
        self.assertEqual(events[1].frame, "diffusers/a.py:7:g")

    def test_the_traced_call_is_the_first_unless_an_index_is_given(self):
        from claimbench.worker import traced_call_index

        self.assertEqual(traced_call_index(None), 0)
        self.assertEqual(traced_call_index(" 3 "), 3)
        for bad in ("-1", "+3", "first", "", "²"):
            self.assertIsNone(traced_call_index(bad), bad)

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
        self.assertIn("peak allocated: 39.0 vs 23.0 MiB, 1.696×", out.getvalue())
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(memory_trace.main([paths[0], paths[0] + ".missing"]), 2)
        self.assertIn(".missing", err.getvalue())

if __name__ == "__main__":
    unittest.main()
