//! Walks the spanned TOML tree into a validated [`Model`]. Every check that depends only on the
//! file happens here, for every profile, variant and matrix cell, so that `claimbench check`
//! catches a mistake even in a profile that is not selected.

use super::error::{backticked, choice_hint, ManifestError};
use crate::knobs::registry::{self, KnobDef, KnobKind, KnobValue, KNOBS};
use crate::knobs::{Knobs, Spelled};
use crate::plan::{Order, ParamValue};
use crate::stats::Correction;
use crate::workloads::catalog::{self, ParamKind, ParamSpec, WorkloadSpec};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// Where errors point: the file name for messages and its text for line/column.
pub(super) struct Ctx<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ManifestError {
        let error = ManifestError::new(self.path, message).at(self.text, span.start);
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

/// A manifest after validation: everything needed to expand any profile into a plan.
#[derive(Debug, Clone)]
pub(super) struct Model {
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
pub(super) struct Layer {
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
pub(super) struct Located<T> {
    pub value: T,
    /// Dotted key path, e.g. `profiles.quick.run.repetitions`.
    pub path: String,
    /// Byte offset of the value in the manifest.
    pub offset: usize,
}

#[derive(Debug, Clone, Default)]
pub(super) struct RunPatch {
    pub warmup: Option<Located<u32>>,
    pub warmup_max: Option<Located<u32>>,
    pub settle: SettlePatch,
    pub repetitions: Option<Located<u32>>,
    pub repetitions_max: Option<Located<u32>>,
    pub target_rel_ci: Option<f64>,
    pub processes: Option<Located<u32>>,
    pub processes_max: Option<Located<u32>>,
    pub timeout_ms: Option<u64>,
    /// Plan-wide, like `order` and `seed`: never set in a variant's layer. `Some(0.0)`
    /// (`"0s"`) switches off a budget set by a lower layer.
    pub adaptive_budget_s: Option<f64>,
    pub order: Option<Order>,
    pub seed: Option<u64>,
}

/// `settle = true | false | { window, tolerance, min_clock_fraction }`. Whether the rule is on
/// and each of its fields merge separately: `settle = false` in a profile and
/// `settle = { window = 5 }` in a variant turn it back on with a window of 5; `true` turns it
/// on with the fields set so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct SettlePatch {
    /// `true` for a table.
    pub enabled: Option<bool>,
    pub window: Option<u32>,
    pub tolerance: Option<f64>,
    pub min_clock_fraction: Option<f64>,
}

/// `[compare]` (or a profile's `compare`); `thresholds` merge metric by metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ComparePatch {
    pub alpha: Option<f64>,
    pub correction: Option<Correction>,
    pub time_threshold: Option<f64>,
    pub memory_rel_tolerance: Option<f64>,
    pub memory_abs_tolerance_bytes: Option<u64>,
    pub thresholds: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
pub(super) struct VariantDef {
    pub name: String,
    pub claims: Vec<String>,
    pub description: Option<String>,
    pub layer: Layer,
}

/// One `[matrix]` axis: the cells are in the order written.
#[derive(Debug, Clone)]
pub(super) struct Axis {
    /// Last component of the axis path, used in expanded variant names.
    pub short: String,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone)]
pub(super) struct Cell {
    /// The value as it appears in expanded variant names.
    pub label: String,
    pub setting: Setting,
}

#[derive(Debug, Clone)]
pub(super) enum Setting {
    Param(String, ParamValue),
    Knob(KnobSetting),
}

/// One knob assignment, applied on top of the knobs merged so far (for `env`: one variable).
#[derive(Debug, Clone)]
pub(super) struct KnobSetting {
    pub knob: &'static KnobDef,
    pub value: KnobValue,
}

impl KnobSetting {
    pub fn apply(&self, knobs: &mut Knobs) {
        (self.knob.set)(knobs, &self.value);
    }

    fn label(&self) -> String {
        self.value.label()
    }
}

/// The `env` knob, whose keys are free-form variable names.
fn env_knob() -> &'static KnobDef {
    registry::knob("env").expect("the registry has `env`")
}

