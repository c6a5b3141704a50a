//! Report tests on a fixed, constructed run: golden files for Markdown and JUnit, JUnit read
//! back with an independent parser, the HTML checked for its plots and escaping (the HTML in
//! a real browser is `tests/report_html.rs`).
//!
//! Golden files live in `tests/golden/`; after an intended change, regenerate them with
//! `CLAIMBENCH_BLESS=1 cargo test --lib report::tests` and review the diff.

use super::model::{trends, Report};
use crate::manifest::{build_plan, Manifest, ProfileChoice};
use crate::measure::nvml::GpuInfo;
use crate::measure::{Measurement, StageTime};
use crate::store::baseline::Baseline;
use crate::store::{Fingerprint, OomInfo, ProcessRecord, RunRecord, SampleRow, SuiteRecord};
use crate::verdict::gate::gate;
use crate::worker::protocol::Status;
use std::path::{Path, PathBuf};

const GIB: u64 = 1 << 30;

const MANIFEST: &str = r#"
[suite]
name = "texture"
description = "Texture stage <with> \"markup\" & ampersands"
workload = "sleep"

[run]
processes = 6
repetitions = 3

[[variant]]
name = "cudnn-on"

[[variant]]
name = "cudnn-off"
knobs = { cudnn.enabled = false }

[[variant]]
name = "fp16"
knobs = { dtype = "fp16", vram_budget_gib = 8 }

[[variant]]
name = "full-size"
knobs = { vram_budget_gib = 8 }

[[claim]]
id = "H0-01"
source = "H0, cuDNN section"
summary = "enabling cuDNN is 30–40 % faster <script>alert('x')</script>"
change = "-40%..-25%"
baseline = "cudnn-off"
candidate = "cudnn-on"

[[claim]]
id = "H0-06"
source = "H0, option 4"
summary = "fp16 with cuDNN is 40–50 % faster"
change = "-50%..-40%"
baseline = "cudnn-off"
candidate = "fp16"

[[claim]]
id = "H0-02"
source = "H0, memory table"
summary = "cuDNN costs ~0.3 GB more peak memory"
metric = "peak_reserved_bytes"
difference = "0.3GiB ± 0.1GiB"
baseline = "cudnn-off"
candidate = "cudnn-on"

[[claim]]
id = "H1-06"
source = "H1, baseline scenario"
summary = "the full-size configuration does not fit 8 GB"
fit = false
variant = "full-size"

[[claim]]
id = "H1-05"
source = "H1, scenario table"
summary = "fp16 < cuDNN on < cuDNN off in time"
order = "fp16 < cudnn-on < cudnn-off"

[[claim]]
id = "U4-02"
source = "U4, THG"
summary = "67 UNet evaluations"
metric = "count_unet_evals"
bound = "67"
variant = "fp16"

[[claim]]
id = "H0-07"
source = "H0, option 5"
summary = "fp16 fits an 8 GB card"
fit = true
variant = "fp16"

[[claim]]
id = "H0-12"
source = "H0, compile"
summary = "torch.compile halves the time"
applicable = false
reason = "torch.compile cannot act under libtorch"
"#;

/// Wall time of call `c` of process `p` around `center`, with small deterministic spread.
fn wall(center: f64, p: u32, c: u32) -> f64 {
    center * (1.0 + 0.004 * f64::from(p) + 0.0015 * f64::from((c * 7) % 3))
}

fn row(variant: &str, p: u32, c: u32, ms: f64, reserved: u64, flags: &[&str]) -> SampleRow {
    SampleRow {
        suite: "texture".into(),
        variant: variant.into(),
        process: p,
        call: c,
        warmup: false,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        measurement: Measurement {
            wall_ms: ms,
            gpu_ms: Some(ms * 0.97),
            stages: vec![
                StageTime {
                    name: "unet".into(),
                    wall_ms: ms * 0.7,
                },
                StageTime {
                    name: "vae".into(),
                    wall_ms: ms * 0.3,
                },
            ],
            counters: [("unet_evals".to_string(), 67)].into_iter().collect(),
            peak_allocated_bytes: Some(reserved - GIB / 4),
            peak_reserved_bytes: Some(reserved),
            allocated_at_start_bytes: Some(reserved / 2),
            telemetry: None,
            host_peak_rss_bytes: Some(1 << 30),
        },
    }
}

