//! A call that only sleeps: timings known in advance, for end-to-end tests of statistics and
//! the regression gate without device noise.

use super::{Setup, Workload};
use crate::measure::Stages;
use anyhow::Result;
use std::time::Duration;

pub struct Sleep {
    per_stage: Duration,
    stages: usize,
}

impl Sleep {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        let stages = p.int("stages")? as usize;
        Ok(Sleep {
            per_stage: Duration::from_secs_f64(p.float("ms")? / 1e3 / stages as f64),
            stages,
        })
    }
}

impl Workload for Sleep {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        for i in 0..self.stages {
            stages.stage(&format!("sleep{i}"), || std::thread::sleep(self.per_stage));
        }
        stages.count("sleeps", self.stages as u64);
        Ok(())
    }
}
