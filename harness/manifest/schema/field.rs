//! A table of the schema as rows: each [`Field`] names a key, reads its value into a patch and
//! lays a higher layer's value over a lower one. The key checks, the did-you-mean lists, the
//! parse loop and the merging of profiles, variants and matrix cells (`Layer::overlay`) are
//! derived from the rows ([`Patch`]), so a key is declared once.

use crate::manifest::error::ManifestError;
use crate::manifest::spanned::{check_keys, entries, expect_table, join, Ctx, Value};

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
    /// Reads the value at `path` into the patch.
    pub read: fn(&mut P, &Ctx<'_>, &Value<'_>, &str) -> Result<(), ManifestError>,
    /// Lays the value of a higher layer (if it sets one) over this one.
    pub overlay: fn(&mut P, &P),
}

/// Marks a row as applying to the whole plan.
pub(in crate::manifest) const fn plan_wide<P>(field: Field<P>) -> Field<P> {
    Field {
        plan_wide: true,
        ..field
    }
}

/// `field!("key", reader, field)`: the value read by `reader(ctx, value, path)` goes to
/// `patch.field` (an `Option`); a higher layer's `Some` replaces a lower one's.
macro_rules! field {
    ($key:literal, $read:expr, $field:ident) => {
        $crate::manifest::schema::field::Field {
            key: $key,
            plan_wide: false,
            read: |patch, ctx, value, path| {
                patch.$field = Some(($read)(ctx, value, path)?);
                Ok(())
            },
            overlay: |low, high| {
                if high.$field.is_some() {
                    low.$field.clone_from(&high.$field);
                }
            },
        }
    };
}
pub(in crate::manifest) use field;

/// A partial table: one layer of the merge.
pub(in crate::manifest) trait Patch: Default + Sized + 'static {
    /// The table's keys, in the order hints list them.
    const FIELDS: &'static [Field<Self>];

    fn keys() -> Vec<&'static str> {
        Self::FIELDS.iter().map(|f| f.key).collect()
    }

    /// Lays `higher` over `self`, field by field.
    fn overlay(&mut self, higher: &Self) {
        overlay_fields(self, higher);
    }

    /// Reads the table `value` at `path`: unknown keys first (the first in the file, with a
    /// did-you-mean hint), then each value in file order; `check` may refuse a row (given the key's span and path) first.
    fn read(
        ctx: &Ctx<'_>,
        value: &Value<'_>,
        path: &str,
        check: impl Fn(&Field<Self>, std::ops::Range<usize>, &str) -> Result<(), ManifestError>,
    ) -> Result<Self, ManifestError> {
        let table = expect_table(ctx, value, path)?;
        check_keys(ctx, table, &Self::keys(), path)?;
        Self::read_entries(ctx, table, path, check)
    }

    /// As [`Patch::read`], for a table whose keys have been checked.
    fn read_entries(
        ctx: &Ctx<'_>,
        table: &toml::de::DeTable<'_>,
        path: &str,
        check: impl Fn(&Field<Self>, std::ops::Range<usize>, &str) -> Result<(), ManifestError>,
    ) -> Result<Self, ManifestError> {
        let mut patch = Self::default();
        for (key, value) in entries(table) {
            let name: &str = key.get_ref();
            let Some(field) = Self::FIELDS.iter().find(|f| f.key == name) else {
                continue;
            };
            let key_path = join(path, name);
            check(field, key.span(), &key_path)?;
            (field.read)(&mut patch, ctx, value, &key_path)?;
        }
        Ok(patch)
    }
}

/// [`Patch::overlay`] over the rows alone, for patches that overlay more than their rows.
pub(in crate::manifest) fn overlay_fields<P: Patch>(low: &mut P, high: &P) {
    for field in P::FIELDS {
        (field.overlay)(low, high);
    }
}
