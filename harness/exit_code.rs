//! Process exit codes, stable for CI scripts (README, "Exit codes"). Errors carry theirs through
//! `cli::ExpectedError::exit_code`.
//!
//! The launcher (`main.rs`) compiles this file into itself with `#[path]` rather than linking the
//! library, which would pull in libtorch: keep it free of `use` and dependencies.

/// Everything ran; no regression, no refuted claim.
pub const OK: i32 = 0;
/// A regression against the baseline, or a refuted claim.
pub const REGRESSION: i32 = 1;
/// Bad command line or bad input file (manifest, run record, baseline).
pub const USAGE: i32 = 2;
/// The environment cannot run the work: libtorch not found, I/O failure, CUDA required but absent.
pub const ENVIRONMENT: i32 = 3;
/// The run completed but some workers failed (crash, timeout, workload error). An out-of-memory
/// outcome is a measurement, not a failure.
pub const WORKER_FAILURES: i32 = 4;
/// The gate had no baseline to compare with for some suite (none stored for this hardware
/// and software stack); `--allow-missing-baseline` accepts that. Reported when nothing worse
/// (a regression, a refuted claim, failed workers) happened.
pub const NO_BASELINE: i32 = 5;
/// `--fail-on-change-point`: a metric's history shows a persistent slowdown or growth of at
/// least the minimum magnitude that began among the newest runs. Reported when nothing among
/// 1–4 happened; takes precedence over [`NO_BASELINE`].
pub const CHANGE_POINT: i32 = 6;
/// `merge`: a shard is missing, was interrupted or was cut short; with `--allow-incomplete`
/// the merged record is written anyway, marked incomplete, and the exit code is still this.
pub const INCOMPLETE_SHARDS: i32 = 7;
/// Stopped by Ctrl-C (SIGINT); everything finished so far is recorded.
pub const INTERRUPTED: i32 = 130;
/// Stopped by SIGTERM (CI cancellation, `docker stop`, `timeout`), handled like Ctrl-C.
pub const TERMINATED: i32 = 143;
/// Stopped by SIGHUP (the terminal went away), handled like Ctrl-C.
pub const HUNG_UP: i32 = 129;
