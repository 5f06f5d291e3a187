//! Sinks, one module each.

pub mod committed_file;
pub mod csv;
pub mod jsonl;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod stdout;
