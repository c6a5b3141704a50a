//! `[[claim]]` tables: what a claim measures, checked when the manifest loads so that a typo
//! in a variant name or a unit is reported at its line and column, not as a puzzling verdict
//! after an hour of measuring.
//!
//! A claim has `id`, `source` and `summary`, and exactly one of
//! - `change = "LOW%..HIGH%"`: relative change of `metric` from `baseline` to `candidate`;
//! - `difference = "RANGE"`: `candidate − baseline` in the metric's unit;
//! - `fit = true | false`: `variant` runs within its `knobs.vram_budget_gib`, or runs out of
//!   memory;
//! - `order = "a < b = c"`: variants in ascending order of `metric`;
//! - `bound = "RANGE"`: `metric` of `variant` lies in the range;
//!
//! or `applicable = false` with a `reason`. `metric` defaults to `wall_ms`. Ranges follow
//! [`crate::claim::parse_range`]. A `bound` or `difference` on a time metric compares an
//! absolute time measured here with a figure from some other card, so it is refused unless the
//! claim sets `absolute_time = true` (a figure that was measured on this machine).

use super::error::{closest, ManifestError};
use super::spanned::{
    check_keys, entries, expect_bool, expect_str, expect_table, join, required, type_error,
    valid_name, Ctx, Value,
};
use crate::claim::{parse_range, ClaimCheck, ClaimRange, ClaimSpec, Dimension, Relation};
use crate::plan::VariantPlan;
use toml::de::DeValue;

const CLAIM_KEYS: &[&str] = &[
    "id",
    "source",
    "summary",
    "metric",
    "baseline",
    "candidate",
    "variant",
    "change",
    "difference",
    "fit",
    "order",
    "bound",
    "absolute_time",
    "applicable",
    "reason",
];
/// The keys that say what a claim measures; exactly one per claim.
const KIND_KEYS: &[&str] = &["change", "difference", "fit", "order", "bound"];
const FIXED_METRICS: &[&str] = &[
    "wall_ms",
    "gpu_ms",
    "peak_allocated_bytes",
    "peak_reserved_bytes",
];

/// A claim as parsed, with the positions of its variant names for later checks.
#[derive(Debug, Clone)]
pub(super) struct ClaimDef {
    pub id: String,
    pub source: String,
    pub summary: String,
    pub line: usize,
    /// `claim[i]`.
    pub path: String,
    /// `Fit::budget_bytes` is filled in per plan.
    pub check: ClaimCheck,
    pub refs: Vec<VariantRef>,
    /// Byte offset of `fit = true`, where a missing budget is reported.
    pub fit_offset: Option<usize>,
}

/// A variant name written in a claim.
#[derive(Debug, Clone)]
pub(super) struct VariantRef {
    pub name: String,
    /// Dotted key, e.g. `claim[0].baseline`.
    pub key: String,
    pub offset: usize,
}

/// `[A-Z][A-Z0-9]*-[0-9]{2,}`, e.g. `H0-01`.
pub(super) fn valid_claim(claim: &str) -> bool {
    let Some((note, number)) = claim.split_once('-') else {
        return false;
    };
    valid_name(
        note,
        |c| c.is_ascii_uppercase(),
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    ) && number.len() >= 2
        && number.chars().all(|c| c.is_ascii_digit())
}

/// Parses the `claim` array of tables.
pub(super) fn parse_claims(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
) -> Result<Vec<ClaimDef>, ManifestError> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(type_error(ctx, value, "claim", "an array of tables")
            .with_hint("declare each claim with a `[[claim]]` header (double brackets)"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_claim(ctx, item, &format!("claim[{index}]")))
        .collect()
}

