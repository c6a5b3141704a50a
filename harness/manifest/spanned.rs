//! A reader for spanned TOML: entries in file order, typed access to values, and errors that
//! point at the offending key or value with a hint. It knows nothing of manifests; the schema
//! (`schema/`) and the claims reader are written with it.

use super::error::{choice_hint, LineIndex, ManifestError};
use crate::knobs::Spelled;
use std::ops::Range;
use std::path::Path;
use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// Where errors point: the file name for messages and its text for line/column.
pub(super) struct Ctx<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    lines: LineIndex,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Ctx {
            path,
            text,
            lines: LineIndex::new(text),
        }
    }

    /// 1-based line and character column of byte `offset` of the text.
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(self.text, offset)
    }

    pub(super) fn err(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ManifestError {
        let error = ManifestError::new(self.path, message).at_line_col(self.line_col(span.start));
        if key.is_empty() {
            error
        } else {
            error.with_key(key)
        }
    }

    pub(super) fn snippet(&self, span: Range<usize>) -> &str {
        self.text.get(span).unwrap_or("")
    }
}

pub(super) type Key<'i> = Spanned<DeString<'i>>;
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// Entries in file order (the map itself is sorted by key), so that the first mistake in the
/// file is the one reported.
pub(super) fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `first` is allowed as the first character, then `first` or one of `rest`.
pub(super) fn valid_name(name: &str, first: impl Fn(char) -> bool, rest: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(&first) && chars.all(|c| first(c) || rest.contains(c))
}

pub(super) fn check_keys(
    ctx: &Ctx<'_>,
    table: &DeTable<'_>,
    allowed: &[&str],
    path: &str,
) -> Result<(), ManifestError> {
    for (key, _) in entries(table) {
        let name: &str = key.get_ref();
        if !allowed.contains(&name) {
            return Err(ctx
                .err(
                    key.span(),
                    &join(path, name),
                    format!("unknown key `{name}` in `{path}`"),
                )
                .with_hint(choice_hint(name, allowed, "valid keys")));
        }
    }
    Ok(())
}

pub(super) fn required<'t, 'i>(
    ctx: &Ctx<'_>,
    table: &'t DeTable<'i>,
    table_value: &Value<'_>,
    path: &str,
    name: &str,
) -> Result<&'t Value<'i>, ManifestError> {
    match table.get_key_value(name) {
        Some((_, value)) => Ok(value),
        None => Err(ctx.err(
            table_value.span(),
            &join(path, name),
            format!("missing required key `{name}` in `{path}`"),
        )),
    }
}

pub(super) fn parse_duration<'t>(
    ctx: &Ctx<'_>,
    value: &'t Value<'_>,
    path: &str,
) -> Result<(std::time::Duration, &'t str), ManifestError> {
    const HINT: &str = "write a duration such as \"90s\", \"10m\" or \"1h 30m\"";
    let DeValue::String(text) = value.get_ref() else {
        return Err(type_error(ctx, value, path, "a duration string").with_hint(HINT));
    };
    let duration = humantime::parse_duration(text).map_err(|e| {
        ctx.err(
            value.span(),
            path,
            format!("invalid duration `{text}` for `{path}`: {e}"),
        )
        .with_hint(HINT)
    })?;
    Ok((duration, text))
}

pub(super) type Leaf<'t, 'i> = (String, &'t Key<'i>, &'t Value<'i>);

/// Every non-table value below `table` (and every empty table, so that it is reported rather
/// than ignored), with its dotted path.
pub(super) fn flatten<'t, 'i>(table: &'t DeTable<'i>, prefix: &str, out: &mut Vec<Leaf<'t, 'i>>) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        match value.get_ref() {
            DeValue::Table(sub) if !sub.is_empty() => flatten(sub, &path, out),
            _ => out.push((path, key, value)),
        }
    }
}

// ---- typed access to values ----

/// `string "8"`, `table`, … for messages.
pub(super) fn found(ctx: &Ctx<'_>, value: &Value<'_>) -> String {
    let kind = value.get_ref().type_str();
    match value.get_ref() {
        DeValue::Table(_) | DeValue::Array(_) => kind.to_string(),
        _ => format!("{kind} `{}`", ctx.snippet(value.span())),
    }
}

pub(super) fn type_error(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    expected: &str,
) -> ManifestError {
    let error = ctx.err(
        value.span(),
        path,
        format!(
            "expected {expected} for `{path}`, found {}",
            found(ctx, value)
        ),
    );
    match value.get_ref() {
        DeValue::String(s)
            if expected != "a string"
                && (s == "true" || s == "false" || s.parse::<f64>().is_ok()) =>
        {
            error.with_hint(format!("write it without quotes: `{s}`"))
        }
        _ => error,
    }
}

pub(super) fn unknown_value(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    given: &str,
    options: &[&str],
) -> ManifestError {
    ctx.err(
        value.span(),
        path,
        format!("unknown value `{given}` for `{path}`"),
    )
    .with_hint(choice_hint(given, options, "valid values"))
}

pub(super) fn expect_table<'t, 'i>(
    ctx: &Ctx<'_>,
    value: &'t Value<'i>,
    path: &str,
) -> Result<&'t DeTable<'i>, ManifestError> {
    match value.get_ref() {
        DeValue::Table(table) => Ok(table),
        _ => Err(type_error(ctx, value, path, "a table")),
    }
}

