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
use crate::manifest::field::{field, required_row, string, Cx, Field, Located, Patch};
use crate::plan::VariantPlan;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A claim's keys, in the order hints list them: the header's rows, the qualifiers that name
/// variants and the metric, one kind key, `absolute_time`, and the applicability's rows.
fn claim_keys() -> Vec<&'static str> {
    let (absolute_time, qualifiers) = QUALIFIER_KEYS.split_last().expect("qualifiers");
    let mut keys = ClaimHeader::keys();
    keys.extend(qualifiers);
    keys.extend(ClaimKind::ALL.iter().map(|k| k.key()));
    keys.push(absolute_time);
    keys.extend(Applicability::keys());
    keys
}

/// The keys that name variants or qualify the measurement; each kind takes some of them.
/// `absolute_time` comes last (hints list it after the kind keys).
const QUALIFIER_KEYS: [&str; 5] = [
    "metric",
    "baseline",
    "candidate",
    "variant",
    "absolute_time",
];

/// What every claim states first, read in row order.
#[derive(Default)]
struct ClaimHeader {
    id: Option<Located<String>>,
    source: Option<String>,
    summary: Option<String>,
}

impl Patch for ClaimHeader {
    const FIELDS: &'static [Field<Self>] = &[
        required_row(field!("id", claim_id, id)),
        required_row(field!("source", nonempty_str, source)),
        required_row(field!("summary", nonempty_str, summary)),
    ];
}

/// `applicable = false` with its `reason`, read in row order once the kind is known.
#[derive(Default)]
struct Applicability {
    /// With the value's span.
    applicable: Option<(bool, Range<usize>)>,
    reason: Option<String>,
}

impl Patch for Applicability {
    const FIELDS: &'static [Field<Self>] = &[
        field!("applicable", spanned_bool, applicable),
        field!("reason", string, reason),
    ];
}

/// What a claim measures, chosen by its one kind key; each kind has its reader. Adding a kind:
/// a variant here (its key, the qualifier keys it takes, its reader), its `ClaimCheck` in
/// [`crate::claim`] and its judge in `crate::verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimKind {
    Change,
    Difference,
    Fit,
    Order,
    Bound,
}

impl ClaimKind {
    const ALL: [ClaimKind; 5] = [
        ClaimKind::Change,
        ClaimKind::Difference,
        ClaimKind::Fit,
        ClaimKind::Order,
        ClaimKind::Bound,
    ];

