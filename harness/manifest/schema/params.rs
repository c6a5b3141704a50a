//! `[params]`: typed and range-checked against the workload's catalogue entry.

use crate::manifest::error::{choice_hint, ManifestError};
use crate::manifest::spanned::{
    check_int_range, entries, expect_bool, expect_int, expect_number, expect_str, expect_table,
    join, unknown_value, Ctx, Value,
};
use crate::plan::ParamValue;
use crate::workloads::catalog::{ParamKind, ParamSpec, WorkloadSpec};
use std::collections::BTreeMap;
use std::ops::Range;
use toml::de::DeValue;

pub(in crate::manifest) fn parse_params(
    ctx: &Ctx<'_>,
    workload: &WorkloadSpec,
    value: &Value<'_>,
    path: &str,
) -> Result<BTreeMap<String, ParamValue>, ManifestError> {
    let mut params = BTreeMap::new();
    for (key, value) in entries(expect_table(ctx, value, path)?) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        let Some(spec) = workload.param(name) else {
            return Err(unknown_param(ctx, workload, key.span(), &key_path, name));
        };
        params.insert(name.to_string(), param_value(ctx, spec, value, &key_path)?);
    }
    Ok(params)
}

pub(in crate::manifest) fn unknown_param(
    ctx: &Ctx<'_>,
    workload: &WorkloadSpec,
    span: Range<usize>,
    key_path: &str,
    name: &str,
) -> ManifestError {
    let names: Vec<&str> = workload.params.iter().map(|p| p.name).collect();
    ctx.err(
        span,
        key_path,
        format!("unknown parameter `{name}` for workload `{}`", workload.id),
    )
    .with_hint(choice_hint(
        name,
        &names,
        &format!("parameters of `{}`", workload.id),
    ))
}

pub(in crate::manifest) fn param_value(
    ctx: &Ctx<'_>,
    spec: &ParamSpec,
    value: &Value<'_>,
    path: &str,
) -> Result<ParamValue, ManifestError> {
    match spec.kind {
        ParamKind::Int { min, max } => {
            let i = expect_int(ctx, value, path)?;
            check_int_range(ctx, value, path, i, i128::from(min), i128::from(max))?;
            Ok(ParamValue::Int(i as i64))
        }
        ParamKind::Float { min, max } => {
            let x = expect_number(ctx, value, path)?;
            if x < min || x > max {
                return Err(ctx.err(
                    value.span(),
                    path,
                    format!(
                        "`{path}` = {} is out of range: must be between {min} and {max}",
                        ctx.snippet(value.span())
                    ),
                ));
            }
            Ok(ParamValue::Float(x))
        }
        ParamKind::Bool => Ok(ParamValue::Bool(expect_bool(ctx, value, path)?)),
        ParamKind::Choice(options) => {
            let s = expect_str(ctx, value, path)?;
            if options.contains(&s) {
                Ok(ParamValue::Str(s.to_string()))
            } else {
                Err(unknown_value(ctx, value, path, s, options))
            }
        }
        ParamKind::Text(check) => {
            let s = expect_str(ctx, value, path)?;
            (check.check)(s).map_err(|hint| {
                ctx.err(
                    value.span(),
                    path,
                    format!("invalid value `{s}` for `{path}`"),
                )
                .with_hint(hint)
            })?;
            Ok(ParamValue::Str(s.to_string()))
        }
        ParamKind::Free => match value.get_ref() {
            DeValue::Boolean(b) => Ok(ParamValue::Bool(*b)),
            DeValue::Integer(_) => {
                let i = expect_int(ctx, value, path)?;
                check_int_range(
                    ctx,
                    value,
                    path,
                    i,
                    i128::from(i64::MIN),
                    i128::from(i64::MAX),
                )?;
                Ok(ParamValue::Int(i as i64))
            }
            DeValue::Float(_) => Ok(ParamValue::Float(expect_number(ctx, value, path)?)),
            DeValue::String(s) => Ok(ParamValue::Str(s.to_string())),
            _ => Err(ctx
                .err(
                    value.span(),
                    path,
                    format!("`{path}` must be a boolean, integer, number or string"),
                )
                .with_hint("a pipeline's parameters are scalars; use one parameter per value")),
        },
    }
}