fn process(variant: &str, p: u32, status: Status) -> ProcessRecord {
    ProcessRecord {
        variant: variant.into(),
        process: p,
        status,
        message: None,
        oom: (status == Status::Oom).then_some(OomInfo {
            requested_bytes: Some(2 * GIB),
            allocated_bytes: Some(7 * GIB),
            reserved_bytes: Some(15 * GIB / 2),
            budget_bytes: Some(8 * GIB),
            completed_calls: 0,
        }),
        exit_code: Some(0),
        signal: None,
        duration_ms: 1000.0,
        samples: if status == Status::Ok { 3 } else { 0 },
        hello: None,
        warmup_calls: Some(3),
        warmup_settled: Some(true),
        stop: None,
        warnings: Vec::new(),
        log_file: format!("logs/{variant}-{p}.log"),
        placement: None,
    }
}

/// A run of the manifest above with `scale` applied to `cudnn-on`'s times.
fn run(id: &str, scale: f64) -> (RunRecord, Vec<SampleRow>) {
    let manifest = Manifest::from_str(Path::new("scenarios/texture.toml"), MANIFEST).unwrap();
    let plan = build_plan(&manifest, ProfileChoice::Named("base")).unwrap();
    let variants: [(&str, f64, u64, Status); 4] = [
        (
            "cudnn-on",
            100.0 * scale,
            7 * GIB + GIB * 3 / 10,
            Status::Ok,
        ),
        ("cudnn-off", 140.0, 7 * GIB, Status::Ok),
        ("fp16", 75.0, 5 * GIB, Status::Ok),
        ("full-size", 0.0, 0, Status::Oom),
    ];
    let mut processes = Vec::new();
    let mut samples = Vec::new();
    for p in 0..6 {
        for (name, center, reserved, status) in variants {
            processes.push(process(name, p, status));
            if status != Status::Ok {
                continue;
            }
            for c in 0..3 {
                // Two throttled calls in cudnn-off, to exercise the sample-quality section.
                let flags: &[&str] = if name == "cudnn-off" && p == 1 && c < 2 {
                    &["throttled"]
                } else {
                    &[]
                };
                samples.push(row(name, p, c, wall(center, p, c), reserved, flags));
            }
        }
    }
    let record = RunRecord {
        format_version: crate::store::FORMAT_VERSION.into(),
        id: id.into(),
        fingerprint: Fingerprint {
            device: Some("cuda:0".into()),
            gpu: Some(GpuInfo {
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-00000000".into(),
                driver_version: "580.00".into(),
                cuda_driver_version: "13.0".into(),
                memory_total_bytes: 80 * GIB,
                sm_clock_max_mhz: 1980,
            }),
            torch_version: Some("2.11.0".into()),
            cudnn_version: Some(91900),
            cuda_runtime_version: Some(13000),
            harness_version: "0.1.0".into(),
            git_commit: "0123456789ab".into(),
            host: "testhost".into(),
            os: "linux x86_64".into(),
            started_at: "2025-01-02T03:04:05+00:00".into(),
        },
        command: vec!["claimbench".into(), "run".into()],
        finished_at: Some("2025-01-02T03:14:05+00:00".into()),
        interrupted: false,
        interrupted_by: None,
        suites: vec![SuiteRecord {
            plan,
            manifest_file: "manifests/texture.toml".into(),
            processes,
            adaptive: None,
        }],
        shard: None,
        merged_from: None,
    };
    (record, samples)
}

