//! Inputs far larger than real ones: loading and reporting them must stay near-linear, so a big
//! manifest or record answers in seconds rather than appearing to hang.

mod common;

use claimbench::manifest::{build_plan, describe_plan, Manifest, ProfileChoice};
use common::Sandbox;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// A `sleep` suite of four variants with `claims` change claims between neighbouring variants.
fn manifest_with_claims(claims: usize) -> String {
    let variants = ["a", "b", "c", "d"];
    let mut text = String::from("[suite]\nname = \"many\"\nworkload = \"sleep\"\n\n");
    for v in variants {
        writeln!(text, "[[variant]]\nname = \"{v}\"\n").unwrap();
    }
    for i in 0..claims {
        writeln!(
            text,
            "[[claim]]\nid = \"C-{i:05}\"\nsource = \"generated\"\nsummary = \"claim {i}\"\n\
             change = \"-10%..10%\"\nbaseline = \"{}\"\ncandidate = \"{}\"\n",
            variants[i % 4],
            variants[(i + 1) % 4]
        )
        .unwrap();
    }
    text
}

/// What `check` does with a manifest: load, plan, describe. The fastest of `tries`.
fn check_time(text: &str, tries: usize) -> Duration {
    (0..tries)
        .map(|_| {
            let start = Instant::now();
            let manifest = Manifest::from_str(Path::new("many.toml"), text).unwrap();
            let plan = build_plan(&manifest, ProfileChoice::Named("base")).unwrap();
            assert!(!describe_plan(&plan).is_empty());
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// 20,000 claims once took 39 s to load: each claim's line was found by counting the newlines
/// before it. Four times the claims must now take about four times as long, not sixteen.
#[test]
fn loading_many_claims_is_near_linear() {
    let small = manifest_with_claims(5_000);
    let large = manifest_with_claims(20_000);
    check_time(&small, 1); // warm the allocator and caches
    let small_time = check_time(&small, 3);
    let large_time = check_time(&large, 2);
    let ratio = large_time.as_secs_f64() / small_time.as_secs_f64();
    eprintln!("5,000 claims: {small_time:?}; 20,000 claims: {large_time:?}; ratio {ratio:.1}");
    assert!(
        ratio < 8.0,
        "4x the claims took {ratio:.1}x as long ({small_time:?} → {large_time:?}): not linear"
    );
    assert!(
        large_time < Duration::from_secs(15),
        "20,000 claims took {large_time:?} to load"
    );
}

/// The command itself, on the same 20,000 claims: answers with exit 0 well inside the bound
/// (the quadratic loader took over a minute in a debug build).
#[test]
fn check_of_twenty_thousand_claims_answers_in_seconds() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("many.toml", &manifest_with_claims(20_000));
    let start = Instant::now();
    let output = sb.cmd().args(["check", &manifest]).output().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("C-19999"));
    assert!(
        elapsed < Duration::from_secs(20),
        "check of 20,000 claims took {elapsed:?}"
    );
}
