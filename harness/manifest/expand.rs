//! Turns a validated model plus a profile into the variants of a plan: defaults < suite <
//! profile < variant < matrix cell. Also the checks that need merged values (`*_max` against
//! its minimum), which [`check_limits`] runs for every profile when a manifest is loaded.

use super::error::{backticked, choice_hint, closest, ManifestError};
use super::schema::{Axis, Cell, Layer, Located, Model, VariantDef, BASE_PROFILE};
use super::spanned::{join, Ctx};
use super::ProfileChoice;
use crate::claim::ClaimCheck;
use crate::knobs::Knobs;
use crate::plan::{
    CompareSettings, Order, Settle, VariantPlan, MAX_JOBS, MAX_PROCESSES, MAX_VARIANTS,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// `[run]` values that apply when nothing sets them.
const DEFAULT_WARMUP: u32 = 3;
/// `warmup_max` when settling is on and nothing sets it (or `warmup`, if larger).
const DEFAULT_WARMUP_MAX_SETTLED: u32 = 20;
const DEFAULT_REPETITIONS: u32 = 10;
/// `repetitions_max` is this many times `repetitions` when `target_rel_ci` is set.
const ADAPTIVE_REPETITIONS_FACTOR: u32 = 4;
const DEFAULT_PROCESSES: u32 = 1;
const DEFAULT_TIMEOUT_MS: u64 = 10 * 60 * 1000;
const DEFAULT_SEED: u64 = 0;

/// The profile to use, as its name (`base` for none) and its layer.
pub(super) fn select_profile<'m>(
    path: &Path,
    model: &'m Model,
    choice: ProfileChoice<'_>,
) -> Result<(&'m str, Option<&'m Layer>), ManifestError> {
    let find = |name: &str| {
        model
            .profiles
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, layer)| (n.as_str(), Some(layer)))
    };
    let none = (BASE_PROFILE, None);
    match choice {
        ProfileChoice::Named(BASE_PROFILE) => Ok(none),
        ProfileChoice::Named(name) => find(name).ok_or_else(|| {
            let mut names: Vec<&str> = vec![BASE_PROFILE];
            names.extend(model.profiles.iter().map(|(n, _)| n.as_str()));
            let hint = match closest(name, &names) {
                Some(profile) => format!("did you mean `{profile}`?"),
                None => format!("available profiles: {}", backticked(&names)),
            };
            ManifestError::new(path, format!("unknown profile `{name}`"))
                .with_key(format!("profiles.{name}"))
                .with_hint(hint)
        }),
        ProfileChoice::Auto { cuda_present: true } => Ok(find("nightly").unwrap_or(none)),
        ProfileChoice::Auto {
            cuda_present: false,
        } => Ok(find("cpu").or_else(|| find("quick")).unwrap_or(none)),
    }
}

/// Settings that apply to the whole plan rather than to one variant.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PlanWide {
    pub order: Order,
    pub seed: u64,
    pub adaptive_budget_s: Option<f64>,
    pub compare: CompareSettings,
}

/// Plan-wide settings: defaults < `[run]`/`[compare]` < the profile's `run`/`compare`.
pub(super) fn plan_wide(model: &Model, profile: Option<&Layer>) -> PlanWide {
    let mut plan = PlanWide {
        order: Order::default(),
        seed: DEFAULT_SEED,
        adaptive_budget_s: None,
        compare: CompareSettings::default(),
    };
    let Layer { run, compare, .. } = Layer::merged(std::iter::once(&model.base).chain(profile));
    let defaults = &mut plan.compare;
    plan.order = run.order.unwrap_or(plan.order);
    plan.seed = run.seed.unwrap_or(plan.seed);
    // `"0s"` (say, in a quick profile) switches off a suite's budget.
    plan.adaptive_budget_s = run.adaptive_budget_s.filter(|s| *s > 0.0);
    defaults.alpha = compare.alpha.unwrap_or(defaults.alpha);
    defaults.correction = compare.correction.unwrap_or(defaults.correction);
    defaults.time_threshold = compare.time_threshold.unwrap_or(defaults.time_threshold);
    defaults.memory_rel_tolerance = compare
        .memory_rel_tolerance
        .unwrap_or(defaults.memory_rel_tolerance);
    defaults.memory_abs_tolerance_bytes = compare
        .memory_abs_tolerance_bytes
        .unwrap_or(defaults.memory_abs_tolerance_bytes);
    defaults.reserved_rel_tolerance = compare
        .reserved_rel_tolerance
        .unwrap_or(defaults.reserved_rel_tolerance);
    defaults.reserved_abs_tolerance_bytes = compare
        .reserved_abs_tolerance_bytes
        .unwrap_or(defaults.reserved_abs_tolerance_bytes);
    defaults.host_rss_rel_tolerance = compare
        .host_rss_rel_tolerance
        .unwrap_or(defaults.host_rss_rel_tolerance);
    defaults.host_rss_abs_tolerance_bytes = compare
        .host_rss_abs_tolerance_bytes
        .unwrap_or(defaults.host_rss_abs_tolerance_bytes);
    defaults.metric_thresholds = compare.thresholds;
    plan
}

