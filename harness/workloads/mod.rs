//! Workloads the worker runs: each builds its weights and inputs once (untimed), then runs one
//! call per sample, reporting stage boundaries and counters through [`Stages`].

pub mod catalog;
mod conv_stack;
mod fault;
pub mod hunyuan3d;
mod hunyuan3d_texture;
mod matmul;
pub mod pipeline;
mod sam3d;
mod sleep;
mod t2i_dit;
mod unet;
pub mod up2you;
mod vae_decode;

use crate::knobs::Dtype;
use crate::measure::{Stages, Target};
use crate::plan::{ParamValue, VariantPlan};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

/// One runnable workload instance.
pub trait Workload {
    /// Runs one call. Errors from libtorch (an OOM, say) come back as `Err` or as a panic with
    /// tch's message; the worker classifies both.
    fn call(&mut self, stages: &mut Stages) -> Result<()>;
}

/// What a workload is built from.
pub struct Setup<'a> {
    pub target: Target,
    pub dtype: Dtype,
    pub params: Params<'a>,
    /// Unmeasured calls the worker makes first (fault injection counts past them).
    pub warmup: u32,
}

impl Setup<'_> {
    pub fn kind(&self) -> tch::Kind {
        match self.dtype {
            Dtype::Fp32 => tch::Kind::Float,
            Dtype::Fp16 => tch::Kind::Half,
            Dtype::Bf16 => tch::Kind::BFloat16,
        }
    }

    pub fn device(&self) -> tch::Device {
        self.target.tch_device()
    }
}

/// Typed access to a variant's parameters; the plan has every parameter filled in, so a
/// missing or mistyped one is a harness bug and reported as such.
#[derive(Clone, Copy)]
pub struct Params<'a>(pub &'a BTreeMap<String, ParamValue>);

impl Params<'_> {
    fn get(&self, name: &str) -> Result<&ParamValue> {
        self.0
            .get(name)
            .ok_or_else(|| anyhow!("parameter `{name}` missing from the plan"))
    }

    pub fn int(&self, name: &str) -> Result<i64> {
        match self.get(name)? {
            ParamValue::Int(i) => Ok(*i),
            other => bail!("parameter `{name}` should be an integer, got {other}"),
        }
    }

    pub fn float(&self, name: &str) -> Result<f64> {
        match self.get(name)? {
            ParamValue::Float(x) => Ok(*x),
            ParamValue::Int(i) => Ok(*i as f64),
            other => bail!("parameter `{name}` should be a number, got {other}"),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name)? {
            ParamValue::Bool(b) => Ok(*b),
            other => bail!("parameter `{name}` should be a boolean, got {other}"),
        }
    }

    pub fn str(&self, name: &str) -> Result<&str> {
        match self.get(name)? {
            ParamValue::Str(s) => Ok(s),
            other => bail!("parameter `{name}` should be a string, got {other}"),
        }
    }
}

/// A single-process, single-call plan for `workload` with the catalogue's default parameters
/// and `overrides`: for benches and tests that drive a workload without a manifest.
pub fn default_plan(workload: &str, overrides: &[(&str, ParamValue)]) -> Result<VariantPlan> {
    let spec =
        catalog::workload(workload).ok_or_else(|| anyhow!("unknown workload `{workload}`"))?;
    let mut params: BTreeMap<String, ParamValue> = spec
        .params
        .iter()
        .map(|p| (p.name.to_string(), p.default.to_value()))
        .collect();
    for (name, value) in overrides {
        if spec.param(name).is_none() {
            bail!("workload `{workload}` has no parameter `{name}`");
        }
        params.insert(name.to_string(), value.clone());
    }
    Ok(VariantPlan {
        name: workload.into(),
        claims: vec![],
        workload: workload.into(),
        params,
        knobs: Default::default(),
        description: None,
        warmup: 0,
        warmup_max: 0,
        settle: None,
        repetitions: 1,
        repetitions_max: 1,
        target_rel_ci: None,
        processes: 1,
        processes_max: 1,
        timeout_ms: 60_000,
    })
}

