//! Sources, one module each.

#[cfg(feature = "alpaca")]
pub mod alpaca;
#[cfg(feature = "avro")]
pub mod avro_file;
pub mod backoff;
pub mod file;
mod file_identity;
pub mod generator;
#[cfg(feature = "http-sources")]
pub mod goapi;
#[cfg(feature = "http-sources")]
pub mod http;
pub mod iot;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod trades;
#[cfg(feature = "http-sources")]
pub mod yahoo;
