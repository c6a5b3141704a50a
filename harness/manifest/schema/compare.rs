//! `[compare]` (and a profile's `compare`).

use super::run::fraction;
use crate::knobs::Spelled;
use crate::manifest::error::ManifestError;
use crate::manifest::field::{accept, field, Cx, Field, Patch};
use crate::manifest::spanned::{
    entries, expect_enum, expect_float_in, expect_table, join, unknown_value, Ctx, Value,
    AT_LEAST_0, HALF_OPEN_01, OPEN_01,
};
use crate::stats::Correction;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::de::DeValue;

/// `[compare]` (or a profile's `compare`); `thresholds` merge metric by metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::manifest) struct ComparePatch {
    pub alpha: Option<f64>,
    pub correction: Option<Correction>,
    pub time_threshold: Option<f64>,
    pub memory_rel_tolerance: Option<f64>,
    pub memory_abs_tolerance_bytes: Option<u64>,
    pub reserved_rel_tolerance: Option<f64>,
    pub reserved_abs_tolerance_bytes: Option<u64>,
    pub host_rss_rel_tolerance: Option<f64>,
    pub host_rss_abs_tolerance_bytes: Option<u64>,
    pub thresholds: BTreeMap<String, f64>,
}

impl Patch for ComparePatch {
    const FIELDS: &'static [Field<Self>] = &[
        field!("alpha", fraction(OPEN_01), alpha),
        field!("correction", parse_correction, correction),
        field!("time_threshold", fraction(OPEN_01), time_threshold),
        field!(
            "memory_rel_tolerance",
            fraction(HALF_OPEN_01),
            memory_rel_tolerance
        ),
        field!(
            "memory_abs_tolerance_mib",
            mib_as_bytes,
            memory_abs_tolerance_bytes
        ),
        field!(
            "reserved_rel_tolerance",
            fraction(HALF_OPEN_01),
            reserved_rel_tolerance
        ),
        field!(
            "reserved_abs_tolerance_mib",
            mib_as_bytes,
            reserved_abs_tolerance_bytes
        ),
        field!(
            "host_rss_rel_tolerance",
            fraction(HALF_OPEN_01),
            host_rss_rel_tolerance
        ),
        field!(
            "host_rss_abs_tolerance_mib",
            mib_as_bytes,
            host_rss_abs_tolerance_bytes
        ),
        Field::new(
            "thresholds",
            |patch, cx, value, path| {
                patch.thresholds = parse_thresholds(cx.ctx, value, path)?;
                Ok(())
            },
            // Metric by metric.
            |low, high| {
                low.thresholds
                    .extend(high.thresholds.iter().map(|(k, v)| (k.clone(), *v)));
            },
        ),
    ];
}

impl Spelled for Correction {
    const ALL: &'static [Self] = &[
        Correction::Holm,
        Correction::BenjaminiHochberg,
        Correction::None,
    ];

    fn as_str(self) -> &'static str {
        self.name()
    }
}

pub(in crate::manifest) fn parse_compare(
    cx: &Cx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<ComparePatch, ManifestError> {
    ComparePatch::read(cx, value, path, &accept)
}

/// MiB, as a whole number of bytes.
fn mib_as_bytes(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<u64, ManifestError> {
    let mib = expect_float_in(ctx, value, path, AT_LEAST_0)?;
    let bytes = (mib * MIB).round();
    // 2^64 is exactly representable; anything from there on does not fit.
    if bytes >= 2f64.powi(64) {
        return Err(ctx.err(
            value.span(),
            path,
            format!("`{path}` = {} is too large", ctx.snippet(value.span())),
        ));
    }
    Ok(bytes as u64)
}

/// Per-metric time thresholds.
fn parse_thresholds(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<BTreeMap<String, f64>, ManifestError> {
    let mut thresholds = BTreeMap::new();
    for (metric, threshold) in entries(expect_table(ctx, value, path)?) {
        let metric_name: &str = metric.get_ref();
        let metric_path = join(path, metric_name);
        check_metric_name(ctx, metric.span(), &metric_path, metric_name, path)?;
        let threshold = expect_float_in(ctx, threshold, &metric_path, OPEN_01)?;
        thresholds.insert(metric_name.to_string(), threshold);
    }
    Ok(thresholds)
}

/// Bytes in a MiB.
pub(in crate::manifest) const MIB: f64 = 1024.0 * 1024.0;

/// Time metrics that a per-metric threshold can name: `wall_ms`, `gpu_ms`, `stage_<name>_ms`.
pub(in crate::manifest) fn check_metric_name(
    ctx: &Ctx<'_>,
    span: Range<usize>,
    path: &str,
    name: &str,
    table_path: &str,
) -> Result<(), ManifestError> {
    const FIXED: &[&str] = &["wall_ms", "gpu_ms"];
    let stage = name
        .strip_prefix("stage_")
        .and_then(|rest| rest.strip_suffix("_ms"));
    let valid = FIXED.contains(&name)
        || stage.is_some_and(|stage| {
            !stage.is_empty()
                && stage
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if valid {
        return Ok(());
    }
    let hint = if name.starts_with("peak_") || name.ends_with("_bytes") {
        String::from(
            "memory metrics are compared with `memory_*`, `reserved_*` and \
             `host_rss_*` tolerances, not per-metric thresholds",
        )
    } else if let Some(metric) = crate::manifest::error::closest(name, FIXED) {
        format!("did you mean `{metric}`?")
    } else {
        String::from(
            "metric names are `wall_ms`, `gpu_ms` or `stage_<name>_ms`, where <name> is \
             lowercase letters, digits and `_` (e.g. `stage_attention_ms`)",
        )
    };
    Err(ctx
        .err(
            span,
            path,
            format!("invalid metric name `{name}` in `{table_path}`"),
        )
        .with_hint(hint))
}

pub(in crate::manifest) fn parse_correction(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<Correction, ManifestError> {
    let names = Correction::names();
    // Names from other tools that `closest` would not map.
    if let DeValue::String(s) = value.get_ref() {
        let lower = s.to_ascii_lowercase();
        if ["bh", "fdr", "fdr_bh", "fdr-bh"].contains(&lower.as_str()) {
            return Err(unknown_value(ctx, value, path, s, &names)
                .with_hint("did you mean `benjamini-hochberg`?"));
        }
        if lower == "bonferroni" {
            return Err(unknown_value(ctx, value, path, s, &names).with_hint(
                "use `holm`: it controls the same family-wise error rate and is never less \
                 powerful than Bonferroni",
            ));
        }
    }
    expect_enum(ctx, value, path)
}