    /// The key that states it, e.g. `change = "-40%..-30%"`.
    fn key(self) -> &'static str {
        match self {
            ClaimKind::Change => "change",
            ClaimKind::Difference => "difference",
            ClaimKind::Fit => "fit",
            ClaimKind::Order => "order",
            ClaimKind::Bound => "bound",
        }
    }

    fn of_key(key: &str) -> Option<ClaimKind> {
        ClaimKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Which of [`QUALIFIER_KEYS`] it takes; the others are mistakes, not decoration.
    fn takes(self) -> &'static [&'static str] {
        match self {
            ClaimKind::Change | ClaimKind::Difference => {
                &["metric", "baseline", "candidate", "absolute_time"]
            }
            ClaimKind::Fit => &["variant"],
            ClaimKind::Order => &["metric"],
            ClaimKind::Bound => &["metric", "variant", "absolute_time"],
        }
    }

    /// What a claim of this kind names, for a key it does not take.
    fn takes_hint(self) -> String {
        match self {
            ClaimKind::Change | ClaimKind::Difference => {
                format!(
                    "a `{}` claim compares `baseline` with `candidate`",
                    self.key()
                )
            }
            ClaimKind::Fit => "a `fit` claim judges `variant`'s outcome and peak reserved memory \
                               against its `knobs.vram_budget_gib`"
                .to_string(),
            ClaimKind::Order => "an `order` claim names its variants in `order`, e.g. \
                                 `order = \"fast < medium < slow\"`"
                .to_string(),
            ClaimKind::Bound => "a `bound` claim names one `variant`".to_string(),
        }
    }

    fn read(self, r: &mut ClaimReader<'_, '_, '_>) -> Result<ClaimCheck, ManifestError> {
        match self {
            ClaimKind::Change | ClaimKind::Difference => read_comparison(self, r),
            ClaimKind::Fit => read_fit(r),
            ClaimKind::Order => read_order(r),
            ClaimKind::Bound => read_bound(r),
        }
    }
}

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
    check_keys(ctx, table, &claim_keys(), path)?;
    let cx = Cx {
        ctx,
        workload: None,
        per_variant: false,
    };
    let mut header = ClaimHeader::default();
    header.read_rows(&cx, table, item, path)?;
    let (Some(id), Some(source), Some(summary)) = (header.id, header.source, header.summary) else {
        unreachable!("required rows");
    };
    let (id, id_offset) = (id.value, id.offset);
    let line = ctx.line_col(id_offset).0;
    let def = |check: ClaimCheck, refs: Vec<VariantRef>, fit_offset: Option<usize>| ClaimDef {
        id: id.clone(),
        source: source.clone(),
        summary: summary.clone(),
        line,
        path: path.to_string(),
        check,
        refs,
        fit_offset,
    };

    let kind = claim_kind(ctx, table, path, &id)?;
    let reason = not_applicable_reason(&cx, table, item, path, &id)?;
    let Some((kind, kind_value)) = kind else {
        return match reason {
            Some(reason) => Ok(def(ClaimCheck::NotApplicable { reason }, Vec::new(), None)),
            None => {
                let keys: Vec<String> = ClaimKind::ALL
                    .iter()
                    .map(|k| format!("`{}`", k.key()))
                    .collect();
                let (last, first) = keys.split_last().expect("claim kinds");
                Err(ctx
                    .err(
                        item.span(),
                        path,
                        format!("claim `{id}` states nothing to measure"),
                    )
                    .with_hint(format!(
                        "add one of {} or {last}, or mark it `applicable = false` with a `reason`",
                        first.join(", ")
                    )))
            }
        };
    };
    for name in QUALIFIER_KEYS {
        if let Some((key, _)) = table.get_key_value(name) {
            if !kind.takes().contains(&name) {
                return Err(ctx
                    .err(
                        key.span(),
                        &join(path, name),
                        format!("`{name}` does not apply to a `{}` claim", kind.key()),
                    )
                    .with_hint(kind.takes_hint()));
            }
        }
    }
    let metric = claim_metric(ctx, table, path)?;
    let dimension = Dimension::of_metric(&metric).unwrap_or(Dimension::Time);
    let absolute_time = match table.get_key_value("absolute_time") {
        Some((key, value)) => {
            let set = expect_bool(ctx, value, &join(path, "absolute_time"))?;
            if dimension != Dimension::Time {
                return Err(ctx
                    .err(
                        key.span(),
                        &join(path, "absolute_time"),
                        format!("`absolute_time` does not apply to `{metric}`, which is no time"),
                    )
                    .with_hint("remove it: only bounds and differences of times need it"));
            }
            set
        }
        None => false,
    };

    let mut reader = ClaimReader {
        ctx,
        table,
        item,
        path,
        id: &id,
        kind_value,
        kind_path: join(path, kind.key()),
        metric,
        dimension,
        absolute_time,
        refs: Vec::new(),
        fit_offset: None,
    };
    let check = kind.read(&mut reader)?;
    let check = match reason {
        Some(reason) => ClaimCheck::NotApplicable { reason },
        None => check,
    };
    Ok(def(check, reader.refs, reader.fit_offset))
}

