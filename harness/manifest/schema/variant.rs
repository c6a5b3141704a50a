//! `[[variant]]` tables.

use super::model::{parse_layer, VariantDef};
use crate::manifest::error::ManifestError;
use crate::manifest::spanned::{
    check_keys, expect_str, expect_table, optional_str, required, type_error, valid_name, Ctx,
    Value,
};
use crate::workloads::catalog::WorkloadSpec;
use toml::de::DeValue;

/// `compare` is accepted here only to be refused with a better message than "unknown key".
const VARIANT_KEYS: &[&str] = &[
    "name",
    "claims",
    "description",
    "params",
    "knobs",
    "run",
    "compare",
];
use crate::manifest::claims::valid_claim;

pub(in crate::manifest) fn parse_variants(
    ctx: &Ctx<'_>,
    workload: &'static WorkloadSpec,
    value: &Value<'_>,
) -> Result<Vec<VariantDef>, ManifestError> {
    let DeValue::Array(array) = value.get_ref() else {
        return Err(type_error(ctx, value, "variant", "an array of tables")
            .with_hint("declare each variant with a `[[variant]]` header (double brackets)"));
    };
    let mut variants: Vec<VariantDef> = Vec::new();
    let mut name_offsets: Vec<usize> = Vec::new();
    for (index, element) in array.iter().enumerate() {
        let path = format!("variant[{index}]");
        let table = expect_table(ctx, element, &path)?;
        check_keys(ctx, table, VARIANT_KEYS, &path)?;

        let name_value = required(ctx, table, element, &path, "name")?;
        let name_path = format!("{path}.name");
        let name = expect_str(ctx, name_value, &name_path)?;
        if !valid_name(name, |c| c.is_ascii_alphanumeric(), "._=-") {
            return Err(ctx
                .err(
                    name_value.span(),
                    &name_path,
                    format!("invalid variant name `{name}`"),
                )
                .with_hint(
                    "variant names start with a letter or digit and contain only letters, \
                     digits, `.`, `_`, `=` and `-`",
                ));
        }
        if let Some(first) = variants.iter().position(|v| v.name == name) {
            let (line, _) = crate::manifest::error::line_col(ctx.text, name_offsets[first]);
            return Err(ctx
                .err(
                    name_value.span(),
                    &name_path,
                    format!("duplicate variant name `{name}`"),
                )
                .with_hint(format!("`{name}` is first defined on line {line}")));
        }

        let mut claims: Vec<String> = Vec::new();
        if let Some((_, claims_value)) = table.get_key_value("claims") {
            let claims_path = format!("{path}.claims");
            let DeValue::Array(items) = claims_value.get_ref() else {
                return Err(type_error(
                    ctx,
                    claims_value,
                    &claims_path,
                    "an array of strings",
                ));
            };
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{claims_path}[{i}]");
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
        }
        let description = optional_str(ctx, table, &path, "description")?;

        let layer = parse_layer(ctx, workload, table, &path, true)?;
        name_offsets.push(name_value.span().start);
        variants.push(VariantDef {
            name: name.to_string(),
            claims,
            description,
            layer,
        });
    }
    Ok(variants)
}
