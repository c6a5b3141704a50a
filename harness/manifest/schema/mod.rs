//! The manifest schema: walks the spanned TOML tree into a validated [`Model`], one file per
//! table. Every check that depends only on the file happens here, for every profile, variant and
//! matrix cell, so that `claimbench check` catches a mistake even in a profile that is not
//! selected.
//!
//! Adding a key to `[run]` or `[compare]`: a row in the table's `Patch::FIELDS` (key, reader,
//! patch field), the field on the patch, and its resolved field in [`crate::plan`] with its
//! default where `super::expand` resolves the merged patch. Key checks, did-you-mean lists,
//! parsing and merging follow from the row. Knobs are rows of [`crate::knobs::KNOBS`];
//! claim kinds are variants of `ClaimKind` in `super::claims`.

mod compare;
pub(in crate::manifest) mod field;
mod knobs;
mod matrix;
mod model;
mod params;
mod run;
mod variant;

pub(in crate::manifest) use compare::ComparePatch;
pub(in crate::manifest) use field::Located;
pub(in crate::manifest) use model::{Axis, Cell, Layer, Model, VariantDef};
pub(in crate::manifest) use run::RunPatch;

use super::error::{choice_hint, ManifestError};
use super::spanned::{
    check_keys, entries, expect_str, expect_table, join, optional_str, required, valid_name, Ctx,
};
use crate::workloads::catalog;
use field::Patch;
use knobs::knob_children;
use matrix::parse_matrix;
use model::parse_layer;
use params::parse_params;
use toml::de::{DeTable, DeValue};
use variant::parse_variants;

pub(in crate::manifest) const TOP_KEYS: &[&str] = &[
    "suite", "params", "knobs", "run", "compare", "profiles", "variant", "matrix", "claim",
];
pub(in crate::manifest) const SUITE_KEYS: &[&str] = &["name", "description", "workload", "source"];
pub(in crate::manifest) const PROFILE_KEYS: &[&str] =
    &["params", "override_params", "knobs", "run", "compare"];
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
        Some((_, value)) => crate::manifest::claims::parse_claims(ctx, value)?,
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
