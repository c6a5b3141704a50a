//! `[run]` (and a profile's or variant's `run`), with `settle`.

use crate::manifest::error::ManifestError;
use crate::manifest::field::Located;
use crate::manifest::field::{
    accept, field, overlay_fields, plan_wide, refuse_plan_wide, Cx, Field, Patch,
};
use crate::manifest::spanned::{
    check_int_range, expect_enum, expect_float_in, expect_int, parse_duration, type_error, Ctx,
    FloatRange, Value, CLOSED_01, OPEN_01,
};
use crate::plan::Order;
use toml::de::DeValue;

#[derive(Debug, Clone, Default)]
pub(in crate::manifest) struct RunPatch {
    pub warmup: Option<Located<u32>>,
    pub warmup_max: Option<Located<u32>>,
    pub settle: SettlePatch,
    pub repetitions: Option<Located<u32>>,
    pub repetitions_max: Option<Located<u32>>,
    pub target_rel_ci: Option<f64>,
    pub processes: Option<Located<u32>>,
    pub processes_max: Option<Located<u32>>,
    pub timeout_ms: Option<u64>,
    /// Plan-wide, like `order` and `seed`: never set in a variant's layer. `Some(0.0)`
    /// (`"0s"`) switches off a budget set by a lower layer.
    pub adaptive_budget_s: Option<f64>,
    pub order: Option<Order>,
    pub seed: Option<u64>,
}

/// `settle = true | false | { window, tolerance, min_clock_fraction }`. Whether the rule is on
/// and each of its fields merge separately: `settle = false` in a profile and
/// `settle = { window = 5 }` in a variant turn it back on with a window of 5; `true` turns it
/// on with the fields set so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::manifest) struct SettlePatch {
    /// `true` for a table.
    pub enabled: Option<bool>,
    pub window: Option<u32>,
    pub tolerance: Option<f64>,
    pub min_clock_fraction: Option<f64>,
}

impl Patch for RunPatch {
    const FIELDS: &'static [Field<Self>] = &[
        field!("warmup", u32_at_least(0), warmup),
        field!("warmup_max", u32_at_least(0), warmup_max),
        field!(table "settle", parse_settle, settle),
        field!("repetitions", u32_at_least(1), repetitions),
        field!("repetitions_max", u32_at_least(1), repetitions_max),
        field!("target_rel_ci", fraction(OPEN_01), target_rel_ci),
        field!("processes", u32_at_least(1), processes),
        field!("processes_max", u32_at_least(1), processes_max),
        field!("timeout", parse_timeout, timeout_ms),
        plan_wide(field!("adaptive_budget", seconds, adaptive_budget_s)),
        plan_wide(field!("order", expect_enum, order)),
        plan_wide(field!("seed", u64_value, seed)),
    ];
}

impl Patch for SettlePatch {
    const FIELDS: &'static [Field<Self>] = &[
        field!("window", u32_at_least_plain(2), window),
        field!("tolerance", fraction(OPEN_01), tolerance),
        field!(
            "min_clock_fraction",
            fraction(CLOSED_01),
            min_clock_fraction
        ),
    ];

    /// Whether the rule is on merges like a field of its own.
    fn overlay(&mut self, higher: &Self) {
        overlay_fields(self, higher);
        self.enabled = higher.enabled.or(self.enabled);
    }
}

/// Reads `[run]`; in a variant, refuses the keys that apply to the whole plan.
pub(in crate::manifest) fn parse_run(
    cx: &Cx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<RunPatch, ManifestError> {
    RunPatch::read(cx, value, path, &|field, span, key_path| {
        refuse_plan_wide(cx, "run", field, span, key_path)
    })
}

/// A count of at least `min`, with the key that set it.
fn u32_at_least(
    min: i128,
) -> impl Fn(&Ctx<'_>, &Value<'_>, &str) -> Result<Located<u32>, ManifestError> {
    move |ctx, value, path| {
        Ok(Located {
            value: u32_at_least_plain(min)(ctx, value, path)?,
            path: path.to_string(),
            offset: value.span().start,
        })
    }
}

fn u32_at_least_plain(
    min: i128,
) -> impl Fn(&Ctx<'_>, &Value<'_>, &str) -> Result<u32, ManifestError> {
    move |ctx, value, path| {
        let i = expect_int(ctx, value, path)?;
        check_int_range(ctx, value, path, i, min, i128::from(u32::MAX))?;
        Ok(i as u32)
    }
}

fn u64_value(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<u64, ManifestError> {
    let i = expect_int(ctx, value, path)?;
    check_int_range(ctx, value, path, i, 0, i128::from(u64::MAX))?;
    Ok(i as u64)
}

/// A number in `range`.
pub(in crate::manifest) fn fraction(
    range: FloatRange,
) -> impl Fn(&Ctx<'_>, &Value<'_>, &str) -> Result<f64, ManifestError> {
    move |ctx, value, path| expect_float_in(ctx, value, path, range)
}

/// A duration, in seconds.
fn seconds(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<f64, ManifestError> {
    let (duration, _) = parse_duration(ctx, value, path)?;
    Ok(duration.as_secs_f64())
}

/// `settle = true | false | { … }`: a table turns the rule on and sets its fields.
fn parse_settle(cx: &Cx<'_>, value: &Value<'_>, path: &str) -> Result<SettlePatch, ManifestError> {
    let ctx = cx.ctx;
    match value.get_ref() {
        DeValue::Boolean(enabled) => Ok(SettlePatch {
            enabled: Some(*enabled),
            ..SettlePatch::default()
        }),
        DeValue::Table(_) => Ok(SettlePatch {
            enabled: Some(true),
            ..SettlePatch::read(cx, value, path, &accept)?
        }),
        DeValue::String(s) if s == "true" || s == "false" => {
            Err(type_error(ctx, value, path, "`true`, `false` or a table"))
        }
        _ => Err(
            type_error(ctx, value, path, "`true`, `false` or a table").with_hint(
                "write `settle = false` for a fixed warm-up, or a table such as \
                 `settle = { window = 3, tolerance = 0.05 }`",
            ),
        ),
    }
}

pub(in crate::manifest) fn parse_timeout(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<u64, ManifestError> {
    let (duration, text) = parse_duration(ctx, value, path)?;
    match u64::try_from(duration.as_millis()) {
        Ok(0) => Err(ctx.err(
            value.span(),
            path,
            format!("`{path}` = \"{text}\" is out of range: must be at least 1ms"),
        )),
        Ok(ms) => Ok(ms),
        Err(_) => Err(ctx.err(
            value.span(),
            path,
            format!("`{path}` = \"{text}\" is too long"),
        )),
    }
}
