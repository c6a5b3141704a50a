//! The manifest schema: walks the spanned TOML tree into a validated [`Model`], one file per
//! table. Every check that depends only on the file happens here, for every profile, variant and
//! matrix cell, so that `claimbench check` catches a mistake even in a profile that is not
//! selected.
//!
//! Each table is declared once, as rows ([`super::field::Field`]: key, reader, overlay) of
//! a [`super::field::Patch`]: `[suite]` (`SuitePatch`); the layer that the top level, a
//! profile and a variant share (`Layer`: `params`, `override_params`, `knobs`, `run`,
//! `compare`); `[run]` (`RunPatch`, with `settle`); `[compare]` (`ComparePatch`); a variant's
//! own keys (`VariantDef`); the top level's other tables (`Top`); a claim's header and
//! applicability (`super::claims`). A table's key check, its did-you-mean list, its parse loop
//! and (for the layers) the merging of profiles, variants and matrix cells come from its rows.
//!
//! Adding a key: a row in its table's `FIELDS` (`field!(key, reader, patch field)`, marked
//! `plan_wide`, `profile_only` or `required_row` where that applies) and the field on the
//! patch; that is all for a table read once. A key of `[run]` or `[compare]` also needs its
//! resolved field in [`crate::plan`] and its default where `super::expand` resolves the merged
//! patch (4 places). A new table in every layer is a row of `Layer` and its field. Knobs are
//! rows of [`crate::knobs::KNOBS`]; claim kinds are variants of `ClaimKind` in
//! `super::claims`.

mod compare;
mod knobs;
mod matrix;
mod model;
mod params;
mod run;
mod suite;
mod variant;

pub(in crate::manifest) use super::field::Located;
pub(in crate::manifest) use compare::ComparePatch;
pub(in crate::manifest) use model::{Axis, Cell, Layer, Model, VariantDef};
pub(in crate::manifest) use run::RunPatch;

use super::claims::{parse_claims, ClaimDef};
use super::error::{choice_hint, ManifestError};
use super::field::{no_overlay, Cx, Field, Patch};
use super::spanned::{check_keys, entries, expect_table, valid_name, Ctx, Value};
use crate::plan::MAX_NAME_LEN;
use knobs::knob_children;
use matrix::parse_matrix;
use suite::SuitePatch;
use toml::de::{DeTable, DeValue};
use variant::parse_variants;

/// The one required table; it names the workload, so it is read first.
const SUITE: &str = "suite";
/// Profile name meaning "no profile".
pub(in crate::manifest) const BASE_PROFILE: &str = "base";

/// The top level's tables after `[suite]` and the base layer's, read in this order.
#[derive(Default)]
struct Top {
    profiles: Vec<(String, Layer)>,
    variants: Vec<VariantDef>,
    axes: Vec<Axis>,
    claims: Vec<ClaimDef>,
}

impl Patch for Top {
    const FIELDS: &'static [Field<Self>] = &[
        Field::new(
            "profiles",
            |top, cx, value, path| {
                top.profiles = parse_profiles(cx, value, path)?;
                Ok(())
            },
            no_overlay,
        ),
        Field::new(
            "variant",
            |top, cx, value, _| {
                top.variants = parse_variants(cx, value)?;
                Ok(())
            },
            no_overlay,
        ),
        Field::new(
            "matrix",
            |top, cx, value, _| {
                top.axes = parse_matrix(cx.ctx, cx.workload(), value)?;
                Ok(())
            },
            no_overlay,
        ),
        Field::new(
            "claim",
            |top, cx, value, _| {
                top.claims = parse_claims(cx.ctx, value)?;
                Ok(())
            },
            no_overlay,
        ),
    ];
}

/// The top level's keys, in the order hints list them: `suite`, the base layer's, the rest.
fn top_keys() -> Vec<&'static str> {
    let mut keys = vec![SUITE];
    keys.extend(Layer::keys_outside_profiles());
    keys.extend(Top::keys());
    keys
}

