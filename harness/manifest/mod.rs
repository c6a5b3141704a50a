//! Scenario manifests: the TOML files that say what a suite runs. Parsing walks the spanned TOML
//! tree by hand (rather than through serde) so that every mistake, syntactic or semantic, is
//! reported at its line and column with the offending key and, where it looks like a typo, a
//! suggestion. [`build_plan`] then expands a manifest and a profile into a [`Plan`].
//!
//! Merge precedence, low to high: `Knobs::default()` and the catalogue's parameter defaults <
//! the suite's `[params]`/`[knobs]`/`[run]` < the selected profile < the variant < the matrix
//! cell. `[compare]`, and the `order`, `seed` and `adaptive_budget` of `[run]`, apply to the
//! whole plan: the profile may override them, a variant may not.
//!
//! Adaptive measurement (all in `[run]`): warm-up runs at least `warmup` calls and, while
//! `settle` is on (the default), continues until the call times have settled, up to
//! `warmup_max` (default `max(warmup, 20)`, or `warmup` with `settle = false`). With
//! `target_rel_ci`, a process measures at least `repetitions` calls and continues until the
//! median's 95 % interval is that narrow, up to `repetitions_max` (default 4 × `repetitions`);
//! with `adaptive_budget` as well, variants get extra processes up to `processes_max`.
//! Every `*_max` must be at least its minimum after merging, in every profile and variant.

#![allow(
    clippy::result_large_err,
    reason = "ManifestError's public fields are the interface; errors are rare and cold"
)]

mod claims;
mod describe;
mod error;
mod expand;
mod field;
mod schema;
mod spanned;
#[cfg(test)]
mod tests;

pub use describe::describe_plan;
pub use error::ManifestError;

use crate::plan::Plan;
use schema::Model;
use sha2::{Digest, Sha256};
use spanned::Ctx;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::DeTable;
use toml_parser::parser::EventKind;

/// Largest manifest file read (16 MiB): far above any real manifest, far below memory.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// A parsed and fully validated manifest. Validation covers every profile, variant and matrix
/// cell, so a manifest that loads can be planned with any of its profiles.
#[derive(Debug, Clone)]
pub struct Manifest {
    path: PathBuf,
    text: String,
    model: Model,
}

