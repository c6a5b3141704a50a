//! `[compare]` (and a profile's `compare`).

use super::*;

/// `[compare]` (or a profile's `compare`); `thresholds` merge metric by metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::manifest) struct ComparePatch {
    pub alpha: Option<f64>,
    pub correction: Option<Correction>,
    pub time_threshold: Option<f64>,
    pub memory_rel_tolerance: Option<f64>,
    pub memory_abs_tolerance_bytes: Option<u64>,
    pub thresholds: BTreeMap<String, f64>,
}

pub(in crate::manifest) const COMPARE_KEYS: &[&str] = &[
    "alpha",
    "correction",
    "time_threshold",
    "memory_rel_tolerance",
    "memory_abs_tolerance_mib",
    "thresholds",
];

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
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<ComparePatch, ManifestError> {
    let table = expect_table(ctx, value, path)?;
    check_keys(ctx, table, COMPARE_KEYS, path)?;
    let mut compare = ComparePatch::default();
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        match name {
            "alpha" => compare.alpha = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?),
            "correction" => compare.correction = Some(parse_correction(ctx, value, &key_path)?),
            "time_threshold" => {
                compare.time_threshold = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?);
            }
            "memory_rel_tolerance" => {
                compare.memory_rel_tolerance =
                    Some(expect_float_in(ctx, value, &key_path, HALF_OPEN_01)?);
            }
            "memory_abs_tolerance_mib" => {
                let mib = expect_float_in(ctx, value, &key_path, AT_LEAST_0)?;
                let bytes = (mib * MIB).round();
                // 2^64 is exactly representable; anything from there on does not fit.
                if bytes >= 2f64.powi(64) {
                    return Err(ctx.err(
                        value.span(),
                        &key_path,
                        format!("`{key_path}` = {} is too large", ctx.snippet(value.span())),
                    ));
                }
                compare.memory_abs_tolerance_bytes = Some(bytes as u64);
            }
            "thresholds" => {
                for (metric, threshold) in entries(expect_table(ctx, value, &key_path)?) {
                    let metric_name: &str = metric.get_ref();
                    let metric_path = join(&key_path, metric_name);
                    check_metric_name(ctx, metric.span(), &metric_path, metric_name, &key_path)?;
                    let threshold = expect_float_in(ctx, threshold, &metric_path, OPEN_01)?;
                    compare
                        .thresholds
                        .insert(metric_name.to_string(), threshold);
                }
            }
            _ => {}
        }
    }
    Ok(compare)
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
            "memory metrics are compared with `memory_rel_tolerance` and \
             `memory_abs_tolerance_mib`, not per-metric thresholds",
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
