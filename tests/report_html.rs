//! The HTML report of a real run opened in headless Chromium: it must load without console
//! errors and render its plots. Ignored by default (needs Debian's `chromium`); `.ci/run` runs
//! it when chromium is installed. The screenshot is kept in `$CLAIMBENCH_SCREENSHOT_DIR` when
//! that is set, so a person can look at it.
//!
//!     cargo test --test report_html -- --ignored

mod common;

use common::Sandbox;
use std::path::PathBuf;

/// The shared claim manifest with markup in every free-text field a report shows.
fn manifest() -> String {
    common::sleep_claims()
        .replace(
            "name = \"naps\"\n",
            "name = \"naps\"\ndescription = \"naps <&> \\\"quoted\\\" <b>bold?</b>\"\n",
        )
        .replace(
            "test note, section 1",
            "test note <script>alert(1)</script>",
        )
}

#[test]
#[ignore = "needs chromium"]
fn html_report_of_a_run_renders_in_headless_chromium() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", &manifest());
    sb.cmd()
        .args(["run", "--quiet", &manifest])
        .assert()
        .success();
    let page = sb.run_dir().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for id in ["plot-claim-0", "plot-distribution-naps"] {
        let figure = format!("<figure class=\"plot\" id=\"{id}\">");
        let at = html.find(&figure).unwrap_or_else(|| panic!("{id} missing"));
        assert!(
            html[at + figure.len()..].trim_start().starts_with("<svg"),
            "{id} holds no SVG"
        );
    }
    assert!(
        !html.contains("<script>alert"),
        "manifest strings are escaped"
    );

    let out = std::env::var_os("CLAIMBENCH_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sb.path().to_path_buf());
    std::fs::create_dir_all(&out).unwrap();
    let screenshot = out.join("report.png");
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let console: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let size = std::fs::metadata(&screenshot).unwrap().len();
    assert!(size > 50_000, "screenshot of {size} bytes looks empty");
    eprintln!("screenshot: {}", screenshot.display());
}
