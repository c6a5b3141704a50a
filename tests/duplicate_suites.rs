//! One run holds each suite once: two manifests with one suite name (or names that give one
//! file name), or one manifest given twice, are refused before anything runs.

mod common;

use common::{sleep_suite, Sandbox};
use predicates::prelude::*;

#[test]
fn a_suite_named_twice_in_one_run_is_refused() {
    let sb = Sandbox::new();
    let first = sb.manifest("a.toml", &sleep_suite("naps", 1, &[("a", 1.0)]));
    let second = sb.manifest("b.toml", &sleep_suite("naps", 1, &[("a", 60.0)]));
    let collide = sb.manifest("c.toml", &sleep_suite("nap.s", 1, &[("a", 1.0)]));
    let other = sb.manifest("d.toml", &sleep_suite("nap-s", 1, &[("a", 1.0)]));
    for (x, y, says) in [
        (&first, &second, "both define suite `naps`"),
        (&first, &first, "both define suite `naps`"),
        (&collide, &other, "whose file names collide"),
    ] {
        sb.cmd()
            .args(["run", "--quiet", x, y])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
    assert!(
        !sb.path().join("results/runs").exists(),
        "nothing ran or was recorded"
    );
}
