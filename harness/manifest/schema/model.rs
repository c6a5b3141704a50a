//! The validated model of a manifest: the layers that merge into each variant, the variants,
//! the matrix axes and the claims.

use super::compare::{parse_compare, ComparePatch};
use super::field::Patch;
use super::knobs::{walk_knobs, KnobSetting};
use super::params::parse_params;
use super::run::{parse_run, RunPatch};
use crate::manifest::error::ManifestError;
use crate::manifest::spanned::{entries, expect_table, join, Ctx};
use crate::plan::ParamValue;
use crate::workloads::catalog::WorkloadSpec;
use std::collections::BTreeMap;
use toml::de::DeTable;

/// A manifest after validation: everything needed to expand any profile into a plan.
#[derive(Debug, Clone)]
pub(in crate::manifest) struct Model {
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
    pub claims: Vec<crate::manifest::claims::ClaimDef>,
}

/// One level of the merge: a partial set of params, knobs, run and compare settings (a
/// variant's `compare` is always empty: comparing is plan-wide).
#[derive(Debug, Clone, Default)]
pub(in crate::manifest) struct Layer {
    pub params: BTreeMap<String, ParamValue>,
    /// A profile's `override_params`: these beat the variants' own params (and matrix cells),
    /// so a reduced-size profile also shrinks variants that set a size themselves.
    pub override_params: BTreeMap<String, ParamValue>,
    pub knobs: Vec<KnobSetting>,
    pub run: RunPatch,
    pub compare: ComparePatch,
}

impl Layer {
    /// Lays `higher` over this layer: params by name, knob settings after these (they apply in
    /// order), `run` and `compare` by their rows.
    pub fn overlay(&mut self, higher: &Layer) {
        let params = |map: &BTreeMap<String, ParamValue>| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        self.params.extend(params(&higher.params));
        self.override_params.extend(params(&higher.override_params));
        self.knobs.extend(higher.knobs.iter().cloned());
        self.run.overlay(&higher.run);
        self.compare.overlay(&higher.compare);
    }

    /// The layers merged, lowest precedence first.
    pub fn merged<'a>(layers: impl IntoIterator<Item = &'a Layer>) -> Layer {
        layers
            .into_iter()
            .fold(Layer::default(), |mut merged, layer| {
                merged.overlay(layer);
                merged
            })
    }
}

#[derive(Debug, Clone)]
pub(in crate::manifest) struct VariantDef {
    pub name: String,
    pub claims: Vec<String>,
    pub description: Option<String>,
    pub layer: Layer,
}

/// One `[matrix]` axis: the cells are in the order written.
#[derive(Debug, Clone)]
pub(in crate::manifest) struct Axis {
    /// Last component of the axis path, used in expanded variant names.
    pub short: String,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone)]
pub(in crate::manifest) struct Cell {
    /// The value as it appears in expanded variant names.
    pub label: String,
    pub setting: Setting,
}

#[derive(Debug, Clone)]
pub(in crate::manifest) enum Setting {
    Param(String, ParamValue),
    Knob(KnobSetting),
}

impl Setting {
    /// A matrix cell as a layer of its own, above the variant's.
    pub fn layer(&self) -> Layer {
        let mut layer = Layer::default();
        match self {
            Setting::Param(name, value) => {
                layer.params.insert(name.clone(), value.clone());
            }
            Setting::Knob(knob) => layer.knobs.push(knob.clone()),
        }
        layer
    }
}

/// The `params`, `knobs` and `run` entries of `table` (other keys are checked by the caller).
pub(in crate::manifest) fn parse_layer(
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