fn parse_claim(ctx: &Ctx<'_>, item: &Value<'_>, path: &str) -> Result<ClaimDef, ManifestError> {
    let table = expect_table(ctx, item, path)?;
    check_keys(ctx, table, CLAIM_KEYS, path)?;
    let string = |name: &str| -> Result<(String, usize), ManifestError> {
        let value = required(ctx, table, item, path, name)?;
        let key = join(path, name);
        let text = expect_str(ctx, value, &key)?;
        if text.trim().is_empty() {
            return Err(ctx.err(value.span(), &key, format!("`{key}` is empty")));
        }
        Ok((text.to_string(), value.span().start))
    };
    let (id, id_offset) = string("id")?;
    if !valid_claim(&id) {
        return Err(ctx
            .err(
                id_offset..id_offset,
                &join(path, "id"),
                format!("invalid claim id `{id}`"),
            )
            .with_hint(
                "claim ids look like `H0-01`: an uppercase letter, letters or digits, `-`, then \
                 at least two digits",
            ));
    }
    let (source, _) = string("source")?;
    let (summary, _) = string("summary")?;
    let line = super::error::line_col(ctx.text, id_offset).0;
    let get = |name: &str| table.get_key_value(name);

    let kinds: Vec<_> = entries(table)
        .into_iter()
        .filter(|(key, _)| {
            let name: &str = key.get_ref();
            KIND_KEYS.contains(&name)
        })
        .collect();
    if let [(first, _), (second, _), ..] = kinds.as_slice() {
        let (a, b): (&str, &str) = (first.get_ref(), second.get_ref());
        return Err(ctx
            .err(
                second.span(),
                &join(path, b),
                format!("claim `{id}` combines `{a}` and `{b}`"),
            )
            .with_hint(
                "one measurement per claim: split it into two `[[claim]]` entries with the same id",
            ));
    }

    let applicable = match get("applicable") {
        Some((_, value)) => Some((
            expect_bool(ctx, value, &join(path, "applicable"))?,
            value.span(),
        )),
        None => None,
    };
    let reason = match get("reason") {
        Some((key, value)) => {
            let text = expect_str(ctx, value, &join(path, "reason"))?;
            if !matches!(applicable, Some((false, _))) {
                return Err(ctx
                    .err(
                        key.span(),
                        &join(path, "reason"),
                        "`reason` is only for claims marked `applicable = false`",
                    )
                    .with_hint("add `applicable = false`, or remove `reason`"));
            }
            Some(text.to_string())
        }
        None => None,
    };
    if let Some((false, span)) = &applicable {
        if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(ctx
                .err(
                    span.clone(),
                    &join(path, "applicable"),
                    format!("claim `{id}` is marked not applicable without a `reason`"),
                )
                .with_hint("add `reason = \"…\"`: why this harness cannot check the claim"));
        }
    }

    let Some((kind_key, kind_value)) = kinds.first().copied() else {
        return match reason {
            Some(reason) => Ok(ClaimDef {
                id,
                source,
                summary,
                line,
                path: path.to_string(),
                check: ClaimCheck::NotApplicable { reason },
                refs: Vec::new(),
                fit_offset: None,
            }),
            None => Err(ctx
                .err(
                    item.span(),
                    path,
                    format!("claim `{id}` states nothing to measure"),
                )
                .with_hint(
                    "add one of `change`, `difference`, `fit`, `order` or `bound`, or mark it \
                     `applicable = false` with a `reason`",
                )),
        };
    };
    let kind: &str = kind_key.get_ref();
    let kind_path = join(path, kind);

    // Keys that belong to other kinds are mistakes, not decoration.
    let allowed: &[&str] = match kind {
        "change" | "difference" => &["metric", "baseline", "candidate", "absolute_time"],
        "fit" => &["variant"],
        "order" => &["metric"],
        _ => &["metric", "variant", "absolute_time"],
    };
    for name in [
        "metric",
        "baseline",
        "candidate",
        "variant",
        "absolute_time",
    ] {
        if let Some((key, _)) = get(name) {
            if !allowed.contains(&name) {
                let hint = match kind {
                    "change" | "difference" => {
                        format!("a `{kind}` claim compares `baseline` with `candidate`")
                    }
                    "fit" => "a `fit` claim judges `variant`'s outcome and peak reserved memory \
                              against its `knobs.vram_budget_gib`"
                        .to_string(),
                    "order" => "an `order` claim names its variants in `order`, e.g. \
                                `order = \"fast < medium < slow\"`"
                        .to_string(),
                    _ => "a `bound` claim names one `variant`".to_string(),
                };
                return Err(ctx
                    .err(
                        key.span(),
                        &join(path, name),
                        format!("`{name}` does not apply to a `{kind}` claim"),
                    )
                    .with_hint(hint));
            }
        }
    }

    let metric = match get("metric") {
        Some((_, value)) => {
            let key = join(path, "metric");
            let name = expect_str(ctx, value, &key)?;
            if Dimension::of_metric(name).is_none() {
                let hint = match closest(name, FIXED_METRICS) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None => "claim metrics are `wall_ms`, `gpu_ms`, `stage_<name>_ms`, \
                             `peak_allocated_bytes`, `peak_reserved_bytes` or `count_<name>`, \
                             where <name> is lowercase letters, digits and `_`"
                        .to_string(),
                };
                return Err(ctx
                    .err(
                        value.span(),
                        &key,
                        format!("unknown metric `{name}` in `{key}`"),
                    )
                    .with_hint(hint));
            }
            name.to_string()
        }
        None => String::from("wall_ms"),
    };
    let dimension = Dimension::of_metric(&metric).unwrap_or(Dimension::Time);
    let absolute_time = match get("absolute_time") {
        Some((_, value)) => expect_bool(ctx, value, &join(path, "absolute_time"))?,
        None => false,
    };
    if let Some((key, _)) = get("absolute_time") {
        if dimension != Dimension::Time {
            return Err(ctx
                .err(
                    key.span(),
                    &join(path, "absolute_time"),
                    format!("`absolute_time` does not apply to `{metric}`, which is no time"),
                )
                .with_hint("remove it: only bounds and differences of times need it"));
        }
    }

    let mut refs = Vec::new();
    let mut variant_ref = |name: &str| -> Result<String, ManifestError> {
        let value = required(ctx, table, item, path, name)?;
        let key = join(path, name);
        let text = expect_str(ctx, value, &key)?;
        refs.push(VariantRef {
            name: text.to_string(),
            key,
            offset: value.span().start,
        });
        Ok(text.to_string())
    };
    let range = |dimension: Dimension| -> Result<ClaimRange, ManifestError> {
        let DeValue::String(text) = kind_value.get_ref() else {
            return Err(type_error(ctx, kind_value, &kind_path, "a range string")
                .with_hint("write the range in quotes, e.g. `change = \"-40%..-30%\"`"));
        };
        parse_range(text, dimension).map_err(|e| {
            let error = ctx.err(
                kind_value.span(),
                &kind_path,
                format!("invalid range for `{kind_path}`: {}", e.message),
            );
            match e.hint {
                Some(hint) => error.with_hint(hint),
                None => error,
            }
        })
    };
    let refuse_absolute_time = || -> Result<(), ManifestError> {
        if dimension == Dimension::Time && !absolute_time {
            return Err(ctx
                .err(
                    kind_value.span(),
                    &kind_path,
                    format!(
                        "`{kind_path}` states an absolute time of `{metric}`, which is only \
                         comparable on the machine that measured it"
                    ),
                )
                .with_hint(
                    "figures from other cards do not transfer: claim a relative `change` \
                     between two variants, or mark the claim `applicable = false` with a \
                     `reason`; set `absolute_time = true` only for a figure measured on this \
                     machine",
                ));
        }
        Ok(())
    };

    let mut fit_offset = None;
    let check = match kind {
        "change" | "difference" => {
            let expected = if kind == "change" {
                range(Dimension::Relative)?
            } else {
                refuse_absolute_time()?;
                range(dimension)?
            };
            let baseline = variant_ref("baseline")?;
            let candidate = variant_ref("candidate")?;
            if baseline == candidate {
                let at = refs[1].offset;
                return Err(ctx
                    .err(
                        at..at,
                        &join(path, "candidate"),
                        format!("claim `{id}` compares `{baseline}` with itself"),
                    )
                    .with_hint("`baseline` and `candidate` must name different variants"));
            }
            if kind == "change" {
                ClaimCheck::Change {
                    metric,
                    baseline,
                    candidate,
                    expected,
                }
            } else {
                ClaimCheck::Difference {
                    metric,
                    baseline,
                    candidate,
                    expected,
                }
            }
        }
        "fit" => {
            let fits = expect_bool(ctx, kind_value, &kind_path)?;
            if fits {
                fit_offset = Some(kind_value.span().start);
            }
            ClaimCheck::Fit {
                variant: variant_ref("variant")?,
                fits,
                budget_bytes: None,
            }
        }
        "order" => {
            let (variants, relations) = parse_order(ctx, kind_value, &kind_path, &mut refs)?;
            ClaimCheck::Order {
                metric,
                variants,
                relations,
            }
        }
        _ => {
            refuse_absolute_time()?;
            let expected = range(dimension)?;
            ClaimCheck::Bound {
                metric,
                variant: variant_ref("variant")?,
                expected,
            }
        }
    };
    let check = match reason {
        Some(reason) => ClaimCheck::NotApplicable { reason },
        None => check,
    };
    Ok(ClaimDef {
        id,
        source,
        summary,
        line,
        path: path.to_string(),
        check,
        refs,
        fit_offset,
    })
}

