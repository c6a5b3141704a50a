//! `claimbench check`: validates manifests and prints each expanded plan.

use super::args::ProfileArgs;
use super::Outcome;
use crate::exit_code;
use crate::manifest::{self, Manifest};
use crate::text::printable;
use std::path::PathBuf;

/// Checks every manifest (errors are printed as they come, so one run shows them all); exit 2
/// if any failed.
pub fn check(paths: &[PathBuf], profile: &ProfileArgs) -> Outcome {
    let mut failed = false;
    for path in paths {
        // Without a profile, show what a GPU box would run.
        let planned = match Manifest::from_path(path) {
            Ok(m) => manifest::build_plan(&m, profile.choice(true)),
            Err(e) => Err(e),
        };
        match planned {
            Ok(plan) => println!("{}", printable(&manifest::describe_plan(&plan))),
            Err(e) => {
                eprintln!("error: {}", printable(&e.to_string()));
                failed = true;
            }
        }
    }
    Ok(if failed {
        exit_code::USAGE
    } else {
        exit_code::OK
    })
}
