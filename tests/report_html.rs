//! The HTML report of a real run with claims and a baseline comparison, opened in headless
//! Chromium at desktop and phone width: it must load without console errors, render its plots,
//! and at 390 px nothing may stick out of the page (wide tables scroll inside their own box).
//! Ignored by default (needs Debian's `chromium`); `.ci/run` runs it when chromium is installed.
//! The screenshots are kept in `$CLAIMBENCH_SCREENSHOT_DIR` when that is set, so a person can
//! look at them.
//!
//!     cargo test --test report_html -- --ignored

mod common;

use common::Sandbox;
use std::path::{Path, PathBuf};

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
    let first = sb.newest_run();
    sb.cmd()
        .args(["baseline", "save", &first])
        .assert()
        .success();
    // The second run is compared with the first, so the page also has the gate's wide table.
    sb.cmd()
        .args(["run", "--quiet", "--compare", &manifest])
        .assert()
        .code(predicates::ord::lt(2));
    let page = PathBuf::from(sb.newest_run()).join("report.html");
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
    let (stderr, _) = chromium(
        &page,
        (1200, 2400),
        &["--screenshot".into()],
        &out.join("report.png"),
    );
    let console: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let size = std::fs::metadata(out.join("report.png")).unwrap().len();
    assert!(size > 50_000, "screenshot of {size} bytes looks empty");
    assert!(html.contains("<h2 id=\"regressions\">"), "no gate section");

    // Phone width: headless Chromium will not make a window narrower than 500 px, so the page
    // is shown in a 390 px frame (its own viewport: media queries and layout as on a phone),
    // and the outer page records, once the frame has loaded, how wide the framed document is and
    // which elements reach past its right edge outside a scrolling box.
    let attribute = html.replace('&', "&amp;").replace('"', "&quot;");
    let phone = format!(
        r#"<!DOCTYPE html><html><body style="margin:0">
<iframe id="phone" style="width:390px;height:844px;border:0" srcdoc="{attribute}"></iframe>
<script>
const frame = document.getElementById('phone');
frame.addEventListener('load', () => {{
  const w = frame.contentWindow, d = frame.contentDocument;
  const wide = [...d.body.querySelectorAll('*')]
    .filter(e => e.getBoundingClientRect().right > w.innerWidth + 1 && !e.closest('.scroll'))
    .map(e => e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''));
  document.body.setAttribute('data-layout',
    [w.innerWidth, d.documentElement.scrollWidth, wide.slice(0, 8).join(' ')].join('|'));
}});
</script></body></html>"#
    );
    let phone_page = page.with_file_name("report-phone.html");
    std::fs::write(&phone_page, phone).unwrap();
    chromium(
        &phone_page,
        (500, 844),
        &["--screenshot".into()],
        &out.join("report-390.png"),
    );
    let (_, dom) = chromium(
        &phone_page,
        (500, 844),
        &["--dump-dom".into()],
        Path::new(""),
    );
    let layout = dom
        .split("data-layout=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the layout probe ran");
    let parts: Vec<&str> = layout.split('|').collect();
    let (viewport, width): (u32, u32) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
    assert_eq!(viewport, 390, "{layout}");
    assert!(
        width <= viewport,
        "the page is {width} px wide at {viewport} px: {layout}"
    );
    assert!(
        parts[2].is_empty(),
        "elements past the right edge: {}",
        parts[2]
    );
    eprintln!("screenshots: {}", out.display());
}

/// Opens `page` in headless Chromium at `size` with `mode` (`--screenshot` writes `target`,
/// `--dump-dom` prints the DOM); returns its stderr and stdout.
fn chromium(page: &Path, size: (u32, u32), mode: &[String], target: &Path) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("chromium");
    cmd.args([
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
        "--virtual-time-budget=2000",
    ])
    .arg(format!("--window-size={},{}", size.0, size.1))
    .arg(format!("--user-data-dir={}", profile.path().display()));
    for m in mode {
        if m == "--screenshot" {
            cmd.arg(format!("--screenshot={}", target.display()));
        } else {
            cmd.arg(m);
        }
    }
    let output = cmd
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (stderr, String::from_utf8_lossy(&output.stdout).into_owned())
}
