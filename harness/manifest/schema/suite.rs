//! `[suite]`: the suite's name, description, workload and source.

use super::check_name_length;
use crate::manifest::error::{choice_hint, ManifestError};
use crate::manifest::field::{field, required_row, string, Field, Patch};
use crate::manifest::spanned::{expect_str, valid_name, Ctx, Value};
use crate::workloads::catalog::{self, WorkloadSpec};

/// Read in row order: a missing `name` is reported before a missing `workload`.
#[derive(Debug, Clone, Default)]
pub(in crate::manifest) struct SuitePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub workload: Option<&'static WorkloadSpec>,
    /// The suite whose replica variants this one re-runs on the real code: same-named
    /// variants are put side by side in the report's fidelity section.
    pub replica: Option<String>,
}

impl Patch for SuitePatch {
    const FIELDS: &'static [Field<Self>] = &[
        required_row(field!("name", suite_name, name)),
        field!("description", string, description),
        required_row(field!("workload", workload, workload)),
        field!("source", string),
        field!("replica", suite_name, replica),
    ];
}

fn suite_name(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<String, ManifestError> {
    let suite = expect_str(ctx, value, path)?;
    check_name_length(ctx, value, path, "suite", suite)?;
    if !valid_name(
        suite,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        "._-",
    ) {
        return Err(ctx
            .err(value.span(), path, format!("invalid suite name `{suite}`"))
            .with_hint(
                "suite names start with a lowercase letter or digit and contain only \
                 lowercase letters, digits, `.`, `_` and `-`",
            ));
    }
    Ok(suite.to_string())
}

fn workload(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<&'static WorkloadSpec, ManifestError> {
    let workload_id = expect_str(ctx, value, path)?;
    catalog::workload(workload_id).ok_or_else(|| {
        let ids: Vec<&str> = catalog::WORKLOADS.iter().map(|w| w.id).collect();
        ctx.err(
            value.span(),
            path,
            format!("unknown workload `{workload_id}`"),
        )
        .with_hint(choice_hint(workload_id, &ids, "available workloads"))
    })
}
