//! The errors a command can end with, each with its documented exit code (README, "Exit
//! codes"; [`crate::exit_code`]). They stay typed up to [`super::main`], which prints them
//! and exits with [`ExpectedError::exit_code`].

use crate::exit_code;
use crate::manifest::ManifestError;
use crate::store::StoreError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExpectedError {
    /// A manifest that does not parse or validate (boxed: it is the largest error).
    #[error(transparent)]
    Manifest(Box<ManifestError>),
    /// Reading or writing the results folder. A missing file or folder named on the command
    /// line, or one whose contents do not parse, is an input error; any other I/O failure is
    /// the environment's.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no manifests given and no scenarios/ folder found")]
    NoScenarios,
    #[error("{} holds no .toml manifest", .0.display())]
    EmptyScenarios(PathBuf),
    #[error("scenarios folder {} not found", .0.display())]
    ScenariosNotFound(PathBuf),
    #[error("no variant name contains `{0}`")]
    NoVariantMatches(String),
    #[error("refusing to compare {} with {}: they were measured on different hardware or software ({}); timings would differ for reasons other than the code. Pass --allow-mismatch to compare anyway", run.display(), baseline.display(), differences.join(", "))]
    HardwareMismatch {
        run: PathBuf,
        baseline: PathBuf,
        differences: Vec<String>,
    },
    #[error("refusing to store {} as a baseline: the run is incomplete, {why}; a partial run makes a misleading baseline", run.display())]
    IncompleteBaseline { run: PathBuf, why: String },
    /// A run whose metrics cannot make a baseline (missing or non-finite values).
    #[error("refusing to store {} as a baseline: {why}", run.display())]
    UnusableBaseline { run: PathBuf, why: String },
    /// `dist --out` names a folder that holds something other than a previous dist.
    #[error("refusing to write the dist into {}: it is not empty and not a previous `claimbench dist` folder (no README.txt and claimbench-engine), and its contents would be lost; choose a new or empty folder", .0.display())]
    DistOutNotDist(PathBuf),
    #[error("refusing to write the dist into {}: its scenarios/ folder is the one given by --scenarios, which would be replaced by itself", .0.display())]
    DistOverScenarios(PathBuf),
    #[error("{} and {} {}: one run holds each suite once (give each manifest its own `[suite] name`, and name each manifest once)", first.display(), second.display(), if names.0 == names.1 { format!("both define suite `{}`", names.0) } else { format!("define suites `{}` and `{}`, whose file names collide", names.0, names.1) })]
    DuplicateSuite {
        first: PathBuf,
        second: PathBuf,
        names: (String, String),
    },
    /// A metric history file that does not parse (named with its line).
    #[error("{0:#}")]
    BadHistory(anyhow::Error),
    /// `--gpus`, `--shard` and the like given values that cannot work.
    #[error("{0}")]
    Scale(String),
    /// `merge` given shards that do not belong together (other plans, hardware, duplicates).
    #[error("cannot merge: {0}")]
    MergeMismatch(String),
    /// `merge` given shards that do not add up to a complete run (missing, interrupted or cut
    /// short), without `--allow-incomplete`.
    #[error("cannot merge: {0}; rerun those shards (or pass --allow-incomplete to write a merged record marked incomplete)")]
    IncompleteShards(String),
    /// The machine cannot do the work: I/O, spawning workers, the Ctrl-C handler.
    #[error(transparent)]
    Environment(#[from] anyhow::Error),
}

impl From<ManifestError> for ExpectedError {
    fn from(e: ManifestError) -> Self {
        ExpectedError::Manifest(Box::new(e))
    }
}

impl From<std::io::Error> for ExpectedError {
    fn from(e: std::io::Error) -> Self {
        ExpectedError::Environment(e.into())
    }
}

impl ExpectedError {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExpectedError::Store(e) if e.is_io_failure() => exit_code::ENVIRONMENT,
            ExpectedError::Manifest(_)
            | ExpectedError::Store(_)
            | ExpectedError::NoScenarios
            | ExpectedError::EmptyScenarios(_)
            | ExpectedError::ScenariosNotFound(_)
            | ExpectedError::NoVariantMatches(_)
            | ExpectedError::HardwareMismatch { .. }
            | ExpectedError::IncompleteBaseline { .. }
            | ExpectedError::UnusableBaseline { .. }
            | ExpectedError::DistOutNotDist(_)
            | ExpectedError::DistOverScenarios(_)
            | ExpectedError::DuplicateSuite { .. }
            | ExpectedError::BadHistory(_)
            | ExpectedError::Scale(_)
            | ExpectedError::MergeMismatch(_) => exit_code::USAGE,
            ExpectedError::IncompleteShards(_) => exit_code::INCOMPLETE_SHARDS,
            ExpectedError::Environment(_) => exit_code::ENVIRONMENT,
        }
    }

    /// The message and its causes, `outer: inner: …` (as anyhow's `{:#}` writes them).
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_error(kind: std::io::ErrorKind) -> ExpectedError {
        StoreError::Read {
            what: "run record",
            path: "r/run.json".into(),
            source: std::io::Error::from(kind),
        }
        .into()
    }

    #[test]
    fn io_failures_are_the_environment_and_missing_input_is_usage() {
        assert_eq!(
            read_error(std::io::ErrorKind::PermissionDenied).exit_code(),
            exit_code::ENVIRONMENT
        );
        assert_eq!(
            read_error(std::io::ErrorKind::NotFound).exit_code(),
            exit_code::USAGE
        );
        assert_eq!(
            ExpectedError::NoVariantMatches("x".into()).exit_code(),
            exit_code::USAGE
        );
        let other: ExpectedError = anyhow::anyhow!("disk full").into();
        assert_eq!(other.exit_code(), exit_code::ENVIRONMENT);
    }

    #[test]
    fn the_report_lists_the_causes_like_anyhow() {
        let e = read_error(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            e.report(),
            "cannot read run record r/run.json: permission denied"
        );
        let chained = anyhow::anyhow!("inner").context("outer");
        let expected = format!("{chained:#}");
        assert_eq!(ExpectedError::from(chained).report(), expected);
    }
}