/// Every variant of the plan, matrix cells expanded, in manifest order. A matrix cell is a
/// layer above the variant's; a profile's `override_params` apply last.
pub(super) fn variants(model: &Model, profile: Option<&Layer>) -> Vec<VariantPlan> {
    let implicit = implicit_variant();
    let mut out = Vec::new();
    for def in defined_variants(model, &implicit) {
        let layers = layers(model, profile, def);
        if model.axes.is_empty() {
            out.push(resolve(model, def, &Layer::merged(layers)));
            continue;
        }
        for cell in cells(&model.axes) {
            let cell_layers: Vec<Layer> = cell.iter().map(|c| c.setting.layer()).collect();
            let merged = Layer::merged(layers.iter().copied().chain(&cell_layers));
            let mut variant = resolve(model, def, &merged);
            let labels: Vec<String> = model
                .axes
                .iter()
                .zip(&cell)
                .map(|(axis, cell)| format!("{}={}", axis.short, cell.label))
                .collect();
            variant.name = format!("{}/{}", def.name, labels.join(","));
            out.push(variant);
        }
    }
    out
}

/// The variant used when a manifest defines none.
fn implicit_variant() -> VariantDef {
    VariantDef {
        name: String::from("default"),
        claims: Vec::new(),
        description: None,
        layer: Layer::default(),
    }
}

fn defined_variants<'m>(model: &'m Model, implicit: &'m VariantDef) -> Vec<&'m VariantDef> {
    if model.variants.is_empty() {
        vec![implicit]
    } else {
        model.variants.iter().collect()
    }
}

/// The layers of `def` under `profile`, lowest precedence first (matrix cells come later).
fn layers<'m>(model: &'m Model, profile: Option<&'m Layer>, def: &'m VariantDef) -> Vec<&'m Layer> {
    std::iter::once(&model.base)
        .chain(profile)
        .chain(std::iter::once(&def.layer))
        .collect()
}

/// The cartesian product of the axes, the first axis varying slowest.
fn cells(axes: &[Axis]) -> Vec<Vec<&Cell>> {
    axes.iter().fold(vec![Vec::new()], |product, axis| {
        product
            .iter()
            .flat_map(|prefix| {
                axis.cells.iter().map(move |cell| {
                    let mut next = prefix.clone();
                    next.push(cell);
                    next
                })
            })
            .collect()
    })
}

/// The variant `def` from its merged layer, defaults applied.
fn resolve(model: &Model, def: &VariantDef, merged: &Layer) -> VariantPlan {
    let mut params = model
        .workload
        .params
        .iter()
        .map(|p| (p.name.to_string(), p.default.to_value()))
        .collect::<std::collections::BTreeMap<_, _>>();
    params.extend(merged.params.clone());
    params.extend(merged.override_params.clone());
    let mut knobs = Knobs::default();
    for knob in &merged.knobs {
        knob.apply(&mut knobs);
    }
    let run = &merged.run;
    let settle = run.settle.enabled.unwrap_or(true).then(|| {
        let d = Settle::default();
        Settle {
            window: run.settle.window.unwrap_or(d.window),
            tolerance: run.settle.tolerance.unwrap_or(d.tolerance),
            min_clock_fraction: run
                .settle
                .min_clock_fraction
                .unwrap_or(d.min_clock_fraction),
        }
    });
    let count =
        |merged: &Option<Located<u32>>, default: u32| merged.as_ref().map_or(default, |l| l.value);
    let warmup = count(&run.warmup, DEFAULT_WARMUP);
    let repetitions = count(&run.repetitions, DEFAULT_REPETITIONS);
    let processes = count(&run.processes, DEFAULT_PROCESSES);
    VariantPlan {
        name: def.name.clone(),
        claims: def.claims.clone(),
        workload: model.workload.id.to_string(),
        params,
        knobs,
        description: def.description.clone(),
        warmup,
        warmup_max: count(
            &run.warmup_max,
            match settle {
                Some(_) => warmup.max(DEFAULT_WARMUP_MAX_SETTLED),
                None => warmup,
            },
        ),
        settle,
        repetitions,
        repetitions_max: count(
            &run.repetitions_max,
            match run.target_rel_ci {
                Some(_) => repetitions.saturating_mul(ADAPTIVE_REPETITIONS_FACTOR),
                None => repetitions,
            },
        ),
        target_rel_ci: run.target_rel_ci,
        processes,
        processes_max: count(&run.processes_max, processes),
        timeout_ms: run.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    }
}