/// An unknown top-level key; one of a table's keys written above the first table header
/// lands here, and the hint says which table.
fn check_top_keys(ctx: &Ctx<'_>, root: &DeTable<'_>) -> Result<(), ManifestError> {
    let keys = top_keys();
    let homes = [
        ("suite", SuitePatch::keys()),
        ("run", RunPatch::keys()),
        ("compare", ComparePatch::keys()),
        ("knobs", knob_children("")),
    ];
    for (key, value) in entries(root) {
        let name: &str = key.get_ref();
        if keys.contains(&name) {
            continue;
        }
        let message = match value.get_ref() {
            DeValue::Table(_) => format!("unknown table `[{name}]`"),
            _ => format!("unknown top-level key `{name}`"),
        };
        let hint = match homes.iter().find(|(_, keys)| keys.contains(&name)) {
            Some((table, _)) => format!("`{name}` belongs in the `[{table}]` table"),
            None => choice_hint(name, &keys, "valid top-level keys"),
        };
        return Err(ctx.err(key.span(), name, message).with_hint(hint));
    }
    Ok(())
}

pub(in crate::manifest) fn parse_model(
    ctx: &Ctx<'_>,
    root: &DeTable<'_>,
) -> Result<Model, ManifestError> {
    check_top_keys(ctx, root)?;
    let Some((_, suite_value)) = root.get_key_value(SUITE) else {
        return Err(
            ManifestError::new(ctx.path, "missing required table `[suite]`")
                .at(ctx.text, 0)
                .with_hint("add a `[suite]` table with at least `name` and `workload`"),
        );
    };
    let mut cx = Cx {
        ctx,
        workload: None,
        per_variant: false,
    };
    let suite_table = expect_table(ctx, suite_value, SUITE)?;
    check_keys(ctx, suite_table, &SuitePatch::keys(), SUITE)?;
    let mut suite = SuitePatch::default();
    suite.read_rows(&cx, suite_table, suite_value, SUITE)?;
    let (Some(name), Some(workload)) = (suite.name, suite.workload) else {
        unreachable!("required rows");
    };
    cx.workload = Some(workload);

    let base = Layer::read_from(&cx, root, "")?;
    if workload.is_python() && !base.params.contains_key("entry") {
        let span = suite_table
            .get_key_value("workload")
            .map_or(suite_value.span(), |(key, _)| key.span());
        return Err(ctx
            .err(
                span,
                "suite.workload",
                "the `python` workload needs `entry` in the top-level `[params]`",
            )
            .with_hint(
                "name the pipeline class: `entry = \"package.module:Class\"` or \
                 `entry = \"pipeline.py:Class\"` (relative to this manifest)",
            ));
    }
    let mut top = Top::default();
    top.read_rows(&cx, root, suite_value, "")?;
    Ok(Model {
        suite: name,
        description: suite.description,
        workload,
        replica: suite.replica,
        base,
        profiles: top.profiles,
        variants: top.variants,
        axes: top.axes,
        claims: top.claims,
    })
}

/// `[profiles.X]`: each a layer, `override_params` included.
fn parse_profiles(
    cx: &Cx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<Vec<(String, Layer)>, ManifestError> {
    let ctx = cx.ctx;
    let keys = Layer::keys();
    let mut profiles = Vec::new();
    for (key, profile_value) in entries(expect_table(ctx, value, path)?) {
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
        check_keys(ctx, table, &keys, &path)?;
        profiles.push((name.to_string(), Layer::read_from(cx, table, &path)?));
    }
    Ok(profiles)
}

/// Suite and variant names become parts of file names: at most [`MAX_NAME_LEN`] characters.
pub(in crate::manifest) fn check_name_length(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    what: &str,
    name: &str,
) -> Result<(), ManifestError> {
    if name.len() <= MAX_NAME_LEN {
        return Ok(());
    }
    Err(ctx
        .err(
            value.span(),
            path,
            format!(
                "{what} name is {} characters long, more than {MAX_NAME_LEN}",
                name.len()
            ),
        )
        .with_hint("names become parts of file names: shorten it"))
}
