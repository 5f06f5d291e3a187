//! Sinks, one module each.

pub mod committed_file;
pub mod csv;
pub mod jsonl;
pub mod stdout;