/// A non-empty string.
fn nonempty_str(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<String, ManifestError> {
    let text = expect_str(ctx, value, path)?;
    if text.trim().is_empty() {
        return Err(ctx.err(value.span(), path, format!("`{path}` is empty")));
    }
    Ok(text.to_string())
}

/// `[A-Z][A-Z0-9]*-[0-9]{2,}`, non-empty, with its offset for the claim's line.
fn claim_id(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<Located<String>, ManifestError> {
    let id = nonempty_str(ctx, value, path)?;
    let offset = value.span().start;
    if !valid_claim(&id) {
        return Err(ctx
            .err(offset..offset, path, format!("invalid claim id `{id}`"))
            .with_hint(
                "claim ids look like `H0-01`: an uppercase letter, letters or digits, `-`, then \
                 at least two digits",
            ));
    }
    Ok(Located {
        value: id,
        path: path.to_string(),
        offset,
    })
}

/// A boolean with its span.
fn spanned_bool(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<(bool, Range<usize>), ManifestError> {
    Ok((expect_bool(ctx, value, path)?, value.span()))
}

/// The claim's kind and its value; `None` without a kind key. Two kind keys are an error at
/// the second.
fn claim_kind<'t, 'i>(
    ctx: &Ctx<'_>,
    table: &'t DeTable<'i>,
    path: &str,
    id: &str,
) -> Result<Option<(ClaimKind, &'t Value<'i>)>, ManifestError> {
    let kinds: Vec<_> = entries(table)
        .into_iter()
        .filter_map(|(key, value)| Some((ClaimKind::of_key(key.get_ref())?, key, value)))
        .collect();
    if let [(first, _, _), (second, key, _), ..] = kinds.as_slice() {
        let (a, b) = (first.key(), second.key());
        return Err(ctx
            .err(
                key.span(),
                &join(path, b),
                format!("claim `{id}` combines `{a}` and `{b}`"),
            )
            .with_hint(
                "one measurement per claim: split it into two `[[claim]]` entries with the same id",
            ));
    }
    Ok(kinds.first().map(|(kind, _, value)| (*kind, *value)))
}

/// `applicable = false` with its `reason`: the reason, or `None` for a claim that applies.
fn not_applicable_reason(
    cx: &Cx<'_>,
    table: &DeTable<'_>,
    item: &Value<'_>,
    path: &str,
    id: &str,
) -> Result<Option<String>, ManifestError> {
    let ctx = cx.ctx;
    let mut rows = Applicability::default();
    rows.read_rows(cx, table, item, path)?;
    let Applicability { applicable, reason } = rows;
    if let Some((key, _)) = table.get_key_value("reason") {
        if !matches!(applicable, Some((false, _))) {
            return Err(ctx
                .err(
                    key.span(),
                    &join(path, "reason"),
                    "`reason` is only for claims marked `applicable = false`",
                )
                .with_hint("add `applicable = false`, or remove `reason`"));
        }
    }
    if let Some((false, span)) = applicable {
        if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(ctx
                .err(
                    span,
                    &join(path, "applicable"),
                    format!("claim `{id}` is marked not applicable without a `reason`"),
                )
                .with_hint("add `reason = \"…\"`: why this harness cannot check the claim"));
        }
    }
    Ok(reason)
}

/// `metric`, `wall_ms` by default.
fn claim_metric(ctx: &Ctx<'_>, table: &DeTable<'_>, path: &str) -> Result<String, ManifestError> {
    let Some((_, value)) = table.get_key_value("metric") else {
        return Ok(String::from("wall_ms"));
    };
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
    Ok(name.to_string())
}

/// What the readers of the claim kinds share: the claim's table, its kind's value and what
/// has been read so far.
struct ClaimReader<'c, 't, 'i> {
    ctx: &'c Ctx<'c>,
    table: &'t DeTable<'i>,
    item: &'t Value<'i>,
    path: &'c str,
    id: &'c str,
    kind_value: &'t Value<'i>,
    /// `claim[i].<kind>`.
    kind_path: String,
    metric: String,
    dimension: Dimension,
    absolute_time: bool,
    refs: Vec<VariantRef>,
    fit_offset: Option<usize>,
}

impl ClaimReader<'_, '_, '_> {
    /// The variant named by the required key `name`, remembered for the check against the plan.
    fn variant(&mut self, name: &str) -> Result<String, ManifestError> {
        let (ctx, path) = (self.ctx, self.path);
        let value = required(ctx, self.table, self.item, path, name)?;
        let key = join(path, name);
        let text = expect_str(ctx, value, &key)?;
        self.refs.push(VariantRef {
            name: text.to_string(),
            key,
            offset: value.span().start,
        });
        Ok(text.to_string())
    }

    /// The kind's value as a range in `dimension`.
    fn range(&self, dimension: Dimension) -> Result<ClaimRange, ManifestError> {
        let (ctx, value, kind_path) = (self.ctx, self.kind_value, &self.kind_path);
        let DeValue::String(text) = value.get_ref() else {
            return Err(type_error(ctx, value, kind_path, "a range string")
                .with_hint("write the range in quotes, e.g. `change = \"-40%..-30%\"`"));
        };
        parse_range(text, dimension).map_err(|e| {
            let error = ctx.err(
                value.span(),
                kind_path,
                format!("invalid range for `{kind_path}`: {}", e.message),
            );
            match e.hint {
                Some(hint) => error.with_hint(hint),
                None => error,
            }
        })
    }

    /// Absolute times do not transfer between machines, unless `absolute_time = true`.
    fn refuse_absolute_time(&self) -> Result<(), ManifestError> {
        if self.dimension == Dimension::Time && !self.absolute_time {
            let (kind_path, metric) = (&self.kind_path, &self.metric);
            return Err(self
                .ctx
                .err(
                    self.kind_value.span(),
                    kind_path,
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
    }
}

/// `change` (relative) or `difference` (in the metric's unit) from `baseline` to `candidate`.
fn read_comparison(
    kind: ClaimKind,
    r: &mut ClaimReader<'_, '_, '_>,
) -> Result<ClaimCheck, ManifestError> {
    let expected = if kind == ClaimKind::Change {
        r.range(Dimension::Relative)?
    } else {
        r.refuse_absolute_time()?;
        r.range(r.dimension)?
    };
    let baseline = r.variant("baseline")?;
    let candidate = r.variant("candidate")?;
    if baseline == candidate {
        let at = r.refs[1].offset;
        return Err(r
            .ctx
            .err(
                at..at,
                &join(r.path, "candidate"),
                format!("claim `{}` compares `{baseline}` with itself", r.id),
            )
            .with_hint("`baseline` and `candidate` must name different variants"));
    }
    let metric = r.metric.clone();
    Ok(if kind == ClaimKind::Change {
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
    })
}

/// `fit = true | false`: `variant` runs within its VRAM budget, or runs out of memory.
fn read_fit(r: &mut ClaimReader<'_, '_, '_>) -> Result<ClaimCheck, ManifestError> {
    let fits = expect_bool(r.ctx, r.kind_value, &r.kind_path)?;
    if fits {
        r.fit_offset = Some(r.kind_value.span().start);
    }
    Ok(ClaimCheck::Fit {
        variant: r.variant("variant")?,
        fits,
        budget_bytes: None,
    })
}

/// `order = "a < b = c"`.
fn read_order(r: &mut ClaimReader<'_, '_, '_>) -> Result<ClaimCheck, ManifestError> {
    let (variants, relations) = parse_order(r.ctx, r.kind_value, &r.kind_path, &mut r.refs)?;
    Ok(ClaimCheck::Order {
        metric: r.metric.clone(),
        variants,
        relations,
    })
}

/// `bound = "RANGE"` on `metric` of `variant`.
fn read_bound(r: &mut ClaimReader<'_, '_, '_>) -> Result<ClaimCheck, ManifestError> {
    r.refuse_absolute_time()?;
    let expected = r.range(r.dimension)?;
    Ok(ClaimCheck::Bound {
        metric: r.metric.clone(),
        variant: r.variant("variant")?,
        expected,
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
mod tests;
