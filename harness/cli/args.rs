//! Arguments shared by several commands, declared once and flattened into each.
//!
//! The structs carry `//` comments, not doc comments: clap would take a doc comment as the
//! `about` of every command the struct is flattened into.

use crate::manifest::ProfileChoice;
use crate::store::Results;
use clap::Args;
use std::path::PathBuf;

// Where run records and baselines live.
#[derive(Debug, Clone, Args)]
pub struct ResultsArgs {
    /// Results folder: run records under RESULTS/runs/, baselines under RESULTS/baselines/.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

impl ResultsArgs {
    pub fn folder(&self) -> Results {
        Results::new(&self.results)
    }
}

// What to compare a run with.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// Baseline to compare with: a baseline file or folder, or a run folder.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Compare even if the baseline comes from other hardware or software.
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Exit 0 rather than 5 when a suite has no stored baseline for this hardware, software
    /// and profile.
    #[arg(long)]
    pub allow_missing_baseline: bool,
    /// Compare variants whose configuration (workload, params, knobs, warm-up) changed since
    /// the baseline, rather than reporting them as not compared.
    #[arg(long)]
    pub allow_config_change: bool,
}

// Which profile of each manifest to plan.
#[derive(Debug, Clone, Args)]
pub struct ProfileArgs {
    /// Profile to plan, or `base` for none (default: `nightly` on CUDA; `cpu`, else `quick`,
    /// without CUDA).
    #[arg(long)]
    pub profile: Option<String>,
}

impl ProfileArgs {
    pub fn choice(&self, cuda_present: bool) -> ProfileChoice<'_> {
        match self.profile.as_deref() {
            Some(p) => ProfileChoice::Named(p),
            None => ProfileChoice::Auto { cuda_present },
        }
    }
}
