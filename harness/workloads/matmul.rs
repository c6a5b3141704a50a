//! One matrix product, the reference op for checking allocator peaks against PyTorch: the
//! operands are created at set-up, each call allocates only the (m×n) result.

use super::{Setup, Workload};
use crate::measure::Stages;
use anyhow::Result;
use tch::Tensor;

pub struct Matmul {
    a: Tensor,
    b: Tensor,
}

impl Matmul {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        tch::manual_seed(p.int("seed")?);
        let opts = (setup.kind(), setup.device());
        Ok(Matmul {
            a: Tensor::f_randn([p.int("m")?, p.int("k")?], opts)?,
            b: Tensor::f_randn([p.int("k")?, p.int("n")?], opts)?,
        })
    }
}

impl Workload for Matmul {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        stages.stage("matmul", || self.a.f_matmul(&self.b).map(drop))?;
        Ok(())
    }
}
