//! `[matrix]`: axes over params and knobs, expanded over every variant.

use super::knobs::{check_env_name, env_setting, env_value, knob_leaf, knob_leaves, knob_setting};
use super::model::{Axis, Cell, Setting};
use super::params::param_value;
use crate::knobs::registry::KnobDef;
use crate::manifest::error::{backticked, ManifestError};
use crate::manifest::spanned::{expect_table, flatten, type_error, Ctx, Value};
use crate::plan::MAX_VARIANTS;
use crate::workloads::catalog::{ParamSpec, WorkloadSpec};
use std::ops::Range;
use toml::de::DeValue;

/// What a matrix axis sets.
pub(in crate::manifest) enum AxisTarget {
    /// The parameter's name and spec (an open workload's undeclared ones share one spec).
    Param(String, &'static ParamSpec),
    Knob(&'static KnobDef),
    Env(String),
}

pub(in crate::manifest) fn parse_matrix(
    ctx: &Ctx<'_>,
    workload: &'static WorkloadSpec,
    value: &Value<'_>,
) -> Result<Vec<Axis>, ManifestError> {
    let table = expect_table(ctx, value, "matrix")?;
    // Quoted keys ("params.resolution") and dotted keys (params.resolution) both name axes.
    let mut leaves = Vec::new();
    flatten(table, "", &mut leaves);
    leaves.sort_by_key(|(_, key, _)| key.span().start);

    let mut axes = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut product: usize = 1;
    for (axis_path, key, values) in leaves {
        let path = format!("matrix.{axis_path}");
        if seen.contains(&axis_path) {
            return Err(ctx.err(
                key.span(),
                &path,
                format!("duplicate matrix axis `{axis_path}`"),
            ));
        }
        let target = axis_target(ctx, workload, &axis_path, key.span(), &path)?;
        let DeValue::Array(items) = values.get_ref() else {
            return Err(type_error(ctx, values, &path, "an array of values")
                .with_hint(format!("write `\"{axis_path}\" = [value, …]`")));
        };
        if items.is_empty() {
            return Err(ctx
                .err(
                    values.span(),
                    &path,
                    format!("matrix axis `{axis_path}` has no values"),
                )
                .with_hint("list at least one value"));
        }
        let mut cells: Vec<Cell> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let setting = match &target {
                AxisTarget::Param(name, spec) => {
                    Setting::Param(name.clone(), param_value(ctx, spec, item, &item_path)?)
                }
                AxisTarget::Knob(knob) => Setting::Knob(knob_setting(ctx, knob, item, &item_path)?),
                AxisTarget::Env(name) => {
                    Setting::Knob(env_setting(name, env_value(ctx, item, &item_path)?))
                }
            };
            let label = match &setting {
                Setting::Param(_, value) => value.to_string(),
                Setting::Knob(knob) => knob.label(),
            };
            if cells.iter().any(|c| c.label == label) {
                return Err(ctx
                    .err(
                        item.span(),
                        &item_path,
                        format!("duplicate value `{label}` in matrix axis `{axis_path}`"),
                    )
                    .with_hint("each value of an axis must give a distinct variant name"));
            }
            cells.push(Cell { label, setting });
        }
        let short = axis_path
            .rsplit('.')
            .next()
            .unwrap_or(&axis_path)
            .to_string();
        product = product.saturating_mul(cells.len());
        if product > MAX_VARIANTS {
            return Err(ctx
                .err(
                    key.span(),
                    &path,
                    format!(
                        "with axis `{axis_path}` the matrix has more than {MAX_VARIANTS} cells"
                    ),
                )
                .with_hint(format!(
                    "a plan holds at most {MAX_VARIANTS} variants: fewer axes or values"
                )));
        }
        axes.push(Axis {
            short,
            cells,
            offset: key.span().start,
        });
        seen.push(axis_path);
    }
    Ok(axes)
}

pub(in crate::manifest) fn axis_target(
    ctx: &Ctx<'_>,
    workload: &'static WorkloadSpec,
    axis_path: &str,
    span: Range<usize>,
    path: &str,
) -> Result<AxisTarget, ManifestError> {
    if let Some(name) = axis_path.strip_prefix("params.") {
        if let Some(spec) = workload.param(name) {
            return Ok(AxisTarget::Param(name.to_string(), spec));
        }
    } else if let Some(knob) = axis_path.strip_prefix("knobs.") {
        if let Some(var) = knob.strip_prefix("env.") {
            check_env_name(ctx, span, path, var, "knobs.env")?;
            return Ok(AxisTarget::Env(var.to_string()));
        }
        if let Some(leaf) = knob_leaf(knob) {
            return Ok(AxisTarget::Knob(leaf));
        }
    }
    let mut valid: Vec<String> = workload
        .params
        .iter()
        .map(|p| format!("params.{}", p.name))
        .collect();
    valid.extend(knob_leaves().map(|k| format!("knobs.{}", k.name)));
    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
    let hint = match crate::manifest::error::closest(axis_path, &valid) {
        Some(axis) => format!("did you mean `{axis}`?"),
        None => format!(
            "axes are `params.<name>` or `knobs.<knob>`: {}, `knobs.env.<NAME>`",
            backticked(&valid)
        ),
    };
    Err(ctx
        .err(span, path, format!("unknown matrix axis `{axis_path}`"))
        .with_hint(hint))
}
