//! Verdicts on measured changes: turning statistics into "regression", "improvement",
//! "unchanged" or "inconclusive" for a report or a CI gate, and claims into "confirmed",
//! "refuted", "inconclusive" or "not applicable". The functions are pure; the
//! statistics they rest on live in [`crate::stats`].

pub mod claims;
pub mod gate;
pub mod regression;
#[cfg(test)]
pub mod simulation;
