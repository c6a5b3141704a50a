//! The validated model of a manifest: the layers that merge into each variant, the variants,
//! the matrix axes and the claims.

use super::compare::{parse_compare, ComparePatch};
use super::knobs::{walk_knobs, KnobSetting};
use super::params::parse_params;
use super::run::{parse_run, RunPatch};
use crate::manifest::error::ManifestError;
use crate::manifest::field::{field, plan_wide, profile_only, refuse_plan_wide, Cx, Field, Patch};
use crate::manifest::spanned::expect_table;
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
    /// `[suite] replica`: the suite of the built-in replicas of these configurations.
    pub replica: Option<String>,
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

/// Params merge by name.
fn extend_params(low: &mut BTreeMap<String, ParamValue>, high: &BTreeMap<String, ParamValue>) {
    low.extend(high.iter().map(|(k, v)| (k.clone(), v.clone())));
}

/// The tables of a layer, as they appear at the top level, in a profile and in a variant.
/// Laying a layer over another (`Layer::overlay`) merges params by name, appends knob settings
/// (they apply in order), and merges `run` and `compare` by their rows.
impl Patch for Layer {
    const FIELDS: &'static [Field<Self>] = &[
        Field::new(
            "params",
            |layer, cx, value, path| {
                layer.params = parse_params(cx.ctx, cx.workload(), value, path)?;
                Ok(())
            },
            |low, high| extend_params(&mut low.params, &high.params),
        ),
        profile_only(Field::new(
            "override_params",
            |layer, cx, value, path| {
                layer.override_params = parse_params(cx.ctx, cx.workload(), value, path)?;
                Ok(())
            },
            |low, high| extend_params(&mut low.override_params, &high.override_params),
        )),
        Field::new(
            "knobs",
            |layer, cx, value, path| {
                let table = expect_table(cx.ctx, value, path)?;
                walk_knobs(cx.ctx, table, "", path, &mut layer.knobs)
            },
            |low, high| low.knobs.extend(high.knobs.iter().cloned()),
        ),
        field!(table "run", parse_run, run),
        plan_wide(field!(table "compare", parse_compare, compare)),
    ];
}

impl Layer {
    /// The layer's rows among the entries of `table` (whose keys have been checked), in file
    /// order; in a variant, `compare` is refused.
    pub fn read_from(cx: &Cx<'_>, table: &DeTable<'_>, path: &str) -> Result<Layer, ManifestError> {
        let mut layer = Layer::default();
        layer.read_entries(cx, table, path, &|field, span, key_path| {
            refuse_plan_wide(cx, field.key, field, span, key_path)
        })?;
        Ok(layer)
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

#[derive(Debug, Clone, Default)]
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
    /// Where the axis's key starts in the manifest.
    pub offset: usize,
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