/// A merged count and the key that set it (`None`: its default).
#[derive(Debug, Clone, Copy)]
pub(super) struct Count<'m> {
    pub value: u32,
    pub set_by: Option<&'m Located<u32>>,
}

impl<'m> Count<'m> {
    /// A resolved count and the merged setting it came from.
    fn new(value: u32, set_by: &'m Option<Located<u32>>) -> Self {
        Count {
            value,
            set_by: set_by.as_ref(),
        }
    }
}

/// Checks that every `*_max` is at least its minimum, for every profile (and none) and every
/// variant, so that a manifest that loads can be planned with any of its profiles. Matrix
/// cells cannot set run settings, so they need no check of their own.
pub(super) fn check_limits(ctx: &Ctx<'_>, model: &Model) -> Result<(), ManifestError> {
    let implicit = implicit_variant();
    let defs = defined_variants(model, &implicit);
    // Each axis is capped when it is read; variants times cells is checked here.
    let cells: usize = model.axes.iter().map(|a| a.cells.len()).product();
    let variants = defs.len().saturating_mul(cells);
    if variants > MAX_VARIANTS {
        let offset = model.axes.last().map_or(0, |a| a.offset);
        return Err(ctx
            .err(
                offset..offset,
                "matrix",
                format!(
                    "{} variants × {cells} matrix cells make {variants} variants, more than {MAX_VARIANTS}",
                    defs.len()
                ),
            )
            .with_hint("fewer variants, axes or values"));
    }
    let profiles = std::iter::once(None).chain(model.profiles.iter().map(|(_, l)| Some(l)));
    for profile in profiles {
        let mut jobs: u64 = 0;
        for &def in &defs {
            let merged = Layer::merged(layers(model, profile, def));
            let (plan, run) = (resolve(model, def, &merged), &merged.run);
            let count = Count::new;
            let processes = run.processes_max.as_ref().or(run.processes.as_ref());
            let too_many = |message: String, hint: &str| match processes {
                Some(at) => ctx
                    .err(at.offset..at.offset, &at.path, message)
                    .with_hint(hint),
                None => ManifestError::new(ctx.path, message).with_hint(hint),
            };
            if plan.processes_max > MAX_PROCESSES {
                return Err(too_many(
                    format!(
                        "variant `{}` may run {} processes, more than {MAX_PROCESSES}",
                        def.name, plan.processes_max
                    ),
                    "lower `processes` / `processes_max`",
                ));
            }
            jobs += u64::from(plan.processes_max) * cells as u64;
            if jobs > MAX_JOBS {
                return Err(too_many(
                    format!("the plan would run more than {MAX_JOBS} worker processes"),
                    "fewer variants, matrix cells or processes",
                ));
            }
            for (name, min, max) in [
                (
                    "warmup",
                    count(plan.warmup, &run.warmup),
                    count(plan.warmup_max, &run.warmup_max),
                ),
                (
                    "repetitions",
                    count(plan.repetitions, &run.repetitions),
                    count(plan.repetitions_max, &run.repetitions_max),
                ),
                (
                    "processes",
                    count(plan.processes, &run.processes),
                    count(plan.processes_max, &run.processes_max),
                ),
            ] {
                check_limit(ctx, name, min, max)?;
            }
        }
    }
    Ok(())
}