pub(super) fn expect_str<'t>(
    ctx: &Ctx<'_>,
    value: &'t Value<'_>,
    path: &str,
) -> Result<&'t str, ManifestError> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s),
        _ => Err(type_error(ctx, value, path, "a string")),
    }
}

pub(super) fn expect_bool(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<bool, ManifestError> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(type_error(ctx, value, path, "a boolean")),
    }
}

pub(super) fn expect_int(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<i128, ManifestError> {
    match value.get_ref() {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).map_err(|_| {
            ctx.err(
                value.span(),
                path,
                format!("`{path}` = {} is too large", ctx.snippet(value.span())),
            )
        }),
        DeValue::Float(x) => {
            let error = type_error(ctx, value, path, "an integer");
            match x.as_str().parse::<f64>() {
                Ok(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e18 => {
                    Err(error.with_hint(format!("write it as an integer: `{}`", x as i64)))
                }
                _ => Err(error),
            }
        }
        _ => Err(type_error(ctx, value, path, "an integer")),
    }
}

/// An integer or a float, as a finite float.
pub(super) fn expect_number(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<f64, ManifestError> {
    let x = match value.get_ref() {
        DeValue::Integer(_) => expect_int(ctx, value, path)? as f64,
        DeValue::Float(x) => x.as_str().parse::<f64>().unwrap_or(f64::NAN),
        _ => return Err(type_error(ctx, value, path, "a number")),
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ctx.err(
            value.span(),
            path,
            format!(
                "`{path}` = {} is not a finite number",
                ctx.snippet(value.span())
            ),
        ))
    }
}

/// One of the spellings of `T`.
pub(super) fn expect_enum<T: Spelled>(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<T, ManifestError> {
    let given = expect_choice(ctx, value, path, &T::names())?;
    Ok(T::from_name(given).expect("a listed name"))
}

/// A string that is one of `options`.
pub(super) fn expect_choice(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    options: &[&'static str],
) -> Result<&'static str, ManifestError> {
    let given = expect_str(ctx, value, path)?;
    match options.iter().find(|name| **name == given) {
        Some(name) => Ok(name),
        None => Err(unknown_value(ctx, value, path, given, options)),
    }
}

pub(super) fn check_int_range(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    i: i128,
    min: i128,
    max: i128,
) -> Result<(), ManifestError> {
    if (min..=max).contains(&i) {
        return Ok(());
    }
    // A bound that is just the type's limit is not worth stating.
    let natural_max = [
        i128::from(i64::MAX),
        i128::from(u32::MAX),
        i128::from(u64::MAX),
    ]
    .contains(&max);
    let bounds = if natural_max && i < min {
        format!("must be at least {min}")
    } else {
        format!("must be between {min} and {max}")
    };
    Err(ctx.err(
        value.span(),
        path,
        format!(
            "`{path}` = {} is out of range: {bounds}",
            ctx.snippet(value.span())
        ),
    ))
}

/// Allowed values of a float setting: each bound is `(value, inclusive)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct FloatRange {
    min: (f64, bool),
    max: Option<(f64, bool)>,
}

/// (0, 1)
pub(super) const OPEN_01: FloatRange = FloatRange {
    min: (0.0, false),
    max: Some((1.0, false)),
};
/// [0, 1)
pub(super) const HALF_OPEN_01: FloatRange = FloatRange {
    min: (0.0, true),
    max: Some((1.0, false)),
};
/// [0, 1]
pub(super) const CLOSED_01: FloatRange = FloatRange {
    min: (0.0, true),
    max: Some((1.0, true)),
};
/// [0, ∞)
pub(super) const AT_LEAST_0: FloatRange = FloatRange {
    min: (0.0, true),
    max: None,
};

/// A number (integer or float) within `range`. Where the range ends at 1, a value written as
/// a percentage (`5` for 5 %) gets a hint.
pub(super) fn expect_float_in(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    range: FloatRange,
) -> Result<f64, ManifestError> {
    let x = expect_number(ctx, value, path)?;
    let above_min = if range.min.1 {
        x >= range.min.0
    } else {
        x > range.min.0
    };
    let below_max = match range.max {
        None => true,
        Some((max, true)) => x <= max,
        Some((max, false)) => x < max,
    };
    if above_min && below_max {
        return Ok(x);
    }
    let lower = |(min, inclusive): (f64, bool)| {
        if inclusive {
            format!("at least {min}")
        } else {
            format!("greater than {min}")
        }
    };
    let bounds = match range.max {
        None => format!("must be {}", lower(range.min)),
        Some((max, true)) if range.min.1 => format!("must be between {} and {max}", range.min.0),
        Some((max, true)) => format!("must be {} and at most {max}", lower(range.min)),
        Some((max, false)) => format!("must be {} and less than {max}", lower(range.min)),
    };
    let error = ctx.err(
        value.span(),
        path,
        format!(
            "`{path}` = {} is out of range: {bounds}",
            ctx.snippet(value.span())
        ),
    );
    if range.max.is_some_and(|(max, _)| max == 1.0) && !below_max && x <= 100.0 {
        Err(error.with_hint(format!(
            "this is a fraction, not a percentage: write `{}` for {x} %",
            x / 100.0
        )))
    } else {
        Err(error)
    }
}
