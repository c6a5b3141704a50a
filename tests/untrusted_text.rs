//! Text from a manifest reaches terminals and PR comments: escape sequences are shown, not
//! obeyed, and report.md carries no live links, images or mentions from a claim summary.

mod common;

use common::{sleep_claims, Sandbox};

#[test]
fn manifest_text_cannot_drive_a_terminal_or_a_pr_comment() {
    let sb = Sandbox::new();
    let text = sleep_claims()
        .replace(
            "name = \"naps\"\n",
            "name = \"naps\"\ndescription = \"\\u001b]0;PWNED\\u0007\\u001b[2J\"\n",
        )
        .replace(
            "summary = \"B is 40–60 % slower than A\"",
            "summary = \"[click](https://example.invalid/p) ![px](https://example.invalid/t.png) @octocat \\u001b[31mred\"",
        );
    let manifest = sb.manifest("naps.toml", &text);
    let check = sb.cmd().args(["check", &manifest]).assert().success();
    let stdout = String::from_utf8(check.get_output().stdout.clone()).unwrap();
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(stdout.contains("\\u{1b}]0;PWNED\\u{7}"), "{stdout}");

    let run = sb.cmd().args(["run", "--quiet", &manifest]).assert();
    let stdout = String::from_utf8(run.get_output().stdout.clone()).unwrap();
    assert!(!stdout.contains("\u{1b}[31m"), "{stdout:?}");
    let md = std::fs::read_to_string(sb.run_dir().join("report.md")).unwrap();
    // Escaped brackets make no link or image: `\[click\](…)` renders as text.
    assert!(md.contains("\\[click\\](https://"), "{md}");
    assert!(
        !md.contains(" [click]") && !md.contains("![px]"),
        "live link in report.md"
    );
    assert!(
        !md.contains("@octocat") && md.contains("&#64;octocat"),
        "{md}"
    );
    assert!(!md.contains('\u{1b}'), "escape in report.md");
    let html = std::fs::read_to_string(sb.run_dir().join("report.html")).unwrap();
    assert!(!html.contains('\u{1b}'), "escape in report.html");
}