/// The knobs that hold a single value, by their path below `knobs` (`env` is separate: its
/// keys are free-form).
fn knob_leaves() -> impl Iterator<Item = &'static KnobDef> {
    KNOBS
        .iter()
        .filter(|k| !matches!(k.kind, KnobKind::EnvVars))
}

const TOP_KEYS: &[&str] = &[
    "suite", "params", "knobs", "run", "compare", "profiles", "variant", "matrix", "claim",
];
const SUITE_KEYS: &[&str] = &["name", "description", "workload", "source"];
const PROFILE_KEYS: &[&str] = &["params", "override_params", "knobs", "run", "compare"];
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
const RUN_KEYS: &[&str] = &[
    "warmup",
    "warmup_max",
    "settle",
    "repetitions",
    "repetitions_max",
    "target_rel_ci",
    "processes",
    "processes_max",
    "timeout",
    "adaptive_budget",
    "order",
    "seed",
];
/// `[run]` keys that apply to the whole plan, so not per variant.
const PLAN_WIDE_RUN_KEYS: &[&str] = &["order", "seed", "adaptive_budget"];
const SETTLE_KEYS: &[&str] = &["window", "tolerance", "min_clock_fraction"];
const COMPARE_KEYS: &[&str] = &[
    "alpha",
    "correction",
    "time_threshold",
    "memory_rel_tolerance",
    "memory_abs_tolerance_mib",
    "thresholds",
];

impl Spelled for Correction {
    const ALL: &'static [Self] = &[
        Correction::Holm,
        Correction::BenjaminiHochberg,
        Correction::None,
    ];

    fn as_str(self) -> &'static str {
        self.name()
    }
}

/// Profile name meaning "no profile".
pub(super) const BASE_PROFILE: &str = "base";

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