/// `"a < b = c"`: names separated by `<` or `=`, each surrounded by spaces (variant names may
/// themselves contain `=`).
fn parse_order(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    refs: &mut Vec<VariantRef>,
) -> Result<(Vec<String>, Vec<Relation>), ManifestError> {
    const HINT: &str = "list variants in ascending order, separated by ` < ` or ` = ` with \
                        spaces around them, e.g. `order = \"fast < medium = other < slow\"`";
    let text = expect_str(ctx, value, path)?;
    // Point into the string when it is written without escapes.
    let snippet = ctx.snippet(value.span());
    let exact = snippet.len() == text.len() + 2 && &snippet[1..snippet.len() - 1] == text;
    let at = |index: usize| {
        if exact {
            value.span().start + 1 + index
        } else {
            value.span().start
        }
    };
    let mut variants: Vec<String> = Vec::new();
    let mut relations = Vec::new();
    let mut expect_name = true;
    let mut rest = text;
    let mut consumed = 0;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        let token_len = rest[start..]
            .find(char::is_whitespace)
            .unwrap_or(rest.len() - start);
        let token = &rest[start..start + token_len];
        let index = consumed + start;
        let relation = match token {
            "<" => Some(Relation::Less),
            "=" => Some(Relation::Equal),
            ">" | ">=" | "<=" | "==" => {
                let o = at(index);
                return Err(ctx
                    .err(
                        o..o,
                        path,
                        format!("unsupported relation `{token}` in `{path}`"),
                    )
                    .with_hint(HINT));
            }
            _ => None,
        };
        match (expect_name, relation) {
            (true, None) => {
                if let Some(previous) = variants.iter().position(|v| v == token) {
                    let o = at(index);
                    return Err(ctx
                        .err(
                            o..o,
                            path,
                            format!("variant `{token}` appears twice in `{path}`"),
                        )
                        .with_hint(format!(
                            "each variant takes one place in the order (first at position {})",
                            previous + 1
                        )));
                }
                refs.push(VariantRef {
                    name: token.to_string(),
                    key: path.to_string(),
                    offset: at(index),
                });
                variants.push(token.to_string());
            }
            (false, Some(relation)) => relations.push(relation),
            _ => {
                let o = at(index);
                let what = if expect_name {
                    "a variant name"
                } else {
                    "`<` or `=`"
                };
                return Err(ctx
                    .err(
                        o..o,
                        path,
                        format!("expected {what} at `{token}` in `{path}`"),
                    )
                    .with_hint(HINT));
            }
        }
        expect_name = !expect_name;
        consumed += start + token_len;
        rest = &rest[start + token_len..];
    }
    if variants.len() < 2 || expect_name {
        return Err(ctx
            .err(
                value.span(),
                path,
                format!("`{path}` needs at least two variants and ends with one"),
            )
            .with_hint(HINT));
    }
    Ok((variants, relations))
}

