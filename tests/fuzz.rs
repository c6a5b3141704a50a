//! Bounded, seeded mutation fuzzing of the two untrusted inputs: manifests (loader and plan
//! expansion under every profile) and run records (`run.json` + `samples.csv`, then the report
//! built from them) and baselines. Runs on the stable toolchain, in process.
//!
//! Each execution mutates one shipped input (byte flips, insertions of tokens known to stress
//! parsers, deletions, duplications, splices with another input), feeds it to the reader and
//! requires: no panic, and an answer within a time limit. CI runs a short budget; run longer with
//!
//! ```sh
//! CLAIMBENCH_FUZZ_EXECS=10000000 CLAIMBENCH_FUZZ_SEED=7 scripts/test.sh --release --test fuzz -- --nocapture
//! ```
//!
//! (the record target runs a quarter as many unless `CLAIMBENCH_FUZZ_RECORD_EXECS` says how many;
//! it writes each mutant to a temporary folder, so `TMPDIR=/dev/shm` makes it several times
//! faster).
//!
//! A failure prints the seed and execution index, and writes the offending input next to the
//! system's temporary files, so it can be replayed.

use claimbench::manifest::{build_plan, Manifest, ProfileChoice};
use claimbench::store::baseline::Baseline;
use claimbench::store::StoredRun;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Slower than this for one input counts as a hang.
const TIME_LIMIT: Duration = Duration::from_secs(5);
/// Mutated inputs never grow past this, so memory stays bounded.
const MAX_LEN: usize = 256 * 1024;

const TOKENS: &[&str] = &[
    "nan",
    "inf",
    "-inf",
    "1e400",
    "-1",
    "0",
    "4294967295",
    "18446744073709551616",
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "\n",
    "\\",
    "\u{0}",
    "\u{1b}[31m",
    "é",
    "\n[[variant]]\nname = \"x\"\n",
    "\n[[claim]]\n",
    "\n[matrix]\n",
    "\n[profiles.p]\n",
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t",
    "true",
    "false",
    "..",
    "%",
    "GB",
    "ms",
    "null",
    "{\"format_version\":\"1.0\"}",
    "\"format_version\": \"2.0\"",
    "1.0",
    "NaN",
    "-0",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mutate(rng: &mut ChaCha8Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..out.len())
        };
        match rng.random_range(0..6) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            2 if !out.is_empty() => {
                let end = (at + rng.random_range(1..64)).min(out.len());
                out.drain(at..end);
            }
            3 if !out.is_empty() => {
                let end = (at + rng.random_range(1..256)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            4 if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                let end = (from + rng.random_range(1..512)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            _ => out.insert(at.min(out.len()), rng.random()),
        }
    }
    out.truncate(MAX_LEN);
    out
}

/// Runs `execs` mutations of `corpus` through `target` (which says whether the input was
/// accepted); panics with a replayable report. Also fails when fewer than 1 % of mutants are
/// accepted, which would leave the readers' later stages untested.
fn fuzz(name: &str, corpus: &[Vec<u8>], execs: u64, target: impl Fn(&[u8]) -> bool) {
    let seed = env_u64("CLAIMBENCH_FUZZ_SEED", 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();
    let mut accepted = 0u64;
    for i in 0..execs {
        let input = &corpus[rng.random_range(0..corpus.len())];
        let other = &corpus[rng.random_range(0..corpus.len())];
        let mutated = mutate(&mut rng, input, other);
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| target(&mutated)));
        let slow = t.elapsed() > TIME_LIMIT;
        accepted += u64::from(matches!(result, Ok(true)));
        if result.is_err() || slow {
            let path = std::env::temp_dir().join(format!("claimbench-fuzz-{name}-{seed}-{i}"));
            std::fs::write(&path, &mutated).unwrap();
            panic!(
                "{name}: {} on execution {i} (seed {seed}); input saved to {}",
                if slow { "too slow" } else { "panic" },
                path.display()
            );
        }
    }
    eprintln!(
        "{name}: {execs} executions, {accepted} accepted, in {:.1} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
    assert!(
        accepted * 100 >= execs,
        "{name}: only {accepted} of {execs} mutants were accepted"
    );
}

fn files(dirs: &[&str], ext: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in dirs {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == ext) {
                out.push(std::fs::read(path).unwrap());
            }
        }
    }
    assert!(!out.is_empty(), "no corpus in {dirs:?}");
    out
}

#[test]
fn manifest_loader_survives_mutated_manifests() {
    let corpus = files(
        &["scenarios", "tests/manifests", "examples/python-pipeline"],
        "toml",
    );
    let execs = env_u64("CLAIMBENCH_FUZZ_EXECS", 20_000);
    fuzz("manifest", &corpus, execs, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        let Ok(manifest) = Manifest::from_str(Path::new("fuzz.toml"), text) else {
            return false;
        };
        for profile in manifest.profiles() {
            let _ = build_plan(&manifest, ProfileChoice::Named(&profile));
        }
        build_plan(&manifest, ProfileChoice::Named("base")).is_ok()
    });
}

#[test]
fn record_and_baseline_readers_survive_mutated_files() {
    let run_dir = root().join("tests/data/run-1.0");
    let run_json = std::fs::read(run_dir.join("run.json")).unwrap();
    let samples = std::fs::read(run_dir.join("samples.csv")).unwrap();
    // A baseline made from the same record, as `baseline save` writes it.
    let stored = StoredRun::load(&run_dir).unwrap();
    let baselines = Baseline::from_run(&stored.record, &stored.samples);
    let baseline = serde_json::to_vec_pretty(&baselines[0]).unwrap();
    let corpus = vec![run_json, samples, baseline];

    let dir = tempfile::tempdir().unwrap();
    let names = ["run.json", "samples.csv", "baseline.json"];
    for (name, bytes) in names.iter().zip(&corpus) {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    // Which file holds a mutant now: only that one is restored before the next is written.
    let mutated = std::cell::Cell::new(None::<usize>);
    let execs = std::env::var("CLAIMBENCH_FUZZ_RECORD_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(env_u64("CLAIMBENCH_FUZZ_EXECS", 20_000) / 4);
    fuzz("record", &corpus, execs, |bytes| {
        // The mutant replaces the file it was made from (told by its content), the others
        // stay intact.
        let text = String::from_utf8_lossy(bytes);
        let which = if text.contains("\"suites\"") {
            0
        } else if text.contains("\"variants\"") {
            2
        } else {
            1
        };
        if let Some(previous) = mutated.get().filter(|&p| p != which) {
            std::fs::write(dir.path().join(names[previous]), &corpus[previous]).unwrap();
        }
        std::fs::write(dir.path().join(names[which]), bytes).unwrap();
        mutated.set(Some(which));
        // Only the reader of the mutated file is run: the others read what they read before.
        if which == 2 {
            return Baseline::load(&dir.path().join("baseline.json"))
                .map(|b| b.problems())
                .is_ok();
        }
        StoredRun::load(dir.path())
            .map(|stored| {
                let report = claimbench::report::model::Report::build(
                    &stored.record,
                    &stored.samples,
                    None,
                    None,
                    Vec::new(),
                );
                let _ = claimbench::report::markdown::render(&report);
            })
            .is_ok()
    });
}