/// The report of the fixed run, compared with a baseline in which `cudnn-on` was 20 % faster,
/// with two earlier runs for the trend plot.
fn fixture() -> Report {
    let (base_run, base_samples) = run("20250101T030405Z-nvidia-h100-testhost", 1.0 / 1.2);
    let (current, samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    let baselines = Baseline::from_run(&base_run, &base_samples);
    let with = gate(&current, &samples, &baselines, Vec::new(), false);
    let unflagged: Vec<SampleRow> = samples
        .iter()
        .filter(|s| s.flags.is_empty())
        .cloned()
        .collect();
    let without = gate(&current, &unflagged, &baselines, Vec::new(), false);
    let (older, older_samples) = run("20241231T030405Z-nvidia-h100-testhost", 1.1);
    let history = [
        (&older, &older_samples),
        (&base_run, &base_samples),
        (&current, &samples),
    ]
    .map(|(r, s)| super::model::RunMedians {
        run: r.id.clone(),
        started_at: r.fingerprint.started_at.clone(),
        medians: super::model::run_medians(r, s),
    });
    Report::build(
        &current,
        &samples,
        Some(with),
        Some(&without),
        trends(&current, &history),
    )
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with the golden file, or rewrites it with `CLAIMBENCH_BLESS=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("CLAIMBENCH_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with CLAIMBENCH_BLESS=1", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n  expected: {:?}\n  actual:   {:?}\n(run with CLAIMBENCH_BLESS=1 to accept)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn verdicts_of_the_fixture() {
    let report = fixture();
    let verdict = |id: &str| {
        report
            .claims
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no claim {id}"))
            .verdict
            .name()
    };
    // cudnn-on vs off: 100 / 140 − 1 = −28.6 %.
    assert_eq!(verdict("H0-01"), "confirmed");
    // fp16 vs off: 75 / 140 − 1 = −46 %: within −50..−40 %.
    assert_eq!(verdict("H0-06"), "confirmed");
    assert_eq!(verdict("H0-02"), "confirmed");
    assert_eq!(verdict("H1-06"), "confirmed");
    assert_eq!(verdict("H1-05"), "confirmed");
    assert_eq!(verdict("U4-02"), "confirmed");
    assert_eq!(verdict("H0-07"), "confirmed");
    assert_eq!(verdict("H0-12"), "not applicable");
    assert_eq!(
        report.regressions(),
        1,
        "cudnn-on is 20 % slower than its baseline"
    );
    assert_eq!(report.exit_code(), crate::exit_code::REGRESSION);
    assert_eq!(report.quality.flagged, 2);
    assert_eq!(report.trends.len(), 3);
}

#[test]
fn markdown_matches_the_golden_file() {
    let md = super::markdown::render(&fixture());
    assert!(md.starts_with("## claimbench: 1 regression; 8 claims: 7 confirmed, 1 not applicable"));
    let regressions = md.find("### Regressions").unwrap();
    let claims = md.find("### Claims").unwrap();
    let variants = md.find("### Variants").unwrap();
    assert!(
        regressions < claims && claims < variants,
        "order of sections"
    );
    assert!(!md.contains("<script>"), "manifest text is escaped");
    check_golden("report.md", &md);
}

#[test]
fn junit_matches_the_golden_file_and_parses_back() {
    let xml = super::junit::render(&fixture()).unwrap();
    check_golden("junit.xml", &xml);
    let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    let names: Vec<&str> = parsed.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "texture workers",
            "texture claims",
            "texture regression gate"
        ]
    );
    let workers = &parsed.suites[0];
    assert_eq!(workers.failures, 0, "out of memory is a measurement");
    assert_eq!(workers.tests, fixture().suites[0].workers.len() as u64);
    let claims = &parsed.suites[1];
    assert_eq!((claims.tests, claims.failures, claims.skipped), (8, 0, 1));
    let gate = &parsed.suites[2];
    assert_eq!(gate.name, "texture regression gate");
    assert_eq!(gate.failures, 1);
    let failed: Vec<&str> = gate
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .map(|c| c.original_name.as_str())
        .collect();
    assert_eq!(failed, ["cudnn-on wall_ms"]);
    let failure = gate
        .cases
        .iter()
        .find(|c| c.status.is_failure())
        .unwrap()
        .status
        .failure_as_ref();
    assert!(
        failure.message.starts_with("regression: slower"),
        "{}",
        failure.message
    );
    let na = claims
        .cases
        .iter()
        .find(|c| c.original_name.starts_with("H0-12"))
        .unwrap();
    assert!(na.status.is_skipped());
    assert_eq!(
        na.properties.hashmap.get("verdict").map(String::as_str),
        Some("not applicable")
    );
}

#[test]
fn refuted_claims_are_junit_failures() {
    let mut report = fixture();
    report.gate = None;
    report.claims[1].verdict = crate::verdict::claims::ClaimVerdictKind::Refuted;
    // Refuted at 95 % but not at the family-wise level: shown, skipped, exit 0.
    report.claims[1].fails_ci = false;
    let xml = super::junit::render(&report).unwrap();
    let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    assert_eq!(parsed.suites[1].failures, 0);
    assert_ne!(report.exit_code(), crate::exit_code::REGRESSION);
    report.claims[1].fails_ci = true;
    let xml = super::junit::render(&report).unwrap();
    let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    assert_eq!(parsed.suites.len(), 2);
    assert_eq!(parsed.suites[1].failures, 1);
    assert_eq!(report.exit_code(), crate::exit_code::REGRESSION);
}

#[test]
fn failed_workers_are_junit_failures_and_set_the_exit_code() {
    let mut report = fixture();
    report.gate = None;
    for c in &mut report.claims {
        c.verdict = crate::verdict::claims::ClaimVerdictKind::Confirmed;
    }
    assert_eq!(report.exit_code(), crate::exit_code::OK);
    let crashed = &mut report.suites[0].workers[0];
    crashed.status = "crashed".into();
    crashed.message = Some("worker crashed (SIGABRT); log tail: boom".into());
    crashed.failed = true;
    let stopped = &mut report.suites[0].workers[1];
    stopped.status = "interrupted".into();
    assert_eq!(report.failed_workers(), 1);
    assert_eq!(report.exit_code(), crate::exit_code::WORKER_FAILURES);
    let xml = super::junit::render(&report).unwrap();
    let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    let workers = &parsed.suites[0];
    assert_eq!((workers.failures, workers.skipped), (1, 1));
    let failure = workers
        .cases
        .iter()
        .find(|c| c.status.is_failure())
        .unwrap();
    assert!(
        failure
            .status
            .failure_as_ref()
            .message
            .ends_with("log tail: boom"),
        "{xml}"
    );
}

#[test]
fn a_run_without_workers_still_has_a_junit_case() {
    let mut report = fixture();
    report.gate = None;
    report.claims.clear();
    for s in &mut report.suites {
        s.workers.clear();
    }
    let xml = super::junit::render(&report).unwrap();
    let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    assert_eq!(parsed.suites.len(), 1);
    assert_eq!((parsed.suites[0].tests, parsed.suites[0].skipped), (1, 1));
}

/// Tags open and closed in order, void elements and self-closing tags aside; comments and the
/// doctype skipped. Enough to catch a broken template or an unescaped `<`.
fn check_balanced(html: &str) -> Result<(), String> {
    const VOID: &[&str] = &["meta", "br", "!DOCTYPE"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').ok_or_else(|| {
            format!(
                "unclosed `<` near {:?}",
                &rest[start..(start + 40).min(rest.len())]
            )
        })?;
        let tag = &rest[start + 1..start + end];
        rest = &rest[start + end + 1..];
        if tag.starts_with("!--") || tag.starts_with('?') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        if VOID.contains(&name.as_str()) || tag.ends_with('/') {
            continue;
        }
        if tag.starts_with('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("`</{name}>` closes {other:?}")),
            }
        } else {
            stack.push(name);
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed tags: {stack:?}"))
    }
}

#[test]
fn html_has_every_plot_and_escapes_manifest_text() {
    let html = super::html::render(&fixture());
    if let Some(dir) = std::env::var_os("CLAIMBENCH_SCREENSHOT_DIR") {
        std::fs::write(Path::new(&dir).join("fixture.html"), &html).unwrap();
    }
    check_balanced(&html).unwrap();
    for id in [
        "plot-distribution-texture",
        "plot-stages-texture",
        "plot-memory-texture",
        "plot-trend-texture",
        "plot-claim-0",
    ] {
        let at = html
            .find(&format!("id=\"{id}\"><svg"))
            .unwrap_or_else(|| panic!("no plot {id}"));
        let end = html[at..].find("</figure>").unwrap();
        assert!(html[at..at + end].trim_end().ends_with("</svg>"), "{id}");
    }
    // One interval plot per claim with an interval (not the OOM fit, the order, the n/a).
    assert_eq!(html.matches("id=\"plot-claim-").count(), 5);
    assert_eq!(html.matches("<svg").count(), 9);
    assert!(
        !html.contains("<script"),
        "no script, and manifest text escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("Texture stage &lt;with&gt; &quot;markup&quot; &amp; ampersands"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external resources"
    );
    // Plots carry data: variant names and budget lines are drawn.
    assert!(html.contains("\ncudnn-off\n</text>"));
    assert!(html.contains("8.0 GiB"));
}

#[test]
fn exports_for_history_services() {
    let report = fixture();
    let bmf = super::export::bmf(&report);
    let on = &bmf["texture/cudnn-on"];
    let latency = on["latency"]["value"].as_f64().unwrap();
    assert!((latency - 100.4e6).abs() < 1e6, "{latency}");
    assert!(on["latency"]["lower_value"].as_f64().unwrap() <= latency);
    assert!(on["peak-reserved-bytes"]["value"].as_f64().unwrap() > 7.0 * GIB as f64);
    assert!(
        bmf.get("texture/full-size").is_none(),
        "no point for a variant that never ran"
    );
    let gab = super::export::github_benchmark(&report);
    let entries = gab.as_array().unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[0]["name"], "texture/cudnn-on wall");
    assert_eq!(entries[0]["unit"], "ms");
    let json = super::render(&report, super::Format::Json).unwrap();
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back["claims"].as_array().unwrap().len(), 8);
    assert_eq!(back["format_version"], "1.0");
}

#[test]
fn verdicts_that_depend_on_flagged_samples_are_listed() {
    let (current, mut samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    // Half of cudnn-on's processes ran throttled at twice the time.
    for s in samples
        .iter_mut()
        .filter(|s| s.variant == "cudnn-on" && s.process < 3)
    {
        s.measurement.wall_ms *= 2.0;
        s.flags = vec!["throttled".into()];
    }
    let report = Report::build(&current, &samples, None, None, Vec::new());
    let h0_01 = report.claims.iter().find(|c| c.id == "H0-01").unwrap();
    assert_ne!(h0_01.verdict.name(), "confirmed");
    assert_eq!(h0_01.without_flagged.map(|v| v.name()), Some("confirmed"));
    assert_eq!(h0_01.flagged_samples, 9 + 2);
    assert!(report
        .quality
        .claims_changed
        .iter()
        .any(|c| c.what == "texture H0-01" && c.without_flagged == "confirmed"));
    let md = super::markdown::render(&report);
    assert!(md.contains("- texture H0-01: "), "{md}");
    assert!(md.contains("confirmed without flagged samples"));
}

#[test]
fn not_applicable_claims_fold_into_one_line_per_reason() {
    use crate::verdict::claims::ClaimVerdictKind;
    let mut claims = fixture().claims;
    assert!(claims.len() >= 4);
    for (c, reason) in claims.iter_mut().zip(["no GPU", "no GPU", "no budget"]) {
        c.verdict = ClaimVerdictKind::NotApplicable;
        c.reason = reason.into();
    }
    let table = super::terminal::claims_table(&claims);
    let folded: Vec<&str> = table.lines().filter(|l| l.contains("claim(s):")).collect();
    let mut reasons: Vec<&str> = claims
        .iter()
        .filter(|c| c.verdict == ClaimVerdictKind::NotApplicable)
        .map(|c| c.reason.as_str())
        .collect();
    reasons.dedup();
    assert_eq!(folded.len(), reasons.len(), "{table}");
    assert!(folded[0].ends_with("2 claim(s): no GPU"), "{table}");
    assert!(folded[1].ends_with("1 claim(s): no budget"), "{table}");
    let listed = format!(
        "{} ({}), {} ({})",
        claims[0].id, claims[0].suite, claims[1].id, claims[1].suite
    );
    assert!(table.contains(&listed), "{table}");
    // The judged claims keep their three lines.
    assert_eq!(
        table.lines().filter(|l| l.contains("measured ")).count(),
        claims.len()
            - claims
                .iter()
                .filter(|c| c.verdict == ClaimVerdictKind::NotApplicable)
                .count(),
        "{table}"
    );
}

#[test]
fn markdown_fits_a_pr_comment_and_says_what_it_left_out() {
    let mut report = fixture();
    let full = super::markdown::render(&report);
    assert!(!full.contains("left out to fit"), "{full}");
    // Many claims and comparisons: far beyond the limit.
    let claims = report.claims.clone();
    let entries = report.gate.as_ref().unwrap().entries.clone();
    for i in 0..400 {
        report.claims.extend(claims.iter().cloned().map(|mut c| {
            c.id = format!("{}-{i}", c.id);
            c
        }));
        report
            .gate
            .as_mut()
            .unwrap()
            .entries
            .extend(entries.iter().cloned());
    }
    let limit = 20_000;
    let text = super::markdown::render_within(&report, limit);
    assert!(text.len() <= limit, "{} bytes", text.len());
    assert!(text.starts_with("## claimbench: "));
    assert!(text.contains("### Regressions") && text.contains("| ❌ regression |"));
    assert!(text.contains("### Variants") && text.contains("### Sample quality"));
    assert!(text.contains("more row(s) left out to fit a comment"));
    assert!(
        text.trim_end().ends_with("</details>"),
        "the details block is closed"
    );
    let full = super::markdown::render(&report);
    assert!(full.len() <= super::markdown::COMMENT_LIMIT);
}

#[test]
fn trend_lines_only_join_runs_on_the_same_hardware() {
    use crate::store::StoredRun;
    let (older, older_samples) = run("20241231T030405Z-nvidia-h100-testhost", 1.1);
    let (mut cpu, cpu_samples) = run("20250101T030405Z-cpu-testhost", 30.0);
    cpu.fingerprint.gpu = None;
    cpu.fingerprint.device = Some("cpu".into());
    let (current, samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    let stored = |record: RunRecord, samples: Vec<SampleRow>| StoredRun {
        dir: PathBuf::from(&record.id),
        record,
        samples,
    };
    let earlier = [stored(older, older_samples), stored(cpu, cpu_samples)];
    let runs = super::trend_runs(&current, &samples, &earlier);
    let ids: Vec<&str> = runs.iter().map(|r| r.run.as_str()).collect();
    assert_eq!(
        ids,
        [
            "20241231T030405Z-nvidia-h100-testhost",
            "20250102T030405Z-nvidia-h100-testhost"
        ]
    );
}

/// A run that measured a variant with other parameters (a profile's smaller sizes, an edited
/// manifest) measured another quantity: its point does not join that variant's line.
#[test]
fn trend_lines_only_join_runs_of_the_same_configuration() {
    let (mut older, older_samples) = run("20241231T030405Z-nvidia-h100-testhost", 1.1);
    let (current, samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    let changed = older.suites[0]
        .plan
        .variants
        .iter_mut()
        .find(|v| v.name == "cudnn-on")
        .unwrap();
    changed
        .params
        .insert("resolution".into(), crate::plan::ParamValue::Int(256));
    let history =
        [(&older, &older_samples), (&current, &samples)].map(|(r, s)| super::model::RunMedians {
            run: r.id.clone(),
            started_at: r.fingerprint.started_at.clone(),
            medians: super::model::run_medians(r, s),
        });
    let series = trends(&current, &history);
    let points = |variant: &str| {
        series
            .iter()
            .find(|t| t.variant == variant)
            .map_or(0, |t| t.points.len())
    };
    assert_eq!(points("cudnn-on"), 0, "one point left: no line");
    assert_eq!(points("cudnn-off"), 2);
}

#[test]
fn a_refuted_time_claim_fails_ci_only_at_the_family_wise_level() {
    use crate::verdict::claims::{evaluate, ClaimVerdictKind};
    // cudnn-on's processes scattered by up to ±6 %, so that intervals have width.
    let h0_01 = |scale: f64| {
        let (record, mut samples) = run("20250102T030405Z-nvidia-h100-testhost", scale);
        for s in samples.iter_mut().filter(|s| s.variant == "cudnn-on") {
            let spread = 0.06 * (f64::from((s.process * 5) % 6) - 2.5) / 2.5;
            s.measurement.wall_ms *= 1.0 + spread;
        }
        evaluate(&record, &samples)
            .into_iter()
            .find(|c| c.id == "H0-01")
            .unwrap()
    };
    let far = h0_01(0.5);
    assert_eq!(far.verdict, ClaimVerdictKind::Refuted);
    assert!(far.fails_ci, "{:?}", far.family_wise);
    assert!(far
        .family_wise
        .as_deref()
        .unwrap()
        .starts_with("also refuted"));
    // Somewhere just outside the claimed −40..−25 %, the 95 % interval excludes the range but
    // the family-wise one does not.
    let marginal = (0..60)
        .map(|i| h0_01(1.0 + 0.005 * f64::from(i)))
        .find(|c| c.verdict == ClaimVerdictKind::Refuted && !c.fails_ci)
        .expect("a marginal refutation between −29 % and −8 %");
    let note = marginal.family_wise.unwrap();
    assert!(note.contains("does not fail CI"), "{note}");
    assert!(note.contains("Bonferroni over 3 time claims"), "{note}");
    // Memory claims are bands: refuted means failing.
    let memory = evaluate(&run("r", 1.0).0, &run("r", 1.0).1)
        .into_iter()
        .find(|c| c.id == "H0-02")
        .unwrap();
    assert_eq!(memory.fails_ci, memory.verdict == ClaimVerdictKind::Refuted);
}

/// A process that ran 1.4× slower with a slower host CPU probe is read as host-side; one that
/// ran 1.3× slower with a normal probe is not; one without a probe says so; the rest are not
/// listed.
#[test]
fn slow_processes_are_listed_with_what_their_host_did() {
    use super::slow::{slow_processes, SlowCause};
    use crate::measure::host::HostUsage;
    use crate::store::StopInfo;
    let (mut record, mut samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    for s in samples.iter_mut() {
        if s.variant == "cudnn-off" && s.process == 2 {
            s.measurement.wall_ms *= 1.4;
        }
        if (s.variant == "fp16" && s.process == 3) || (s.variant == "cudnn-on" && s.process == 4) {
            s.measurement.wall_ms *= 1.3;
        }
    }
    for p in record.suites[0].processes.iter_mut() {
        let probe = if p.variant == "cudnn-off" && p.process == 2 {
            0.65
        } else {
            0.5
        };
        if p.variant == "cudnn-on" && p.process == 4 {
            continue; // a record written before probes: no host usage
        }
        p.stop = Some(StopInfo {
            reason: "fixed".into(),
            relative_ci: None,
            host: Some(HostUsage {
                user_ms: 10.0,
                system_ms: 1.0,
                voluntary_switches: 3,
                involuntary_switches: 7,
                allowed_cpus: "0-15".into(),
                last_cpu: Some(3),
                cpu_probe_ms: Some(probe),
            }),
        });
    }
    let rows = slow_processes(&record, &samples);
    let found: Vec<(&str, u32, SlowCause)> = rows
        .iter()
        .map(|r| (r.variant.as_str(), r.process, r.cause))
        .collect();
    assert_eq!(
        found,
        vec![
            ("cudnn-on", 4, SlowCause::Unknown),
            ("cudnn-off", 2, SlowCause::HostCpu),
            ("fp16", 3, SlowCause::NotHostSpeed),
        ]
    );
    let host_slow = &rows[1];
    // Process medians: 1.4 × (1 + 0.004·2 + 0.0015) against (1 + 0.0015) for process 0.
    let expected = 1.4 * 1.0095 / 1.0015;
    assert!(
        (host_slow.time_ratio - expected).abs() < 1e-9,
        "{host_slow:?}"
    );
    assert!((host_slow.probe_ratio.unwrap() - 1.3).abs() < 1e-9);
    assert_eq!(rows[0].probe_ratio, None);

    let report = Report::build(&record, &samples, None, None, Vec::new());
    assert_eq!(report.slow_processes, rows);
    let md = super::markdown::render(&report);
    assert!(md.contains("### Slow processes"), "{md}");
    assert!(
        md.contains("| texture/cudnn-off | 2 | 1.41× | 1.30× | 7 | host CPU ran slower |"),
        "{md}"
    );
    let html = super::html::render(&report);
    assert!(html.contains("<td>host CPU at usual speed</td>"));
    let term = super::slow::terminal(&report.slow_processes);
    assert!(term.contains("no host CPU probe recorded"), "{term}");
    assert!(serde_json::to_string(&report)
        .unwrap()
        .contains("\"cause\":\"host_cpu\""));
    // Without slow processes the section is absent everywhere.
    let (plain, plain_samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    let quiet = Report::build(&plain, &plain_samples, None, None, Vec::new());
    assert!(quiet.slow_processes.is_empty());
    assert!(!super::markdown::render(&quiet).contains("Slow processes"));
}

/// A process whose measured calls begin 2 GiB above its first call is listed; one 64 MiB above
/// (under the absolute floor), one 256 MiB above a 40 GiB peak (under 1 %), one without the
/// start figure and one whose first call is missing are not. Where call 0 loaded a model,
/// call 1 is the baseline: weights kept from call 0 on are not listed, growth after is.
#[test]
fn memory_held_between_calls_is_listed() {
    use super::held::held_between_calls;
    let (record, mut samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    let start = |s: &SampleRow| s.measurement.allocated_at_start_bytes.unwrap();
    for s in samples.iter_mut() {
        s.warmup = s.call == 0;
        let above = match (s.variant.as_str(), s.process, s.call) {
            ("cudnn-on", 1, c) if c > 0 => 2 * GIB,
            ("cudnn-off", 2, c) if c > 0 => 64 << 20,
            ("fp16", 3, c) if c > 0 => 256 << 20,
            ("cudnn-on", 2, c) if c > 0 => 2 * GIB, // lazily loaded weights
            ("fp16", 2, c) => u64::from(c) * 2 * GIB, // weights, then 2 GiB more
            _ => 0,
        };
        if matches!(
            (s.variant.as_str(), s.process, s.call),
            ("cudnn-on" | "fp16", 2, 0)
        ) {
            s.measurement.stages.insert(
                0,
                StageTime {
                    name: "load_unet".into(),
                    wall_ms: 5.0,
                },
            );
        }
        s.measurement.allocated_at_start_bytes = Some(start(s) + above);
        if s.variant == "fp16" && s.process == 3 {
            s.measurement.peak_allocated_bytes = Some(40 * GIB);
        }
        if s.variant == "fp16" && s.process == 4 {
            s.measurement.allocated_at_start_bytes = None;
        }
    }
    // A process whose first call is not in the record: its baseline is unknown.
    samples.retain(|s| !(s.variant == "cudnn-off" && s.process == 5 && s.call == 0));
    for s in samples.iter_mut() {
        if s.variant == "cudnn-off" && s.process == 5 {
            s.measurement.allocated_at_start_bytes = Some(start(s) + 3 * GIB);
        }
    }
    let rows = held_between_calls(&samples);
    let found: Vec<(&str, u32, u64)> = rows
        .iter()
        .map(|r| (r.variant.as_str(), r.process, r.held_bytes))
        .collect();
    assert_eq!(found, vec![("cudnn-on", 1, 2 * GIB), ("fp16", 2, 2 * GIB)]);
    assert_eq!((rows[0].baseline_call, rows[1].baseline_call), (0, 1));
    let peak = (7 * GIB + GIB * 3 / 10 - GIB / 4) as f64;
    assert!((rows[0].share_of_peak - 2.0 * GIB as f64 / peak).abs() < 1e-12);

    let report = Report::build(&record, &samples, None, None, Vec::new());
    assert_eq!(report.held_between_calls, rows);
    let md = super::markdown::render(&report);
    assert!(md.contains("### Memory held between calls"), "{md}");
    let share = format!("{:.1} %", 200.0 * GIB as f64 / peak);
    assert!(
        md.contains(&format!(
            "| texture/cudnn-on | 1 | 3.65 GiB (call 0) | 2.00 GiB | {share} |"
        )),
        "{md}"
    );
    assert!(super::html::render(&report).contains("id=\"held-memory\""));
    let term = super::held::terminal(&report.held_between_calls);
    assert!(term.contains("+2.00 GiB"), "{term}");
    assert!(serde_json::to_string(&report)
        .unwrap()
        .contains("\"held_between_calls\":[{\"suite\":\"texture\""));
    // Without held memory the section is absent everywhere.
    let (plain, plain_samples) = run("20250102T030405Z-nvidia-h100-testhost", 1.0);
    let quiet = Report::build(&plain, &plain_samples, None, None, Vec::new());
    assert!(quiet.held_between_calls.is_empty());
    assert!(!super::markdown::render(&quiet).contains("held between calls"));
    assert!(!serde_json::to_string(&quiet)
        .unwrap()
        .contains("held_between_calls"));
}

/// Every legend sits in the space kept right of its plotting area: no data element reaches
/// into that space, and every series label and swatch lies inside it.
#[test]
fn plot_legends_are_beside_the_data_not_over_it() {
    use super::plots;
    let report = fixture();
    let suite = &report.suites[0];
    let series: Vec<&super::model::TrendSeries> = report.trends.iter().collect();
    // Attribute `name` of an SVG element's text.
    fn attr(element: &str, name: &str) -> Option<f64> {
        let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
        element[at..].split('"').next()?.parse().ok()
    }
    let plots = [
        ("stages", plots::stages(suite), vec!["unet", "vae"]),
        (
            "memory",
            plots::memory(suite),
            vec!["peak reserved", "peak allocated"],
        ),
        (
            "trend",
            plots::trend(&suite.suite, &series),
            vec!["cudnn-on", "cudnn-off"],
        ),
    ];
    for (name, svg, labels) in plots {
        let svg = svg.expect(name).expect(name);
        let width = attr(&svg[svg.find("<svg").unwrap()..], "width").unwrap();
        // The plotting area ends where the legend space begins (the chart's right margin).
        let legend_from = width - 12.0 - 210.0;
        let mut labels_seen = 0;
        for text in svg.split("<text").skip(1) {
            let content = text
                .split('>')
                .nth(1)
                .unwrap_or("")
                .split('<')
                .next()
                .unwrap_or("")
                .trim();
            if labels.contains(&content) {
                labels_seen += 1;
                let x = attr(text, "x").unwrap();
                assert!(
                    x > legend_from,
                    "{name}: label `{content}` at x {x} is over the data"
                );
            }
        }
        assert_eq!(labels_seen, labels.len(), "{name}: legend labels drawn");
        for rect in svg.split("<rect").skip(1) {
            let (Some(x), Some(w)) = (attr(rect, "x"), attr(rect, "width")) else {
                continue;
            };
            // Either wholly in the plot (or its labels), or wholly in the legend space.
            assert!(
                x + w <= legend_from + 1.0 || x >= legend_from || w >= width - 1.0,
                "{name}: a rectangle spans the plot and the legend: x {x}, width {w}"
            );
        }
    }
}
