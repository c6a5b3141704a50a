//! Turns a validated model plus a profile into the variants of a plan: defaults < suite <
//! profile < variant < matrix cell.

use super::error::{backticked, closest, ManifestError};
use super::parse::{Axis, Cell, Layer, Model, RunPatch, Setting, VariantDef, BASE_PROFILE};
use super::ProfileChoice;
use crate::knobs::Knobs;
use crate::plan::{Order, VariantPlan};
use std::path::Path;

/// `[run]` values that apply when nothing sets them.
const DEFAULT_WARMUP: u32 = 3;
const DEFAULT_REPETITIONS: u32 = 10;
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

/// Plan-wide order and seed: `[run]`, then the profile's `run`.
pub(super) fn order_and_seed(model: &Model, profile: Option<&Layer>) -> (Order, u64) {
    let layers = std::iter::once(&model.base).chain(profile);
    let mut order = Order::default();
    let mut seed = DEFAULT_SEED;
    for layer in layers {
        order = layer.run.order.unwrap_or(order);
        seed = layer.run.seed.unwrap_or(seed);
    }
    (order, seed)
}

/// Every variant of the plan, matrix cells expanded, in manifest order.
pub(super) fn variants(model: &Model, profile: Option<&Layer>) -> Vec<VariantPlan> {
    let implicit = VariantDef {
        name: String::from("default"),
        claims: Vec::new(),
        layer: Layer::default(),
    };
    let defined: Vec<&VariantDef> = if model.variants.is_empty() {
        vec![&implicit]
    } else {
        model.variants.iter().collect()
    };

    let mut out = Vec::new();
    for def in defined {
        let layers: Vec<&Layer> = std::iter::once(&model.base)
            .chain(profile)
            .chain(std::iter::once(&def.layer))
            .collect();
        let base = resolve(model, &def.name, &def.claims, &layers);
        if model.axes.is_empty() {
            out.push(base);
            continue;
        }
        for cell in cells(&model.axes) {
            let mut variant = base.clone();
            let labels: Vec<String> = model
                .axes
                .iter()
                .zip(&cell)
                .map(|(axis, cell)| format!("{}={}", axis.short, cell.label))
                .collect();
            variant.name = format!("{}/{}", def.name, labels.join(","));
            for cell in cell {
                match &cell.setting {
                    Setting::Param(param, value) => {
                        variant.params.insert(param.clone(), value.clone());
                    }
                    Setting::Knob(knob) => knob.apply(&mut variant.knobs),
                }
            }
            out.push(variant);
        }
    }
    out
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

fn resolve(model: &Model, name: &str, claims: &[String], layers: &[&Layer]) -> VariantPlan {
    let mut params = model
        .workload
        .params
        .iter()
        .map(|p| (p.name.to_string(), p.default.to_value()))
        .collect::<std::collections::BTreeMap<_, _>>();
    let mut knobs = Knobs::default();
    let mut run = RunPatch::default();
    for layer in layers {
        params.extend(layer.params.iter().map(|(k, v)| (k.clone(), v.clone())));
        for knob in &layer.knobs {
            knob.apply(&mut knobs);
        }
        let r = &layer.run;
        run.warmup = r.warmup.or(run.warmup);
        run.repetitions = r.repetitions.or(run.repetitions);
        run.processes = r.processes.or(run.processes);
        run.timeout_ms = r.timeout_ms.or(run.timeout_ms);
    }
    VariantPlan {
        name: name.to_string(),
        claims: claims.to_vec(),
        workload: model.workload.id.to_string(),
        params,
        knobs,
        warmup: run.warmup.unwrap_or(DEFAULT_WARMUP),
        repetitions: run.repetitions.unwrap_or(DEFAULT_REPETITIONS),
        processes: run.processes.unwrap_or(DEFAULT_PROCESSES),
        timeout_ms: run.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    }
}
