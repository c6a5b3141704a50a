use super::super::{build_plan, Manifest, ManifestError, ProfileChoice};
use crate::claim::{ClaimCheck, Relation};
use std::path::Path;

const HEAD: &str = r#"[suite]
name = "s"
workload = "sleep"

[knobs]
vram_budget_gib = 8

[[variant]]
name = "a"

[[variant]]
name = "b"
params = { ms = 30 }
"#;

fn load(claims: &str) -> Result<Manifest, ManifestError> {
    Manifest::from_str(Path::new("m.toml"), &format!("{HEAD}{claims}"))
}

fn error(claims: &str) -> String {
    load(claims).unwrap_err().to_string()
}

const CLAIM: &str = "\n[[claim]]\nid = \"H0-01\"\nsource = \"H0\"\nsummary = \"b is slower\"\n";

#[test]
fn every_kind_of_claim_reaches_the_plan() {
    let text = format!(
        "{CLAIM}change = \"40%..60%\"\nbaseline = \"a\"\ncandidate = \"b\"\n\
         {CLAIM}metric = \"peak_reserved_bytes\"\ndifference = \"-1GiB ± 0.25GiB\"\nbaseline = \"a\"\ncandidate = \"b\"\n\
         {CLAIM}fit = true\nvariant = \"b\"\n\
         {CLAIM}order = \"a < b\"\n\
         {CLAIM}metric = \"count_sleeps\"\nbound = \"1\"\nvariant = \"a\"\n\
         {CLAIM}applicable = false\nreason = \"needs torch.compile\"\n"
    );
    let plan = build_plan(&load(&text).unwrap(), ProfileChoice::Named("base")).unwrap();
    let described = super::super::describe_plan(&plan);
    assert!(
        described.contains("claim H0-01 (change of wall_ms): 40%..60%"),
        "{described}"
    );
    assert!(described.contains("claim H0-01 (not-applicable): needs torch.compile"));
    let kinds: Vec<&str> = plan.claims.iter().map(|c| c.check.kind_name()).collect();
    assert_eq!(
        kinds,
        [
            "change",
            "difference",
            "fit",
            "order",
            "bound",
            "not-applicable"
        ]
    );
    let first = &plan.claims[0];
    assert_eq!((first.id.as_str(), first.line), ("H0-01", 16));
    assert!(matches!(
        &first.check,
        ClaimCheck::Change { metric, expected, .. }
            if metric == "wall_ms" && expected.min == Some(0.4) && expected.max == Some(0.6)
    ));
    assert!(matches!(
        plan.claims[2].check,
        ClaimCheck::Fit { fits: true, budget_bytes: Some(b), .. } if b == 8 << 30
    ));
    assert!(matches!(
        &plan.claims[3].check,
        ClaimCheck::Order { relations, .. } if relations == &[Relation::Less]
    ));
}

