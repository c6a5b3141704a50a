//! The manifest schema: walks the spanned TOML tree into a validated [`Model`], one file per
//! table. Every check that depends only on the file happens here, for every profile, variant and
//! matrix cell, so that `claimbench check` catches a mistake even in a profile that is not
//! selected.

mod compare;
pub(in crate::manifest) mod field;
mod knobs;
mod matrix;
mod params;
mod run;
mod variant;

pub(in crate::manifest) use knobs::KnobSetting;

use super::error::{backticked, choice_hint, ManifestError};
use super::spanned::*;
use crate::knobs::registry::{self, KnobDef, KnobKind, KnobValue, KNOBS};
use crate::knobs::{Knobs, Spelled};
use crate::plan::{Order, ParamValue};
use crate::stats::Correction;
use crate::workloads::catalog::{self, ParamKind, ParamSpec, WorkloadSpec};
pub(in crate::manifest) use compare::ComparePatch;
use compare::*;
use field::Patch;
use knobs::*;
use matrix::*;
use params::*;
pub(in crate::manifest) use run::RunPatch;
use run::*;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use variant::*;

/// A manifest after validation: everything needed to expand any profile into a plan.
#[derive(Debug, Clone)]
pub(in crate::manifest) struct Model {
    pub suite: String,
    pub description: Option<String>,
    pub workload: &'static WorkloadSpec,
    /// Top-level `[params]`, `[knobs]`, `[run]` and `[compare]`.
    pub base: Layer,
    /// In file order.
    pub profiles: Vec<(String, Layer)>,
    /// In file order; empty means one implicit variant named `default`.
    pub variants: Vec<VariantDef>,
    /// In file order.
    pub axes: Vec<Axis>,
    /// `[[claim]]`s in file order; variant names are checked after expansion.
    pub claims: Vec<super::claims::ClaimDef>,
}

/// One level of the merge: a partial set of params, knobs, run and compare settings (a
/// variant's `compare` is always empty: comparing is plan-wide).
#[derive(Debug, Clone, Default)]
pub(in crate::manifest) struct Layer {
    pub params: BTreeMap<String, ParamValue>,
    /// A profile's `override_params`: these beat the variants' own params (and matrix cells),
    /// so a reduced-size profile also shrinks variants that set a size themselves.
    pub override_params: BTreeMap<String, ParamValue>,
    pub knobs: Vec<KnobSetting>,
    pub run: RunPatch,
    pub compare: ComparePatch,
}

/// A value together with the key that set it, for checks that involve several keys (and so
/// can only be made after merging).
#[derive(Debug, Clone, PartialEq)]
pub(in crate::manifest) struct Located<T> {
    pub value: T,
    /// Dotted key path, e.g. `profiles.quick.run.repetitions`.
    pub path: String,
    /// Byte offset of the value in the manifest.
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub(in crate::manifest) struct VariantDef {
    pub name: String,
    pub claims: Vec<String>,
    pub description: Option<String>,
    pub layer: Layer,
}

/// One `[matrix]` axis: the cells are in the order written.
#[derive(Debug, Clone)]
pub(in crate::manifest) struct Axis {
    /// Last component of the axis path, used in expanded variant names.
    pub short: String,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone)]
pub(in crate::manifest) struct Cell {
    /// The value as it appears in expanded variant names.
    pub label: String,
    pub setting: Setting,
}

#[derive(Debug, Clone)]
pub(in crate::manifest) enum Setting {
    Param(String, ParamValue),
    Knob(KnobSetting),
}

pub(in crate::manifest) const TOP_KEYS: &[&str] = &[
    "suite", "params", "knobs", "run", "compare", "profiles", "variant", "matrix", "claim",
];
pub(in crate::manifest) const SUITE_KEYS: &[&str] = &["name", "description", "workload", "source"];
pub(in crate::manifest) const PROFILE_KEYS: &[&str] =
    &["params", "override_params", "knobs", "run", "compare"];
/// `compare` is accepted here only to be refused with a better message than "unknown key".
pub(in crate::manifest) const VARIANT_KEYS: &[&str] = &[
    "name",
    "claims",
    "description",
    "params",
    "knobs",
    "run",
    "compare",
];
/// Profile name meaning "no profile".
pub(in crate::manifest) const BASE_PROFILE: &str = "base";

