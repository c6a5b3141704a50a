//! A table as rows: each [`Field`] names a key, reads its value into a patch and lays a higher
//! layer's value over a lower one. The key checks, the did-you-mean lists, the parse loops
//! and the merging of profiles, variants and matrix cells (`Layer::overlay`) are derived from
//! the rows ([`Patch`]), so a key is declared once. Used by the schema (`super::schema`) and
//! the claims reader (`super::claims`).

use crate::manifest::error::ManifestError;
use crate::manifest::spanned::{
    check_keys, entries, expect_str, expect_table, join, required, Ctx, Value,
};
use crate::workloads::catalog::WorkloadSpec;
use std::ops::Range;

/// What a row's reader may need besides its value.
#[derive(Clone, Copy)]
pub(in crate::manifest) struct Cx<'a> {
    pub ctx: &'a Ctx<'a>,
    /// Read from `[suite]` before any table that needs it.
    pub workload: Option<&'static WorkloadSpec>,
    /// Reading a `[[variant]]`, where plan-wide rows are refused.
    pub per_variant: bool,
}

impl Cx<'_> {
    pub fn workload(&self) -> &'static WorkloadSpec {
        self.workload.expect("`[suite]` is read first")
    }
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

/// One key of a table.
pub(in crate::manifest) struct Field<P> {
    pub key: &'static str,
    /// Applies to the whole plan, so a variant may not set it.
    pub plan_wide: bool,
    /// Only a profile may set it; elsewhere it is an unknown key.
    pub profile_only: bool,
    /// Tables read in row order report it missing.
    pub required: bool,
    /// Reads the value at `path` into the patch.
    pub read: fn(&mut P, &Cx<'_>, &Value<'_>, &str) -> Result<(), ManifestError>,
    /// Lays the value of a higher layer (if it sets one) over this one.
    pub overlay: fn(&mut P, &P),
}

impl<P> Field<P> {
    /// A row with its own reader and overlay.
    pub const fn new(
        key: &'static str,
        read: fn(&mut P, &Cx<'_>, &Value<'_>, &str) -> Result<(), ManifestError>,
        overlay: fn(&mut P, &P),
    ) -> Self {
        Field {
            key,
            plan_wide: false,
            profile_only: false,
            required: false,
            read,
            overlay,
        }
    }
}

/// Marks a row as applying to the whole plan.
pub(in crate::manifest) const fn plan_wide<P>(field: Field<P>) -> Field<P> {
    Field {
        plan_wide: true,
        ..field
    }
}

/// Marks a row as settable only in a profile.
pub(in crate::manifest) const fn profile_only<P>(field: Field<P>) -> Field<P> {
    Field {
        profile_only: true,
        ..field
    }
}

/// Marks a row as required (in a table read in row order).
pub(in crate::manifest) const fn required_row<P>(field: Field<P>) -> Field<P> {
    Field {
        required: true,
        ..field
    }
}

