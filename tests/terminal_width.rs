//! Terminal output fits 120 columns unless `--wide` asks for full-length lines.

mod common;

use common::{sleep_claims, Sandbox};

fn widest(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn run_and_report_fit_120_columns_and_wide_keeps_lines_whole() {
    let sandbox = Sandbox::new();
    let long = "a claim summary long enough to need wrapping, ".repeat(5);
    let manifest = sandbox.manifest(
        "naps.toml",
        &sleep_claims().replace("B is 40–60 % slower than A", long.trim_end()),
    );
    let run = sandbox
        .cmd()
        .args(["run", "--quiet", &manifest])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(stdout.contains("wrapping,"), "{stdout}");
    assert!(widest(&stdout) <= 120, "{stdout}");
    assert!(widest(&stderr) <= 120, "{stderr}");

    let wide = sandbox.cmd().args(["report", "--wide"]).output().unwrap();
    let wide = String::from_utf8_lossy(&wide.stdout);
    assert!(widest(&wide) > 120, "{wide}");
    assert!(
        wide.lines().any(|l| l.contains(long.trim_end())),
        "the summary stays on one line: {wide}"
    );
}