impl Manifest {
    /// Reads, parses and validates the manifest at `path`.
    pub fn from_path(path: &Path) -> Result<Manifest, ManifestError> {
        let cannot_read =
            |e: std::io::Error| ManifestError::new(path, format!("cannot read manifest: {e}"));
        // A device or a pipe (`/dev/zero`, a FIFO) would be read forever.
        let meta = std::fs::metadata(path).map_err(cannot_read)?;
        if !meta.is_file() {
            return Err(ManifestError::new(
                path,
                "cannot read manifest: not a regular file",
            ));
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::new(
                path,
                format!(
                    "cannot read manifest: {} bytes, more than a manifest may hold ({MAX_MANIFEST_BYTES})",
                    meta.len()
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(cannot_read)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            ManifestError::new(path, "manifest is not valid UTF-8").at(&prefix, valid)
        })?;
        Manifest::from_str(path, &text)
    }

    /// Parses and validates `text`; `path_for_messages` only names the file in errors and in
    /// the plan.
    pub fn from_str(path_for_messages: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let ctx = Ctx::new(path_for_messages, text);
        let root = DeTable::parse(text).map_err(|e| syntax_error(&ctx, &e))?;
        let model = schema::parse_model(&ctx, root.get_ref())?;
        expand::check_limits(&ctx, &model)?;
        expand::check_claims(&ctx, &model)?;
        Ok(Manifest {
            path: path_for_messages.to_path_buf(),
            text: text.to_string(),
            model,
        })
    }

    /// `[suite] name`: what runs and results of this manifest are filed under.
    pub fn suite_name(&self) -> &str {
        &self.model.suite
    }

    /// Profile names in file order (`base`, meaning no profile, is implicit and not listed).
    pub fn profiles(&self) -> Vec<String> {
        self.model
            .profiles
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The manifest exactly as read, so that a run record can keep what was run.
    pub fn source_text(&self) -> &str {
        &self.text
    }

    /// The path as given, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Most dotted parts a manifest key may have (`a.b.c` has 3): real keys have a handful. The TOML
/// reader refuses keys of more than 80 parts without saying where, so such keys are located here.
pub const MAX_KEY_PARTS: usize = 64;

fn syntax_error(ctx: &Ctx<'_>, error: &toml::de::Error) -> ManifestError {
    let mut message = error.message().trim().replace('\n', "; ");
    if error.span().is_none() {
        if let Some(error) = overlong_key(ctx) {
            return error;
        }
    }
    if let Some(span) = error.span() {
        if message == "duplicate key" {
            if let Some(key) = ctx.text.get(span.clone()) {
                message = format!("duplicate key `{key}`");
            }
        }
        ManifestError::new(ctx.path, format!("invalid TOML: {message}")).at(ctx.text, span.start)
    } else {
        ManifestError::new(ctx.path, format!("invalid TOML: {message}"))
    }
}

/// The first key (in a table header or before `=`) of more than [`MAX_KEY_PARTS`] dotted parts,
/// as an error at its first part, naming its first parts.
fn overlong_key(ctx: &Ctx<'_>) -> Option<ManifestError> {
    const SHOWN_PARTS: usize = 8;
    let source = toml_parser::Source::new(ctx.text);
    let tokens = source.lex().into_vec();
    // The key being read: its span so far and its parts; the first one too long.
    let mut key: Option<(Range<usize>, usize)> = None;
    let mut shown_end = 0;
    let mut after_dot = false;
    let mut found: Option<(usize, usize, usize)> = None;
    let mut receiver = |event: toml_parser::parser::Event| {
        let span = event.span().start()..event.span().end();
        match event.kind() {
            EventKind::SimpleKey => match &mut key {
                Some((key_span, parts)) if after_dot => {
                    key_span.end = span.end;
                    *parts += 1;
                    if *parts <= SHOWN_PARTS {
                        shown_end = span.end;
                    }
                }
                _ => {
                    key = Some((span.clone(), 1));
                    shown_end = span.end;
                }
            },
            EventKind::KeySep => after_dot = true,
            EventKind::Whitespace => return,
            _ => {
                if let (None, Some((span, parts))) = (found, key.take()) {
                    if parts > MAX_KEY_PARTS {
                        found = Some((span.start, parts, shown_end));
                    }
                }
            }
        }
        if event.kind() != EventKind::KeySep {
            after_dot = false;
        }
    };
    toml_parser::parser::parse_document(&tokens, &mut receiver, &mut ());
    let (start, parts, shown_end) = found.or_else(|| {
        // A key at the very end of the file, with no `=` or `]` after it.
        key.filter(|(_, parts)| *parts > MAX_KEY_PARTS)
            .map(|(span, parts)| (span.start, parts, shown_end))
    })?;
    let shown = format!("{}…", ctx.snippet(start..shown_end));
    Some(ctx.err(
        start..start,
        &shown,
        format!(
            "key `{shown}` has {parts} dotted parts, more than a manifest key may have ({MAX_KEY_PARTS})"
        ),
    ))
}

/// Which profile to plan with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileChoice<'a> {
    /// A profile of the manifest, or `base` for none.
    Named(&'a str),
    /// What suits the machine: `nightly` (if defined) with CUDA; without CUDA `cpu`, else
    /// `quick`, if defined; otherwise `base`.
    Auto { cuda_present: bool },
}

/// Expands `manifest` with `profile` into the variants and job order of one run.
pub fn build_plan(manifest: &Manifest, profile: ProfileChoice<'_>) -> Result<Plan, ManifestError> {
    let model = &manifest.model;
    let (profile_name, layer) = expand::select_profile(&manifest.path, model, profile)?;
    let wide = expand::plan_wide(model, layer);
    let variants = expand::variants(model, layer);
    let jobs = Plan::schedule(&variants, wide.order, wide.seed);
    let claims = claims::specs(&model.claims, &variants);
    Ok(Plan {
        suite: model.suite.clone(),
        description: model.description.clone(),
        replica: model.replica.clone(),
        manifest_path: manifest.path.to_string_lossy().into_owned(),
        manifest_sha256: sha256_hex(manifest.text.as_bytes()),
        profile: profile_name.to_string(),
        order: wide.order,
        seed: wide.seed,
        adaptive_budget_s: wide.adaptive_budget_s,
        compare: wide.compare,
        variants,
        jobs,
        claims,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