/// A string value.
pub(in crate::manifest) fn string(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<String, ManifestError> {
    Ok(expect_str(ctx, value, path)?.to_string())
}

/// A layer that never merges (a table read once).
pub(in crate::manifest) fn no_overlay<P>(_: &mut P, _: &P) {}

/// `field!("key", reader, field)`: the value read by `reader(ctx, value, path)` goes to
/// `patch.field` (an `Option`); a higher layer's `Some` replaces a lower one's.
/// `field!("key", reader)`: the value is checked and not kept.
/// `field!(table "key", reader, field)`: `reader(cx, value, path)` reads a patch of its own
/// into `patch.field`, which merges by its rows.
macro_rules! field {
    (table $key:literal, $read:expr, $field:ident) => {
        $crate::manifest::field::Field::new(
            $key,
            |patch, cx, value, path| {
                patch.$field = ($read)(cx, value, path)?;
                Ok(())
            },
            |low, high| $crate::manifest::field::Patch::overlay(&mut low.$field, &high.$field),
        )
    };
    ($key:literal, $read:expr, $field:ident) => {
        $crate::manifest::field::Field::new(
            $key,
            |patch, cx, value, path| {
                patch.$field = Some(($read)(cx.ctx, value, path)?);
                Ok(())
            },
            |low, high| {
                if high.$field.is_some() {
                    low.$field.clone_from(&high.$field);
                }
            },
        )
    };
    ($key:literal, $read:expr) => {
        $crate::manifest::field::Field::new(
            $key,
            |_, cx, value, path| {
                ($read)(cx.ctx, value, path)?;
                Ok(())
            },
            $crate::manifest::field::no_overlay,
        )
    };
}
pub(in crate::manifest) use field;

/// A refusal of a row before it is read, given the row, its key's span and its path.
pub(in crate::manifest) type Check<'c, P> =
    &'c dyn Fn(&Field<P>, Range<usize>, &str) -> Result<(), ManifestError>;

/// Accepts every row.
pub(in crate::manifest) fn accept<P>(
    _: &Field<P>,
    _: Range<usize>,
    _: &str,
) -> Result<(), ManifestError> {
    Ok(())
}

/// In a variant, refuses a plan-wide row: `table` is where it may be set instead (`[table]`
/// or a profile's `table`).
pub(in crate::manifest) fn refuse_plan_wide<P>(
    cx: &Cx<'_>,
    table: &str,
    field: &Field<P>,
    span: Range<usize>,
    key_path: &str,
) -> Result<(), ManifestError> {
    if cx.per_variant && field.plan_wide {
        let name = field.key;
        return Err(cx
            .ctx
            .err(
                span,
                key_path,
                format!("`{name}` applies to the whole plan and cannot be set per variant"),
            )
            .with_hint(format!("set it in `[{table}]` or in a profile's `{table}`")));
    }
    Ok(())
}

/// A partial table: one layer of the merge, or a table read once.
pub(in crate::manifest) trait Patch: Default + Sized + 'static {
    /// The table's keys, in the order hints list them.
    const FIELDS: &'static [Field<Self>];

    fn keys() -> Vec<&'static str> {
        Self::FIELDS.iter().map(|f| f.key).collect()
    }

    /// The keys outside a profile (without the profile-only rows).
    fn keys_outside_profiles() -> Vec<&'static str> {
        Self::FIELDS
            .iter()
            .filter(|f| !f.profile_only)
            .map(|f| f.key)
            .collect()
    }

    /// Lays `higher` over `self`, field by field.
    fn overlay(&mut self, higher: &Self) {
        overlay_fields(self, higher);
    }

    /// Reads the table `value` at `path`: unknown keys first (the first in the file, with a
    /// did-you-mean hint), then each value in file order; `check` may refuse a row first.
    fn read(
        cx: &Cx<'_>,
        value: &Value<'_>,
        path: &str,
        check: Check<'_, Self>,
    ) -> Result<Self, ManifestError> {
        let table = expect_table(cx.ctx, value, path)?;
        check_keys(cx.ctx, table, &Self::keys(), path)?;
        let mut patch = Self::default();
        patch.read_entries(cx, table, path, check)?;
        Ok(patch)
    }

    /// As [`Patch::read`], for a table whose keys have been checked: reads the rows' values
    /// in file order into `self`, skipping keys that are not rows.
    fn read_entries(
        &mut self,
        cx: &Cx<'_>,
        table: &toml::de::DeTable<'_>,
        path: &str,
        check: Check<'_, Self>,
    ) -> Result<(), ManifestError> {
        for (key, value) in entries(table) {
            let name: &str = key.get_ref();
            let Some(field) = Self::FIELDS.iter().find(|f| f.key == name) else {
                continue;
            };
            let key_path = join(path, name);
            check(field, key.span(), &key_path)?;
            (field.read)(self, cx, value, &key_path)?;
        }
        Ok(())
    }

    /// Reads the rows' values in row order into `self`, reporting a missing required row at
    /// `table_value`; for tables whose keys have been checked and whose checks run in a fixed
    /// order.
    fn read_rows(
        &mut self,
        cx: &Cx<'_>,
        table: &toml::de::DeTable<'_>,
        table_value: &Value<'_>,
        path: &str,
    ) -> Result<(), ManifestError> {
        for field in Self::FIELDS {
            let value = match table.get_key_value(field.key) {
                Some((_, value)) => value,
                None if field.required => required(cx.ctx, table, table_value, path, field.key)?,
                None => continue,
            };
            (field.read)(self, cx, value, &join(path, field.key))?;
        }
        Ok(())
    }
}

/// [`Patch::overlay`] over the rows alone, for patches that overlay more than their rows.
pub(in crate::manifest) fn overlay_fields<P: Patch>(low: &mut P, high: &P) {
    for field in P::FIELDS {
        (field.overlay)(low, high);
    }
}
