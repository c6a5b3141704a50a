//! claimbench: runs documented GPU pipeline configurations as scenarios, records time and peak
//! memory per sample, and judges performance claims and regressions.
//!
//! The modules follow the data: manifest → plan → runner/worker → measure → store → stats →
//! verdict → report.

pub mod claim;
pub mod cli;
pub mod exit_code;
pub mod ffi;
pub mod knobs;
pub mod manifest;
pub mod measure;
pub mod models;
pub mod plan;
pub mod report;
pub mod runner;
pub mod stats;
pub mod store;
pub mod text;
pub mod verdict;
pub mod worker;
pub mod workloads;
