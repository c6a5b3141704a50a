//! Bad manifests: `check` and `run` print `file:line:column: message` with a hint, exit with 2,
//! and record nothing.

mod common;

use common::Sandbox;
use predicates::prelude::*;

const BASE: &str = "[suite]\nname = \"bad\"\nworkload = \"conv_stack\"\n";

fn assert_rejected(body: &str, expected: &[&str]) {
    let sb = Sandbox::new();
    let manifest = sb.manifest("bad.toml", &format!("{BASE}{body}"));
    for command in ["check", "run"] {
        let mut assert = sb.cmd().args([command, &manifest]).assert().code(2);
        for e in expected {
            assert = assert.stderr(predicate::str::contains(*e));
        }
        assert!(
            !sb.path().join("results").exists(),
            "{command} recorded something for a bad manifest"
        );
    }
}

#[test]
fn misspelt_knob_names_line_column_and_suggestion() {
    assert_rejected(
        "\n[knobs]\ncudnn.enabeld = true\n",
        &[
            "manifests/bad.toml:6:7: unknown key `enabeld`",
            "hint: did you mean `enabled`?",
        ],
    );
}

#[test]
fn unknown_param_is_rejected_with_suggestion() {
    assert_rejected(
        "\n[params]\nresolutoin = 64\n",
        &[
            "manifests/bad.toml:6:1:",
            "resolutoin",
            "did you mean `resolution`",
        ],
    );
}

#[test]
fn wrong_type_and_range_are_rejected() {
    assert_rejected(
        "\n[params]\nbatch = \"eight\"\n",
        &["manifests/bad.toml:6:9:", "batch"],
    );
    assert_rejected(
        "\n[run]\nrepetitions = 0\n",
        &["manifests/bad.toml:6:15:", "repetitions"],
    );
}

#[test]
fn syntax_errors_point_at_the_line() {
    assert_rejected("\n[knobs\n", &["manifests/bad.toml:5:"]);
}

#[test]
fn missing_file_is_an_input_error() {
    let sb = Sandbox::new();
    sb.cmd()
        .args(["check", "manifests/nope.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("manifests/nope.toml"));
}

/// A key of thousands of dotted parts once gave "invalid TOML: recursion limit" with no place.
#[test]
fn a_key_of_thousands_of_dotted_parts_is_located() {
    let key = vec!["cudnn"; 5000].join(".");
    assert_rejected(
        &format!("\n[knobs]\n{key} = true\n"),
        &["manifests/bad.toml:6:1: key `cudnn.cudnn.cudnn.cudnn.cudnn.cudnn.cudnn.cudnn…` has 5000 dotted parts, more than a manifest key may have (64)"],
    );
}
