//! `[knobs]` (and a profile's or variant's `knobs`): read as the knob registry
//! ([`crate::knobs::KNOBS`]) says each knob is written.

use crate::knobs::registry::{self, KnobDef, KnobKind, KnobValue, KNOBS};
use crate::knobs::Knobs;
use crate::manifest::error::{choice_hint, ManifestError};
use crate::manifest::spanned::{
    entries, expect_bool, expect_choice, expect_number, expect_str, expect_table, join, type_error,
    unknown_value, valid_name, Ctx, Value,
};
use std::collections::BTreeMap;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One knob assignment, applied on top of the knobs merged so far (for `env`: one variable).
#[derive(Debug, Clone)]
pub(in crate::manifest) struct KnobSetting {
    pub knob: &'static KnobDef,
    pub value: KnobValue,
}

impl KnobSetting {
    pub fn apply(&self, knobs: &mut Knobs) {
        (self.knob.set)(knobs, &self.value);
    }

    pub fn label(&self) -> String {
        self.value.label()
    }
}

/// The `env` knob, whose keys are free-form variable names.
pub(in crate::manifest) fn env_knob() -> &'static KnobDef {
    registry::knob("env").expect("the registry has `env`")
}

/// The knobs that hold a single value, by their path below `knobs` (`env` is separate: its
/// keys are free-form).
pub(in crate::manifest) fn knob_leaves() -> impl Iterator<Item = &'static KnobDef> {
    KNOBS
        .iter()
        .filter(|k| !matches!(k.kind, KnobKind::EnvVars))
}

/// Walks a (possibly nested) knobs table; `rel` is the path below `knobs`, `path` the full
/// path for messages.
pub(in crate::manifest) fn walk_knobs(
    ctx: &Ctx<'_>,
    table: &DeTable<'_>,
    rel: &str,
    path: &str,
    out: &mut Vec<KnobSetting>,
) -> Result<(), ManifestError> {
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let rel_name = join(rel, name);
        let key_path = join(path, name);
        if rel_name == "env" {
            for (var, var_value) in entries(expect_table(ctx, value, &key_path)?) {
                let var_name: &str = var.get_ref();
                let var_path = join(&key_path, var_name);
                check_env_name(ctx, var.span(), &var_path, var_name, &key_path)?;
                out.push(env_setting(var_name, env_value(ctx, var_value, &var_path)?));
            }
        } else if let Some(knob) = knob_leaf(&rel_name) {
            out.push(knob_setting(ctx, knob, value, &key_path)?);
        } else if !knob_children(&rel_name).is_empty() {
            let table = expect_table(ctx, value, &key_path)?;
            walk_knobs(ctx, table, &rel_name, &key_path, out)?;
        } else {
            return Err(ctx
                .err(
                    key.span(),
                    &key_path,
                    format!("unknown key `{name}` in `{path}`"),
                )
                .with_hint(choice_hint(name, &knob_children(rel), "valid keys")));
        }
    }
    Ok(())
}

pub(in crate::manifest) fn knob_leaf(rel: &str) -> Option<&'static KnobDef> {
    knob_leaves().find(|k| k.name == rel)
}

/// The keys directly below `rel` (a group such as `cudnn`, or `""` for the knobs table).
pub(in crate::manifest) fn knob_children(rel: &str) -> Vec<&'static str> {
    let mut children = Vec::new();
    for knob in KNOBS {
        let below = if rel.is_empty() {
            Some(knob.name)
        } else {
            knob.name
                .strip_prefix(rel)
                .and_then(|r| r.strip_prefix('.'))
        };
        if let Some(below) = below {
            let child = below.split('.').next().unwrap_or(below);
            if !children.contains(&child) {
                children.push(child);
            }
        }
    }
    children
}

pub(in crate::manifest) fn env_setting(name: &str, value: &str) -> KnobSetting {
    KnobSetting {
        knob: env_knob(),
        value: KnobValue::Vars(BTreeMap::from([(name.to_string(), value.to_string())])),
    }
}

/// Reads a single-valued knob as its registry row says it is written.
pub(in crate::manifest) fn knob_setting(
    ctx: &Ctx<'_>,
    knob: &'static KnobDef,
    value: &Value<'_>,
    path: &str,
) -> Result<KnobSetting, ManifestError> {
    let value = match knob.kind {
        KnobKind::Flag => KnobValue::Flag(expect_bool(ctx, value, path)?),
        KnobKind::Choice {
            names,
            misspellings,
        } => {
            if let DeValue::String(s) = value.get_ref() {
                let lower = s.to_ascii_lowercase();
                if let Some((_, hint)) = misspellings.iter().find(|(m, _)| *m == lower) {
                    return Err(unknown_value(ctx, value, path, s, &names()).with_hint(*hint));
                }
            }
            KnobValue::Choice(expect_choice(ctx, value, path, &names())?)
        }
        KnobKind::FlagOrChoice {
            names,
            on,
            expected,
            hint,
        } => match value.get_ref() {
            DeValue::Boolean(false) => KnobValue::Flag(false),
            DeValue::Boolean(true) => KnobValue::Choice(on),
            DeValue::String(_) => KnobValue::Choice(expect_choice(ctx, value, path, &names())?),
            _ => return Err(type_error(ctx, value, path, expected).with_hint(hint)),
        },
        KnobKind::Positive => {
            let x = expect_number(ctx, value, path)?;
            if x <= 0.0 {
                return Err(ctx.err(
                    value.span(),
                    path,
                    format!(
                        "`{path}` = {} is out of range: must be greater than 0",
                        ctx.snippet(value.span())
                    ),
                ));
            }
            KnobValue::Number(x)
        }
        KnobKind::EnvVars => unreachable!("`env` is read as a table of variables"),
    };
    Ok(KnobSetting { knob, value })
}

/// An environment variable's value: any string a process environment can hold (no NUL byte,
/// which would make every worker fail to start).
pub(in crate::manifest) fn env_value<'v>(
    ctx: &Ctx<'_>,
    value: &'v Value<'_>,
    path: &str,
) -> Result<&'v str, ManifestError> {
    let text = expect_str(ctx, value, path)?;
    if text.contains('\0') {
        return Err(ctx
            .err(
                value.span(),
                path,
                format!("`{path}` contains a NUL character"),
            )
            .with_hint("an environment variable cannot hold a NUL byte"));
    }
    Ok(text)
}

pub(in crate::manifest) fn check_env_name(
    ctx: &Ctx<'_>,
    span: Range<usize>,
    path: &str,
    name: &str,
    table_path: &str,
) -> Result<(), ManifestError> {
    if valid_name(name, |c| c.is_ascii_alphabetic() || c == '_', "0123456789") {
        Ok(())
    } else {
        Err(ctx
            .err(
                span,
                path,
                format!("invalid environment variable name `{name}` in `{table_path}`"),
            )
            .with_hint("names must match [A-Za-z_][A-Za-z0-9_]*"))
    }
}