/// The claims of a plan: as parsed, with each fit's budget taken from the planned variant.
pub(super) fn specs(claims: &[ClaimDef], variants: &[VariantPlan]) -> Vec<ClaimSpec> {
    claims
        .iter()
        .map(|def| {
            let mut check = def.check.clone();
            if let ClaimCheck::Fit {
                variant,
                budget_bytes,
                ..
            } = &mut check
            {
                *budget_bytes = variants
                    .iter()
                    .find(|v| &v.name == variant)
                    .and_then(|v| v.knobs.vram_budget_gib)
                    .map(|gib| (gib * 1024.0 * 1024.0 * 1024.0).round() as u64);
            }
            ClaimSpec {
                id: def.id.clone(),
                source: def.source.clone(),
                summary: def.summary.clone(),
                line: def.line,
                check,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
            err.contains("claim `H0-01` says `a` fits its VRAM budget, but `a` sets no `knobs.vram_budget_gib`"),
            "{err}"
        );
        // A claim that it does not fit needs none.
        let oom = format!("{CLAIM}fit = false\nvariant = \"a\"\n");
        assert!(Manifest::from_str(Path::new("m.toml"), &format!("{without}{oom}")).is_ok());
    }

    #[test]
    fn matrix_names_are_suggested_in_full() {
        let text =
            format!("{HEAD}\n[matrix]\n\"params.stages\" = [1, 2]\n{CLAIM}order = \"a < b\"\n");
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
}
