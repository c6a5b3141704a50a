//! `[run]` (and a profile's or variant's `run`), with `settle`.

use super::*;

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

pub(in crate::manifest) const RUN_KEYS: &[&str] = &[
    "warmup",
    "warmup_max",
    "settle",
    "repetitions",
    "repetitions_max",
    "target_rel_ci",
    "processes",
    "processes_max",
    "timeout",
    "adaptive_budget",
    "order",
    "seed",
];
/// `[run]` keys that apply to the whole plan, so not per variant.
pub(in crate::manifest) const PLAN_WIDE_RUN_KEYS: &[&str] = &["order", "seed", "adaptive_budget"];
pub(in crate::manifest) const SETTLE_KEYS: &[&str] = &["window", "tolerance", "min_clock_fraction"];
pub(in crate::manifest) fn parse_run(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    per_variant: bool,
) -> Result<RunPatch, ManifestError> {
    let table = expect_table(ctx, value, path)?;
    check_keys(ctx, table, RUN_KEYS, path)?;
    let mut run = RunPatch::default();
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        if per_variant && PLAN_WIDE_RUN_KEYS.contains(&name) {
            return Err(ctx
                .err(
                    key.span(),
                    &key_path,
                    format!("`{name}` applies to the whole plan and cannot be set per variant"),
                )
                .with_hint("set it in `[run]` or in a profile's `run`"));
        }
        let u32_at_least = |min: i128| -> Result<Option<Located<u32>>, ManifestError> {
            let i = expect_int(ctx, value, &key_path)?;
            check_int_range(ctx, value, &key_path, i, min, i128::from(u32::MAX))?;
            Ok(Some(Located {
                value: i as u32,
                path: key_path.clone(),
                offset: value.span().start,
            }))
        };
        match name {
            "warmup" => run.warmup = u32_at_least(0)?,
            "warmup_max" => run.warmup_max = u32_at_least(0)?,
            "settle" => run.settle = parse_settle(ctx, value, &key_path)?,
            "repetitions" => run.repetitions = u32_at_least(1)?,
            "repetitions_max" => run.repetitions_max = u32_at_least(1)?,
            "target_rel_ci" => {
                run.target_rel_ci = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?);
            }
            "processes" => run.processes = u32_at_least(1)?,
            "processes_max" => run.processes_max = u32_at_least(1)?,
            "timeout" => run.timeout_ms = Some(parse_timeout(ctx, value, &key_path)?),
            "adaptive_budget" => {
                let (duration, _) = parse_duration(ctx, value, &key_path)?;
                run.adaptive_budget_s = Some(duration.as_secs_f64());
            }
            "order" => run.order = Some(expect_enum(ctx, value, &key_path)?),
            "seed" => {
                let i = expect_int(ctx, value, &key_path)?;
                check_int_range(ctx, value, &key_path, i, 0, i128::from(u64::MAX))?;
                run.seed = Some(i as u64);
            }
            _ => {}
        }
    }
    Ok(run)
}

pub(in crate::manifest) fn parse_settle(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<SettlePatch, ManifestError> {
    let table = match value.get_ref() {
        DeValue::Boolean(enabled) => {
            return Ok(SettlePatch {
                enabled: Some(*enabled),
                ..SettlePatch::default()
            })
        }
        DeValue::Table(table) => table,
        DeValue::String(s) if s == "true" || s == "false" => {
            return Err(type_error(ctx, value, path, "`true`, `false` or a table"));
        }
        _ => {
            return Err(
                type_error(ctx, value, path, "`true`, `false` or a table").with_hint(
                    "write `settle = false` for a fixed warm-up, or a table such as \
                     `settle = { window = 3, tolerance = 0.05 }`",
                ),
            )
        }
    };
    check_keys(ctx, table, SETTLE_KEYS, path)?;
    let mut settle = SettlePatch {
        enabled: Some(true),
        ..SettlePatch::default()
    };
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        match name {
            "window" => {
                let i = expect_int(ctx, value, &key_path)?;
                check_int_range(ctx, value, &key_path, i, 2, i128::from(u32::MAX))?;
                settle.window = Some(i as u32);
            }
            "tolerance" => {
                settle.tolerance = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?);
            }
            "min_clock_fraction" => {
                settle.min_clock_fraction =
                    Some(expect_float_in(ctx, value, &key_path, CLOSED_01)?);
            }
            _ => {}
        }
    }
    Ok(settle)
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
