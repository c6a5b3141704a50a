//! Fault injection, to prove that a failing worker is recorded and the suite goes on. After
//! `after_calls` successful measured calls the chosen fault happens on the next call.

use super::{Setup, Workload};
use crate::measure::{Stages, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Fault {
    kind: String,
    /// Calls (warm-up included) that succeed before the fault.
    healthy_calls: u64,
    calls: u64,
    alloc_bytes: i64,
    exit_code: i32,
    target: Target,
}

impl Fault {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        Ok(Fault {
            kind: p.str("kind")?.to_string(),
            healthy_calls: u64::from(setup.warmup) + p.int("after_calls")? as u64,
            calls: 0,
            alloc_bytes: (p.float("alloc_gib")? * (1u64 << 30) as f64) as i64,
            exit_code: p.int("exit_code")? as i32,
            target: setup.target,
        })
    }
}

impl Workload for Fault {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        self.calls += 1;
        let healthy = self.calls <= self.healthy_calls;
        stages.stage("fault", || -> Result<()> {
            if healthy {
                let _ = Tensor::f_ones([16], (tch::Kind::Float, self.target.tch_device()))?;
                return Ok(());
            }
            match self.kind.as_str() {
                "abort" => std::process::abort(),
                "exit" => std::process::exit(self.exit_code),
                "panic" => panic!("injected panic"),
                "hang" => loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                },
                "alloc" => {
                    let mut t = Tensor::f_empty(
                        [self.alloc_bytes],
                        (tch::Kind::Uint8, self.target.tch_device()),
                    )?;
                    // Touch the memory so the allocation is real on every backend.
                    let _ = t.f_fill_(1)?;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    }
}