#[test]
fn mistakes_are_located_and_explained() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{CLAIM}change = \"40%..60%\"\nbaseline = \"a\"\ncandidate = \"c\"\n"),
            "m.toml:21:13: unknown variant `c` in `claim[0].candidate`\n  hint: variants: `a`, `b`",
        ),
        (
            format!("{CLAIM}change = \"40%..60%\"\nbaseline = \"aa\"\ncandidate = \"b\"\n"),
            "m.toml:20:12: unknown variant `aa` in `claim[0].baseline`\n  hint: did you mean `a`?",
        ),
        (
            format!("{CLAIM}order = \"a < bb\"\n"),
            "m.toml:19:14: unknown variant `bb` in `claim[0].order`\n  hint: did you mean `b`?",
        ),
        (
            format!("{CLAIM}order = \"a > b\"\n"),
            "m.toml:19:12: unsupported relation `>` in `claim[0].order`\n  hint: list variants in ascending order, separated by ` < ` or ` = ` with spaces around them, e.g. `order = \"fast < medium = other < slow\"`",
        ),
        (
            format!("{CLAIM}change = \"40..60\"\nbaseline = \"a\"\ncandidate = \"b\"\n"),
            "m.toml:19:10: invalid range for `claim[0].change`: `40` has no unit\n  hint: a change is written in percent, e.g. `-40%..-30%`",
        ),
        (
            format!("{CLAIM}change = \"40%..60%\"\nbound = \"1\"\nbaseline = \"a\"\ncandidate = \"b\"\n"),
            "m.toml:20:1: claim `H0-01` combines `change` and `bound`\n  hint: one measurement per claim: split it into two `[[claim]]` entries with the same id",
        ),
        (
            format!("{CLAIM}bound = \"..250ms\"\nvariant = \"a\"\n"),
            "m.toml:19:9: `claim[0].bound` states an absolute time of `wall_ms`, which is only comparable on the machine that measured it\n  hint: figures from other cards do not transfer: claim a relative `change` between two variants, or mark the claim `applicable = false` with a `reason`; set `absolute_time = true` only for a figure measured on this machine",
        ),
        (
            format!("{CLAIM}fit = true\nvariant = \"a\"\nmetric = \"wall_ms\"\n"),
            "m.toml:21:1: `metric` does not apply to a `fit` claim\n  hint: a `fit` claim judges `variant`'s outcome and peak reserved memory against its `knobs.vram_budget_gib`",
        ),
        (
            format!("{CLAIM}metric = \"peak_rserved_bytes\"\nbound = \"..8GiB\"\nvariant = \"a\"\n"),
            "m.toml:19:10: unknown metric `peak_rserved_bytes` in `claim[0].metric`\n  hint: did you mean `peak_reserved_bytes`?",
        ),
        (
            CLAIM.to_string(),
            "m.toml:15:1: claim `H0-01` states nothing to measure\n  hint: add one of `change`, `difference`, `fit`, `order` or `bound`, or mark it `applicable = false` with a `reason`",
        ),
        (
            format!("{CLAIM}applicable = false\n"),
            "m.toml:19:14: claim `H0-01` is marked not applicable without a `reason`\n  hint: add `reason = \"…\"`: why this harness cannot check the claim",
        ),
        (
            format!("{CLAIM}change = \"40%..60%\"\nbaseline = \"a\"\ncandidate = \"a\"\n"),
            "m.toml:21:13: claim `H0-01` compares `a` with itself\n  hint: `baseline` and `candidate` must name different variants",
        ),
        (
            format!("{CLAIM}chnage = \"40%\"\n"),
            "m.toml:19:1: unknown key `chnage` in `claim[0]`\n  hint: did you mean `change`?",
        ),
        (
            "\n[[claim]]\nid = \"H0-1\"\nsource = \"H0\"\nsummary = \"x\"\n".to_string(),
            "m.toml:16:6: invalid claim id `H0-1`\n  hint: claim ids look like `H0-01`: an uppercase letter, letters or digits, `-`, then at least two digits",
        ),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .filter(|(text, expected)| error(text) != *expected)
        .map(|(text, _)| format!("{:?}", error(text)))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_fit_needs_a_budget_in_every_profile() {
    let text = format!(
        "{}\n[profiles.cpu]\nknobs = {{ device = \"cpu\" }}\n{CLAIM}fit = true\nvariant = \"a\"\n",
        "",
    );
    let without = HEAD.replace("vram_budget_gib = 8", "");
    let err = Manifest::from_str(Path::new("m.toml"), &format!("{without}{text}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "claim `H0-01` says `a` fits its VRAM budget, but `a` sets no `knobs.vram_budget_gib`"
        ),
        "{err}"
    );
    // A claim that it does not fit needs none.
    let oom = format!("{CLAIM}fit = false\nvariant = \"a\"\n");
    assert!(Manifest::from_str(Path::new("m.toml"), &format!("{without}{oom}")).is_ok());
}

#[test]
fn matrix_names_are_suggested_in_full() {
    let text = format!("{HEAD}\n[matrix]\n\"params.stages\" = [1, 2]\n{CLAIM}order = \"a < b\"\n");
    let err = Manifest::from_str(Path::new("m.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("hint: the matrix expands `a` into `a/stages=1`, `a/stages=2`; claims name expanded variants"),
        "{err}"
    );
    let ok = text.replace("a < b", "a/stages=1 < b/stages=1 = b/stages=2");
    let plan = build_plan(
        &Manifest::from_str(Path::new("m.toml"), &ok).unwrap(),
        ProfileChoice::Named("base"),
    )
    .unwrap();
    assert_eq!(
        plan.claims[0].check.variants(),
        ["a/stages=1", "b/stages=1", "b/stages=2"]
    );
}