/// Builds the workload a variant names.
pub fn build(variant: &VariantPlan, target: Target) -> Result<Box<dyn Workload>> {
    let setup = Setup {
        target,
        dtype: variant.knobs.dtype,
        params: Params(&variant.params),
        warmup: variant.warmup,
    };
    Ok(match variant.workload.as_str() {
        "conv_stack" => Box::new(conv_stack::ConvStack::new(&setup)?),
        "matmul" => Box::new(matmul::Matmul::new(&setup)?),
        "fault" => Box::new(fault::Fault::new(&setup)?),
        "sleep" => Box::new(sleep::Sleep::new(&setup)?),
        "unet" => Box::new(unet::Unet::new(&setup)?),
        "vae_decode" => Box::new(vae_decode::VaeDecode::new(&setup)?),
        "hunyuan3d_shape" => Box::new(hunyuan3d::Hunyuan3dShape::new(&setup)?),
        "up2you" => Box::new(up2you::Up2You::new(&setup)?),
        "hunyuan3d_texture" => Box::new(hunyuan3d_texture::Hunyuan3dTexture::new(&setup)?),
        "sam3d" => Box::new(sam3d::Sam3d::new(&setup)?),
        "t2i_dit" => Box::new(t2i_dit::T2iDit::new(&setup)?),
        catalog::PYTHON_WORKLOAD => {
            bail!("the `python` workload runs in the Python worker (python -m claimbench.worker)")
        }
        other => bail!("unknown workload `{other}`"),
    })
}

/// One call of `workload` on the CPU without autograd, panicking if it fails: for tests.
#[cfg(test)]
pub(crate) fn measure_once(workload: &mut dyn Workload) -> crate::measure::Measurement {
    let _guard = tch::no_grad_guard();
    crate::measure::Meter::cpu()
        .measure(|s| workload.call(s))
        .unwrap_or_else(|e| panic!("workload call failed: {e:?}"))
}

/// The workload that `new` sets up from `default_plan(workload, overrides)` on the CPU: for
/// tests that look inside it.
#[cfg(test)]
pub(crate) fn build_default_plan<W>(
    workload: &str,
    overrides: &[(&str, ParamValue)],
    new: impl FnOnce(&Setup) -> Result<W>,
) -> W {
    let plan = default_plan(workload, overrides).unwrap();
    let setup = Setup {
        target: Target::Cpu,
        dtype: plan.knobs.dtype,
        params: Params(&plan.params),
        warmup: 0,
    };
    new(&setup).unwrap()
}

/// `default_plan` built on the CPU and called once (see `measure_once`).
#[cfg(test)]
pub(crate) fn run_default_plan(
    workload: &str,
    overrides: &[(&str, ParamValue)],
) -> crate::measure::Measurement {
    let plan = default_plan(workload, overrides).unwrap();
    let mut w = build(&plan, Target::Cpu).unwrap();
    measure_once(w.as_mut())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_workload_builds_and_runs_on_cpu() {
        let small = [
            ("batch", ParamValue::Int(1)),
            ("channels", ParamValue::Int(32)),
            ("resolution", ParamValue::Int(8)),
            ("m", ParamValue::Int(16)),
            ("k", ParamValue::Int(16)),
            ("n", ParamValue::Int(16)),
            ("preset", ParamValue::Str("tiny".into())),
        ];
        // The Python workload runs in the Python worker (tests/python_worker.rs).
        for spec in catalog::WORKLOADS.iter().filter(|w| !w.is_python()) {
            let overrides: Vec<_> = small
                .iter()
                .filter(|(k, _)| spec.param(k).is_some())
                .cloned()
                .collect();
            let plan = default_plan(spec.id, &overrides).unwrap();
            let mut w = build(&plan, Target::Cpu).unwrap();
            let m = measure_once(w.as_mut());
            assert!(!m.stages.is_empty(), "{} reported no stage", spec.id);
        }
    }
}
