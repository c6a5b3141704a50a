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

// What the history's change points may do.
#[derive(Debug, Clone, Args)]
pub struct ShiftArgs {
    /// Exit 6 when a metric's history shows a persistent slowdown or growth (at least
    /// --min-shift) that began within the newest runs.
    #[arg(long)]
    pub fail_on_change_point: bool,
    /// Smallest relative change of a change point that is reported, as a fraction.
    #[arg(long, default_value_t = 0.05, value_parser = fraction)]
    pub min_shift: f64,
}

impl Default for ShiftArgs {
    /// Report shifts of the default size, never fail on them.
    fn default() -> Self {
        ShiftArgs {
            fail_on_change_point: false,
            min_shift: 0.05,
        }
    }
}

impl ShiftArgs {
    pub fn config(&self) -> crate::stats::changepoint::ChangePointConfig {
        crate::stats::changepoint::ChangePointConfig {
            min_magnitude: self.min_shift,
            ..Default::default()
        }
    }

    /// [`exit_code::CHANGE_POINT`] when asked to fail on a recent worsening and there is one.
    pub fn exit_code(&self, shifts: &[crate::store::history::Shift]) -> Option<i32> {
        (self.fail_on_change_point && shifts.iter().any(|s| s.recent_worsening))
            .then_some(crate::exit_code::CHANGE_POINT)
    }
}

/// A finite fraction ≥ 0 (`0.05` is 5 %).
fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("`{text}` is not a fraction ≥ 0 (0.05 is 5 %)")),
    }
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
