//! `[[variant]]` tables: a name, the claims served and a description, then a layer.

use super::check_name_length;
use super::model::{Layer, VariantDef};
use crate::manifest::claims::valid_claim;
use crate::manifest::error::ManifestError;
use crate::manifest::field::{field, no_overlay, required_row, string, Cx, Field, Patch};
use crate::manifest::spanned::{
    check_keys, expect_str, expect_table, type_error, valid_name, Ctx, Value,
};
use crate::plan::slug;
use std::collections::HashMap;
use toml::de::DeValue;

/// The variant's own keys; the layer's follow them (`compare` among them, accepted only to be
/// refused with a better message than "unknown key").
impl Patch for VariantDef {
    const FIELDS: &'static [Field<Self>] = &[
        required_row(Field::new(
            "name",
            |def, cx, value, path| {
                def.name = variant_name(cx.ctx, value, path)?;
                Ok(())
            },
            no_overlay,
        )),
        Field::new(
            "claims",
            |def, cx, value, path| {
                def.claims = claim_ids(cx.ctx, value, path)?;
                Ok(())
            },
            no_overlay,
        ),
        field!("description", string, description),
    ];
}

pub(in crate::manifest) fn parse_variants(
    cx: &Cx<'_>,
    value: &Value<'_>,
) -> Result<Vec<VariantDef>, ManifestError> {
    let ctx = cx.ctx;
    let DeValue::Array(array) = value.get_ref() else {
        return Err(type_error(ctx, value, "variant", "an array of tables")
            .with_hint("declare each variant with a `[[variant]]` header (double brackets)"));
    };
    let mut keys = VariantDef::keys();
    keys.extend(Layer::keys_outside_profiles());
    let cx = Cx {
        per_variant: true,
        ..*cx
    };
    let mut variants: Vec<VariantDef> = Vec::new();
    let mut name_offsets: Vec<usize> = Vec::new();
    // Name and slug → index of the first variant with it: lookups stay constant-time however
    // many variants there are.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_slug: HashMap<String, usize> = HashMap::new();
    for (index, element) in array.iter().enumerate() {
        let path = format!("variant[{index}]");
        let table = expect_table(ctx, element, &path)?;
        check_keys(ctx, table, &keys, &path)?;

        let mut def = VariantDef::default();
        def.read_rows(&cx, table, element, &path)?;
        let name_offset = table
            .get_key_value("name")
            .map_or(0, |(_, v)| v.span().start);
        if let Some(&first) = by_name.get(&def.name) {
            let (line, _) = ctx.line_col(name_offsets[first]);
            let name = &def.name;
            return Err(ctx
                .err(
                    name_offset..name_offset,
                    &format!("{path}.name"),
                    format!("duplicate variant name `{name}`"),
                )
                .with_hint(format!("`{name}` is first defined on line {line}")));
        }
        // Names become file names through `slug`: two that map to one would share a log file.
        let def_slug = slug(&def.name);
        if let Some(&first) = by_slug.get(&def_slug) {
            let (line, _) = ctx.line_col(name_offsets[first]);
            let (name, other) = (&def.name, &variants[first].name);
            return Err(ctx
                .err(
                    name_offset..name_offset,
                    &format!("{path}.name"),
                    format!(
                        "variant names `{other}` and `{name}` give the same file name `{def_slug}`"
                    ),
                )
                .with_hint(format!(
                    "`{other}` is defined on line {line}; names that differ only in `.`, `_`, `=` or `-` collide: rename one"
                )));
        }
        def.layer = Layer::read_from(&cx, table, &path)?;
        by_name.insert(def.name.clone(), variants.len());
        by_slug.insert(def_slug, variants.len());
        name_offsets.push(name_offset);
        variants.push(def);
    }
    Ok(variants)
}

fn variant_name(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<String, ManifestError> {
    let name = expect_str(ctx, value, path)?;
    check_name_length(ctx, value, path, "variant", name)?;
    if !valid_name(name, |c| c.is_ascii_alphanumeric(), "._=-") {
        return Err(ctx
            .err(value.span(), path, format!("invalid variant name `{name}`"))
            .with_hint(
                "variant names start with a letter or digit and contain only letters, \
                 digits, `.`, `_`, `=` and `-`",
            ));
    }
    Ok(name.to_string())
}

/// `claims = ["H0-01", …]`: valid ids, each once.
fn claim_ids(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<Vec<String>, ManifestError> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(type_error(ctx, value, path, "an array of strings"));
    };
    let mut claims: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let claim = expect_str(ctx, item, &item_path)?;
        if !valid_claim(claim) {
            return Err(ctx
                .err(
                    item.span(),
                    &item_path,
                    format!("invalid claim id `{claim}`"),
                )
                .with_hint(
                    "claim ids look like `H0-01`: an uppercase letter, letters or \
                     digits, `-`, then at least two digits",
                ));
        }
        if claims.iter().any(|c| c == claim) {
            return Err(ctx.err(
                item.span(),
                &item_path,
                format!("claim `{claim}` is listed twice"),
            ));
        }
        claims.push(claim.to_string());
    }
    Ok(claims)
}
