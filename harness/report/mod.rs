//! Presentation of run records.
pub mod terminal;