pub(in crate::manifest) fn parse_model(
    ctx: &Ctx<'_>,
    root: &DeTable<'_>,
) -> Result<Model, ManifestError> {
    for (key, value) in entries(root) {
        let name: &str = key.get_ref();
        if !TOP_KEYS.contains(&name) {
            let message = match value.get_ref() {
                DeValue::Table(_) => format!("unknown table `[{name}]`"),
                _ => format!("unknown top-level key `{name}`"),
            };
            // Keys written above the first table header land at the top level.
            let home = if SUITE_KEYS.contains(&name) {
                Some("suite")
            } else if RunPatch::keys().contains(&name) {
                Some("run")
            } else if ComparePatch::keys().contains(&name) {
                Some("compare")
            } else if knob_children("").contains(&name) {
                Some("knobs")
            } else {
                None
            };
            let hint = match home {
                Some(table) => format!("`{name}` belongs in the `[{table}]` table"),
                None => choice_hint(name, TOP_KEYS, "valid top-level keys"),
            };
            return Err(ctx.err(key.span(), name, message).with_hint(hint));
        }
    }

    let Some((_, suite_value)) = root.get_key_value("suite") else {
        return Err(
            ManifestError::new(ctx.path, "missing required table `[suite]`")
                .with_hint("add a `[suite]` table with at least `name` and `workload`"),
        );
    };
    let suite_table = expect_table(ctx, suite_value, "suite")?;
    check_keys(ctx, suite_table, SUITE_KEYS, "suite")?;

    let name_value = required(ctx, suite_table, suite_value, "suite", "name")?;
    let suite = expect_str(ctx, name_value, "suite.name")?;
    if !valid_name(
        suite,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        "._-",
    ) {
        return Err(ctx
            .err(
                name_value.span(),
                "suite.name",
                format!("invalid suite name `{suite}`"),
            )
            .with_hint(
                "suite names start with a lowercase letter or digit and contain only \
                 lowercase letters, digits, `.`, `_` and `-`",
            ));
    }
    let description = optional_str(ctx, suite_table, "suite", "description")?;
    optional_str(ctx, suite_table, "suite", "source")?;

    let workload_value = required(ctx, suite_table, suite_value, "suite", "workload")?;
    let workload_id = expect_str(ctx, workload_value, "suite.workload")?;
    let Some(workload) = catalog::workload(workload_id) else {
        let ids: Vec<&str> = catalog::WORKLOADS.iter().map(|w| w.id).collect();
        return Err(ctx
            .err(
                workload_value.span(),
                "suite.workload",
                format!("unknown workload `{workload_id}`"),
            )
            .with_hint(choice_hint(workload_id, &ids, "available workloads")));
    };

    let base = parse_layer(ctx, workload, root, "", false)?;

    let mut profiles = Vec::new();
    if let Some((_, value)) = root.get_key_value("profiles") {
        for (key, profile_value) in entries(expect_table(ctx, value, "profiles")?) {
            let name: &str = key.get_ref();
            let path = format!("profiles.{name}");
            if name == BASE_PROFILE {
                return Err(ctx
                    .err(key.span(), &path, "profile name `base` is reserved")
                    .with_hint("`base` means \"no profile\"; give this profile another name"));
            }
            if !valid_name(name, |c| c.is_ascii_alphanumeric(), "._-") {
                return Err(ctx
                    .err(key.span(), &path, format!("invalid profile name `{name}`"))
                    .with_hint(
                        "profile names start with a letter or digit and contain only \
                         letters, digits, `.`, `_` and `-`",
                    ));
            }
            let table = expect_table(ctx, profile_value, &path)?;
            check_keys(ctx, table, PROFILE_KEYS, &path)?;
            let mut layer = parse_layer(ctx, workload, table, &path, false)?;
            if let Some((_, value)) = table.get_key_value("override_params") {
                let key_path = join(&path, "override_params");
                layer.override_params = parse_params(ctx, workload, value, &key_path)?;
            }
            profiles.push((name.to_string(), layer));
        }
    }

    let variants = match root.get_key_value("variant") {
        Some((_, value)) => parse_variants(ctx, workload, value)?,
        None => Vec::new(),
    };

    let axes = match root.get_key_value("matrix") {
        Some((_, value)) => parse_matrix(ctx, workload, value)?,
        None => Vec::new(),
    };

    let claims = match root.get_key_value("claim") {
        Some((_, value)) => super::claims::parse_claims(ctx, value)?,
        None => Vec::new(),
    };

    Ok(Model {
        suite: suite.to_string(),
        description,
        workload,
        base,
        profiles,
        variants,
        axes,
        claims,
    })
}

/// The `params`, `knobs` and `run` entries of `table` (other keys are checked by the caller).
pub(in crate::manifest) fn parse_layer(
    ctx: &Ctx<'_>,
    workload: &'static WorkloadSpec,
    table: &DeTable<'_>,
    path: &str,
    per_variant: bool,
) -> Result<Layer, ManifestError> {
    let mut layer = Layer::default();
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        match name {
            "params" => layer.params = parse_params(ctx, workload, value, &key_path)?,
            "knobs" => {
                let table = expect_table(ctx, value, &key_path)?;
                walk_knobs(ctx, table, "", &key_path, &mut layer.knobs)?;
            }
            "run" => layer.run = parse_run(ctx, value, &key_path, per_variant)?,
            "compare" if per_variant => {
                return Err(ctx
                    .err(
                        key.span(),
                        &key_path,
                        "`compare` applies to the whole plan and cannot be set per variant",
                    )
                    .with_hint("set it in `[compare]` or in a profile's `compare`"));
            }
            "compare" => layer.compare = parse_compare(ctx, value, &key_path)?,
            _ => {}
        }
    }
    Ok(layer)
}
