//! What can go wrong reading or writing the results folder. The store says what happened;
//! the command line decides what it means for the exit code (`cli::ExpectedError`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record file (`run.json`, a baseline) could not be read.
    #[error("cannot read {what} {}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `samples.csv` could not be opened.
    #[error("cannot read {}", path.display())]
    OpenSamples {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `samples.csv` was read but a row or column does not parse.
    #[error(transparent)]
    Samples(anyhow::Error),
    #[error("{} is not valid JSON", path.display())]
    InvalidJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Written by a claimbench with another major format version.
    #[error("{}: {what} format version {found} is not readable by this claimbench (reads {reads}); use the claimbench version that wrote it", path.display())]
    Version {
        what: &'static str,
        path: PathBuf,
        found: String,
        reads: &'static str,
    },
    #[error("{}: unexpected {what} layout", path.display())]
    Layout {
        what: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    /// `latest` found no run folder.
    #[error("no run found under {}", runs.display())]
    NoRun { runs: PathBuf },
    /// `baseline save` would replace a stored baseline.
    #[error("{} exists; use `claimbench baseline accept` to replace it", path.display())]
    BaselineExists { path: PathBuf },
    /// A stored file of another suite (or variant) lies where this one's would go: file
    /// names keep letters and digits only, so `nap.x`, `nap_x` and `nap-x` share them.
    #[error("{} holds the {what} of {kind} `{stored}`, and {kind} `{wanted}` maps to the same file name (names that differ only in `.`, `_` or `-` share files); rename one of the two, or move that file away", path.display())]
    NameTaken {
        what: &'static str,
        kind: &'static str,
        path: PathBuf,
        stored: String,
        wanted: String,
    },
    /// Writing failed (folder creation, a temporary file, the rename).
    #[error(transparent)]
    Write(anyhow::Error),
}

impl StoreError {
    /// Whether the error is a failure of the machine (I/O other than a missing file) rather
    /// than a problem with what was asked for or with a file's contents.
    pub fn is_io_failure(&self) -> bool {
        match self {
            StoreError::Read { source, .. } | StoreError::OpenSamples { source, .. } => {
                source.kind() != std::io::ErrorKind::NotFound
            }
            StoreError::Write(_) => true,
            StoreError::Samples(_)
            | StoreError::InvalidJson { .. }
            | StoreError::Version { .. }
            | StoreError::Layout { .. }
            | StoreError::NoRun { .. }
            | StoreError::BaselineExists { .. }
            | StoreError::NameTaken { .. } => false,
        }
    }
}