pub(super) fn parse_model(ctx: &Ctx<'_>, root: &DeTable<'_>) -> Result<Model, ManifestError> {
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
            } else if RUN_KEYS.contains(&name) {
                Some("run")
            } else if COMPARE_KEYS.contains(&name) {
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

/// `first` is allowed as the first character, then `first` or one of `rest`.
fn valid_name(name: &str, first: impl Fn(char) -> bool, rest: &str) -> bool {
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

fn optional_str(
    ctx: &Ctx<'_>,
    table: &DeTable<'_>,
    path: &str,
    name: &str,
) -> Result<Option<String>, ManifestError> {
    match table.get_key_value(name) {
        Some((_, value)) => Ok(Some(expect_str(ctx, value, &join(path, name))?.to_string())),
        None => Ok(None),
    }
}

/// The `params`, `knobs` and `run` entries of `table` (other keys are checked by the caller).
fn parse_layer(
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

fn parse_params(
    ctx: &Ctx<'_>,
    workload: &WorkloadSpec,
    value: &Value<'_>,
    path: &str,
) -> Result<BTreeMap<String, ParamValue>, ManifestError> {
    let mut params = BTreeMap::new();
    for (key, value) in entries(expect_table(ctx, value, path)?) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        let Some(spec) = workload.param(name) else {
            return Err(unknown_param(ctx, workload, key.span(), &key_path, name));
        };
        params.insert(name.to_string(), param_value(ctx, spec, value, &key_path)?);
    }
    Ok(params)
}

fn unknown_param(
    ctx: &Ctx<'_>,
    workload: &WorkloadSpec,
    span: Range<usize>,
    key_path: &str,
    name: &str,
) -> ManifestError {
    let names: Vec<&str> = workload.params.iter().map(|p| p.name).collect();
    ctx.err(
        span,
        key_path,
        format!("unknown parameter `{name}` for workload `{}`", workload.id),
    )
    .with_hint(choice_hint(
        name,
        &names,
        &format!("parameters of `{}`", workload.id),
    ))
}

fn param_value(
    ctx: &Ctx<'_>,
    spec: &ParamSpec,
    value: &Value<'_>,
    path: &str,
) -> Result<ParamValue, ManifestError> {
    match spec.kind {
        ParamKind::Int { min, max } => {
            let i = expect_int(ctx, value, path)?;
            check_int_range(ctx, value, path, i, i128::from(min), i128::from(max))?;
            Ok(ParamValue::Int(i as i64))
        }
        ParamKind::Float { min, max } => {
            let x = expect_number(ctx, value, path)?;
            if x < min || x > max {
                return Err(ctx.err(
                    value.span(),
                    path,
                    format!(
                        "`{path}` = {} is out of range: must be between {min} and {max}",
                        ctx.snippet(value.span())
                    ),
                ));
            }
            Ok(ParamValue::Float(x))
        }
        ParamKind::Bool => Ok(ParamValue::Bool(expect_bool(ctx, value, path)?)),
        ParamKind::Choice(options) => {
            let s = expect_str(ctx, value, path)?;
            if options.contains(&s) {
                Ok(ParamValue::Str(s.to_string()))
            } else {
                Err(unknown_value(ctx, value, path, s, options))
            }
        }
        ParamKind::Text(check) => {
            let s = expect_str(ctx, value, path)?;
            (check.check)(s).map_err(|hint| {
                ctx.err(
                    value.span(),
                    path,
                    format!("invalid value `{s}` for `{path}`"),
                )
                .with_hint(hint)
            })?;
            Ok(ParamValue::Str(s.to_string()))
        }
    }
}

/// Walks a (possibly nested) knobs table; `rel` is the path below `knobs`, `path` the full
/// path for messages.
fn walk_knobs(
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
                let var_value = expect_str(ctx, var_value, &var_path)?;
                out.push(env_setting(var_name, var_value));
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

fn knob_leaf(rel: &str) -> Option<&'static KnobDef> {
    knob_leaves().find(|k| k.name == rel)
}

/// The keys directly below `rel` (a group such as `cudnn`, or `""` for the knobs table).
fn knob_children(rel: &str) -> Vec<&'static str> {
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

fn env_setting(name: &str, value: &str) -> KnobSetting {
    KnobSetting {
        knob: env_knob(),
        value: KnobValue::Vars(BTreeMap::from([(name.to_string(), value.to_string())])),
    }
}

/// Reads a single-valued knob as its registry row says it is written.
fn knob_setting(
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

fn check_env_name(
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

fn parse_run(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    per_variant: bool,
) -> Result<RunPatch, ManifestError> {
    let table = expect_table(ctx, value, path)?;
    check_keys(ctx, table, RUN_KEYS, path)?;
    let mut run = RunPatch::default();
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        if per_variant && PLAN_WIDE_RUN_KEYS.contains(&name) {
            return Err(ctx
                .err(
                    key.span(),
                    &key_path,
                    format!("`{name}` applies to the whole plan and cannot be set per variant"),
                )
                .with_hint("set it in `[run]` or in a profile's `run`"));
        }
        let u32_at_least = |min: i128| -> Result<Option<Located<u32>>, ManifestError> {
            let i = expect_int(ctx, value, &key_path)?;
            check_int_range(ctx, value, &key_path, i, min, i128::from(u32::MAX))?;
            Ok(Some(Located {
                value: i as u32,
                path: key_path.clone(),
                offset: value.span().start,
            }))
        };
        match name {
            "warmup" => run.warmup = u32_at_least(0)?,
            "warmup_max" => run.warmup_max = u32_at_least(0)?,
            "settle" => run.settle = parse_settle(ctx, value, &key_path)?,
            "repetitions" => run.repetitions = u32_at_least(1)?,
            "repetitions_max" => run.repetitions_max = u32_at_least(1)?,
            "target_rel_ci" => {
                run.target_rel_ci = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?);
            }
            "processes" => run.processes = u32_at_least(1)?,
            "processes_max" => run.processes_max = u32_at_least(1)?,
            "timeout" => run.timeout_ms = Some(parse_timeout(ctx, value, &key_path)?),
            "adaptive_budget" => {
                let (duration, _) = parse_duration(ctx, value, &key_path)?;
                run.adaptive_budget_s = Some(duration.as_secs_f64());
            }
            "order" => run.order = Some(expect_enum(ctx, value, &key_path)?),
            "seed" => {
                let i = expect_int(ctx, value, &key_path)?;
                check_int_range(ctx, value, &key_path, i, 0, i128::from(u64::MAX))?;
                run.seed = Some(i as u64);
            }
            _ => {}
        }
    }
    Ok(run)
}

fn parse_settle(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<SettlePatch, ManifestError> {
    let table = match value.get_ref() {
        DeValue::Boolean(enabled) => {
            return Ok(SettlePatch {
                enabled: Some(*enabled),
                ..SettlePatch::default()
            })
        }
        DeValue::Table(table) => table,
        DeValue::String(s) if s == "true" || s == "false" => {
            return Err(type_error(ctx, value, path, "`true`, `false` or a table"));
        }
        _ => {
            return Err(
                type_error(ctx, value, path, "`true`, `false` or a table").with_hint(
                    "write `settle = false` for a fixed warm-up, or a table such as \
                     `settle = { window = 3, tolerance = 0.05 }`",
                ),
            )
        }
    };
    check_keys(ctx, table, SETTLE_KEYS, path)?;
    let mut settle = SettlePatch {
        enabled: Some(true),
        ..SettlePatch::default()
    };
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        match name {
            "window" => {
                let i = expect_int(ctx, value, &key_path)?;
                check_int_range(ctx, value, &key_path, i, 2, i128::from(u32::MAX))?;
                settle.window = Some(i as u32);
            }
            "tolerance" => {
                settle.tolerance = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?);
            }
            "min_clock_fraction" => {
                settle.min_clock_fraction =
                    Some(expect_float_in(ctx, value, &key_path, CLOSED_01)?);
            }
            _ => {}
        }
    }
    Ok(settle)
}

fn parse_compare(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<ComparePatch, ManifestError> {
    let table = expect_table(ctx, value, path)?;
    check_keys(ctx, table, COMPARE_KEYS, path)?;
    let mut compare = ComparePatch::default();
    for (key, value) in entries(table) {
        let name: &str = key.get_ref();
        let key_path = join(path, name);
        match name {
            "alpha" => compare.alpha = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?),
            "correction" => compare.correction = Some(parse_correction(ctx, value, &key_path)?),
            "time_threshold" => {
                compare.time_threshold = Some(expect_float_in(ctx, value, &key_path, OPEN_01)?);
            }
            "memory_rel_tolerance" => {
                compare.memory_rel_tolerance =
                    Some(expect_float_in(ctx, value, &key_path, HALF_OPEN_01)?);
            }
            "memory_abs_tolerance_mib" => {
                let mib = expect_float_in(ctx, value, &key_path, AT_LEAST_0)?;
                let bytes = (mib * MIB).round();
                // 2^64 is exactly representable; anything from there on does not fit.
                if bytes >= 2f64.powi(64) {
                    return Err(ctx.err(
                        value.span(),
                        &key_path,
                        format!("`{key_path}` = {} is too large", ctx.snippet(value.span())),
                    ));
                }
                compare.memory_abs_tolerance_bytes = Some(bytes as u64);
            }
            "thresholds" => {
                for (metric, threshold) in entries(expect_table(ctx, value, &key_path)?) {
                    let metric_name: &str = metric.get_ref();
                    let metric_path = join(&key_path, metric_name);
                    check_metric_name(ctx, metric.span(), &metric_path, metric_name, &key_path)?;
                    let threshold = expect_float_in(ctx, threshold, &metric_path, OPEN_01)?;
                    compare
                        .thresholds
                        .insert(metric_name.to_string(), threshold);
                }
            }
            _ => {}
        }
    }
    Ok(compare)
}

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Time metrics that a per-metric threshold can name: `wall_ms`, `gpu_ms`, `stage_<name>_ms`.
fn check_metric_name(
    ctx: &Ctx<'_>,
    span: Range<usize>,
    path: &str,
    name: &str,
    table_path: &str,
) -> Result<(), ManifestError> {
    const FIXED: &[&str] = &["wall_ms", "gpu_ms"];
    let stage = name
        .strip_prefix("stage_")
        .and_then(|rest| rest.strip_suffix("_ms"));
    let valid = FIXED.contains(&name)
        || stage.is_some_and(|stage| {
            !stage.is_empty()
                && stage
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if valid {
        return Ok(());
    }
    let hint = if name.starts_with("peak_") || name.ends_with("_bytes") {
        String::from(
            "memory metrics are compared with `memory_rel_tolerance` and \
             `memory_abs_tolerance_mib`, not per-metric thresholds",
        )
    } else if let Some(metric) = super::error::closest(name, FIXED) {
        format!("did you mean `{metric}`?")
    } else {
        String::from(
            "metric names are `wall_ms`, `gpu_ms` or `stage_<name>_ms`, where <name> is \
             lowercase letters, digits and `_` (e.g. `stage_attention_ms`)",
        )
    };
    Err(ctx
        .err(
            span,
            path,
            format!("invalid metric name `{name}` in `{table_path}`"),
        )
        .with_hint(hint))
}

fn parse_correction(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<Correction, ManifestError> {
    let names = Correction::names();
    // Names from other tools that `closest` would not map.
    if let DeValue::String(s) = value.get_ref() {
        let lower = s.to_ascii_lowercase();
        if ["bh", "fdr", "fdr_bh", "fdr-bh"].contains(&lower.as_str()) {
            return Err(unknown_value(ctx, value, path, s, &names)
                .with_hint("did you mean `benjamini-hochberg`?"));
        }
        if lower == "bonferroni" {
            return Err(unknown_value(ctx, value, path, s, &names).with_hint(
                "use `holm`: it controls the same family-wise error rate and is never less \
                 powerful than Bonferroni",
            ));
        }
    }
    expect_enum(ctx, value, path)
}

fn parse_duration<'t>(
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

fn parse_timeout(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<u64, ManifestError> {
    let (duration, text) = parse_duration(ctx, value, path)?;
    match u64::try_from(duration.as_millis()) {
        Ok(0) => Err(ctx.err(
            value.span(),
            path,
            format!("`{path}` = \"{text}\" is out of range: must be at least 1ms"),
        )),
        Ok(ms) => Ok(ms),
        Err(_) => Err(ctx.err(
            value.span(),
            path,
            format!("`{path}` = \"{text}\" is too long"),
        )),
    }
}

fn parse_variants(
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
            let (line, _) = super::error::line_col(ctx.text, name_offsets[first]);
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

/// `[A-Z][A-Z0-9]*-[0-9]{2,}`, e.g. `H0-01`.
pub(super) fn valid_claim(claim: &str) -> bool {
    let Some((note, number)) = claim.split_once('-') else {
        return false;
    };
    valid_name(
        note,
        |c| c.is_ascii_uppercase(),
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    ) && number.len() >= 2
        && number.chars().all(|c| c.is_ascii_digit())
}

/// What a matrix axis sets.
enum AxisTarget {
    Param(&'static ParamSpec),
    Knob(&'static KnobDef),
    Env(String),
}

fn parse_matrix(
    ctx: &Ctx<'_>,
    workload: &'static WorkloadSpec,
    value: &Value<'_>,
) -> Result<Vec<Axis>, ManifestError> {
    let table = expect_table(ctx, value, "matrix")?;
    // Quoted keys ("params.resolution") and dotted keys (params.resolution) both name axes.
    let mut leaves = Vec::new();
    flatten(table, "", &mut leaves);
    leaves.sort_by_key(|(_, key, _)| key.span().start);

    let mut axes = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (axis_path, key, values) in leaves {
        let path = format!("matrix.{axis_path}");
        if seen.contains(&axis_path) {
            return Err(ctx.err(
                key.span(),
                &path,
                format!("duplicate matrix axis `{axis_path}`"),
            ));
        }
        let target = axis_target(ctx, workload, &axis_path, key.span(), &path)?;
        let DeValue::Array(items) = values.get_ref() else {
            return Err(type_error(ctx, values, &path, "an array of values")
                .with_hint(format!("write `\"{axis_path}\" = [value, …]`")));
        };
        if items.is_empty() {
            return Err(ctx
                .err(
                    values.span(),
                    &path,
                    format!("matrix axis `{axis_path}` has no values"),
                )
                .with_hint("list at least one value"));
        }
        let mut cells: Vec<Cell> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let setting = match &target {
                AxisTarget::Param(spec) => Setting::Param(
                    spec.name.to_string(),
                    param_value(ctx, spec, item, &item_path)?,
                ),
                AxisTarget::Knob(knob) => Setting::Knob(knob_setting(ctx, knob, item, &item_path)?),
                AxisTarget::Env(name) => {
                    Setting::Knob(env_setting(name, expect_str(ctx, item, &item_path)?))
                }
            };
            let label = match &setting {
                Setting::Param(_, value) => value.to_string(),
                Setting::Knob(knob) => knob.label(),
            };
            if cells.iter().any(|c| c.label == label) {
                return Err(ctx
                    .err(
                        item.span(),
                        &item_path,
                        format!("duplicate value `{label}` in matrix axis `{axis_path}`"),
                    )
                    .with_hint("each value of an axis must give a distinct variant name"));
            }
            cells.push(Cell { label, setting });
        }
        let short = axis_path
            .rsplit('.')
            .next()
            .unwrap_or(&axis_path)
            .to_string();
        axes.push(Axis { short, cells });
        seen.push(axis_path);
    }
    Ok(axes)
}

type Leaf<'t, 'i> = (String, &'t Key<'i>, &'t Value<'i>);

/// Every non-table value below `table` (and every empty table, so that it is reported rather
/// than ignored), with its dotted path.
fn flatten<'t, 'i>(table: &'t DeTable<'i>, prefix: &str, out: &mut Vec<Leaf<'t, 'i>>) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        match value.get_ref() {
            DeValue::Table(sub) if !sub.is_empty() => flatten(sub, &path, out),
            _ => out.push((path, key, value)),
        }
    }
}

fn axis_target(
    ctx: &Ctx<'_>,
    workload: &'static WorkloadSpec,
    axis_path: &str,
    span: Range<usize>,
    path: &str,
) -> Result<AxisTarget, ManifestError> {
    if let Some(name) = axis_path.strip_prefix("params.") {
        if let Some(spec) = workload.param(name) {
            return Ok(AxisTarget::Param(spec));
        }
    } else if let Some(knob) = axis_path.strip_prefix("knobs.") {
        if let Some(var) = knob.strip_prefix("env.") {
            check_env_name(ctx, span, path, var, "knobs.env")?;
            return Ok(AxisTarget::Env(var.to_string()));
        }
        if let Some(leaf) = knob_leaf(knob) {
            return Ok(AxisTarget::Knob(leaf));
        }
    }
    let mut valid: Vec<String> = workload
        .params
        .iter()
        .map(|p| format!("params.{}", p.name))
        .collect();
    valid.extend(knob_leaves().map(|k| format!("knobs.{}", k.name)));
    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
    let hint = match super::error::closest(axis_path, &valid) {
        Some(axis) => format!("did you mean `{axis}`?"),
        None => format!(
            "axes are `params.<name>` or `knobs.<knob>`: {}, `knobs.env.<NAME>`",
            backticked(&valid)
        ),
    };
    Err(ctx
        .err(span, path, format!("unknown matrix axis `{axis_path}`"))
        .with_hint(hint))
}

// ---- typed access to values ----

/// `string "8"`, `table`, … for messages.
fn found(ctx: &Ctx<'_>, value: &Value<'_>) -> String {
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

fn unknown_value(
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

fn expect_int(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<i128, ManifestError> {
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
fn expect_number(ctx: &Ctx<'_>, value: &Value<'_>, path: &str) -> Result<f64, ManifestError> {
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
fn expect_enum<T: Spelled>(
    ctx: &Ctx<'_>,
    value: &Value<'_>,
    path: &str,
) -> Result<T, ManifestError> {
    let given = expect_choice(ctx, value, path, &T::names())?;
    Ok(T::from_name(given).expect("a listed name"))
}

/// A string that is one of `options`.
fn expect_choice(
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

fn check_int_range(
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
struct FloatRange {
    min: (f64, bool),
    max: Option<(f64, bool)>,
}

/// (0, 1)
const OPEN_01: FloatRange = FloatRange {
    min: (0.0, false),
    max: Some((1.0, false)),
};
/// [0, 1)
const HALF_OPEN_01: FloatRange = FloatRange {
    min: (0.0, true),
    max: Some((1.0, false)),
};
/// [0, 1]
const CLOSED_01: FloatRange = FloatRange {
    min: (0.0, true),
    max: Some((1.0, true)),
};
/// [0, ∞)
const AT_LEAST_0: FloatRange = FloatRange {
    min: (0.0, true),
    max: None,
};

/// A number (integer or float) within `range`. Where the range ends at 1, a value written as
/// a percentage (`5` for 5 %) gets a hint.
fn expect_float_in(
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