/// `<name>_max` (`max`) must be at least `<name>` (`min`). The error points at the `_max` key
/// (in the layer that set it), or at the minimum's key when the maximum is a default, and says
/// where the other value comes from.
pub(super) fn check_limit(
    ctx: &Ctx<'_>,
    name: &str,
    min: Count<'_>,
    max: Count<'_>,
) -> Result<(), ManifestError> {
    if max.value >= min.value {
        return Ok(());
    }
    let max_name = format!("{name}_max");
    let fix = format!(
        "raise `{max_name}` to at least {} or lower `{name}`",
        min.value
    );
    let origin = |count: Count<'_>, key: &str| match count.set_by {
        Some(located) => {
            let (line, _) = ctx.line_col(located.offset);
            format!(
                "`{key}` = {} is set by `{}` on line {line}",
                count.value, located.path
            )
        }
        None => format!("`{key}` defaults to {}", count.value),
    };
    let error = match (max.set_by, min.set_by) {
        (Some(at), min_at) => {
            let hint = match min_at {
                Some(min_at) if same_table(&min_at.path, &at.path) => fix,
                _ => format!("{}; {fix}", origin(min, name)),
            };
            ctx.err(
                at.offset..at.offset,
                &at.path,
                format!(
                    "`{}` = {} is less than `{name}` = {}",
                    at.path, max.value, min.value
                ),
            )
            .with_hint(hint)
        }
        (None, Some(at)) => ctx
            .err(
                at.offset..at.offset,
                &at.path,
                format!(
                    "`{}` = {} is more than `{max_name}` = {}",
                    at.path, min.value, max.value
                ),
            )
            .with_hint(format!("{}; {fix}", origin(max, &max_name))),
        // Defaults always satisfy the rule; kept so that a future default cannot slip through.
        (None, None) => ManifestError::new(
            ctx.path,
            format!(
                "`{max_name}` = {} is less than `{name}` = {} (both defaults)",
                max.value, min.value
            ),
        ),
    };
    Err(error)
}

/// Whether two dotted key paths are in the same table (`run.warmup`, `run.warmup_max`).
fn same_table(a: &str, b: &str) -> bool {
    a.rsplit_once('.').map(|(table, _)| table) == b.rsplit_once('.').map(|(table, _)| table)
}

/// Checks every variant a claim names against the expanded variant names, and that a claim of
/// fitting has a budget to fit in, under every profile.
pub(super) fn check_claims(ctx: &Ctx<'_>, model: &Model) -> Result<(), ManifestError> {
    if model.claims.is_empty() {
        return Ok(());
    }
    let plans = variants(model, None);
    let names: Vec<&str> = plans.iter().map(|v| v.name.as_str()).collect();
    let known: HashSet<&str> = names.iter().copied().collect();
    for claim in &model.claims {
        for r in &claim.refs {
            if !known.contains(r.name.as_str()) {
                let defined = model.variants.iter().any(|d| d.name == r.name);
                let hint = if defined && !model.axes.is_empty() {
                    let cells: Vec<&str> = names
                        .iter()
                        .copied()
                        .filter(|n| n.starts_with(&format!("{}/", r.name)))
                        .collect();
                    format!(
                        "the matrix expands `{}` into {}; claims name expanded variants",
                        r.name,
                        backticked(&cells)
                    )
                } else {
                    choice_hint(&r.name, &names, "variants")
                };
                return Err(ctx
                    .err(
                        r.offset..r.offset,
                        &r.key,
                        format!("unknown variant `{}` in `{}`", r.name, r.key),
                    )
                    .with_hint(hint));
            }
        }
    }
    let profiles = std::iter::once(None).chain(
        model
            .profiles
            .iter()
            .map(|(name, layer)| Some((name, layer))),
    );
    for profile in profiles {
        let plans = variants(model, profile.map(|(_, layer)| layer));
        let by_name: HashMap<&str, &VariantPlan> =
            plans.iter().map(|v| (v.name.as_str(), v)).collect();
        for claim in &model.claims {
            let (Some(offset), ClaimCheck::Fit { variant, .. }) = (claim.fit_offset, &claim.check)
            else {
                continue;
            };
            let budget = by_name
                .get(variant.as_str())
                .and_then(|v| v.knobs.vram_budget_gib);
            if budget.is_none() {
                let under = profile
                    .map(|(name, _)| format!(" under profile `{name}`"))
                    .unwrap_or_default();
                return Err(ctx
                    .err(
                        offset..offset,
                        &join(&claim.path, "fit"),
                        format!(
                            "claim `{}` says `{variant}` fits its VRAM budget, but `{variant}` \
                             sets no `knobs.vram_budget_gib`{under}",
                            claim.id
                        ),
                    )
                    .with_hint(
                        "set `knobs.vram_budget_gib` (the card size the claim is about) on the \
                         variant or in `[knobs]`",
                    ));
            }
        }
    }
    Ok(())
}
