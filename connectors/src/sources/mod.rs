//! Sources, one module each.

pub mod file;
pub mod generator;
pub mod iot;
pub mod trades;
