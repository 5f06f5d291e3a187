//! connectd sources and sinks. `register` has one line per connector.

#[cfg(feature = "avro")]
pub mod avro;
pub mod config_paths;
pub mod json_schema;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod sinks;
pub mod sources;

use connectd_sdk::Registry;

pub fn register(registry: &mut Registry) {
    registry.source("iot", sources::iot::build);
    registry.source("trades", sources::trades::build);
    registry.source("file", sources::file::build);
    #[cfg(feature = "kafka")]
    registry.source("kafka", sources::kafka::build);
    #[cfg(feature = "alpaca")]
    registry.source("alpaca", sources::alpaca::build);
    #[cfg(feature = "http-sources")]
    registry.source("yahoo", sources::yahoo::build);
    #[cfg(feature = "http-sources")]
    registry.source("goapi", sources::goapi::build);
    registry.sink("csv", sinks::csv::build);
    registry.sink("jsonl", sinks::jsonl::build);
    #[cfg(feature = "mysql")]
    registry.sink("mysql", sinks::mysql::build);
    #[cfg(feature = "cassandra")]
    registry.sink("cassandra", sinks::cassandra::build);
    #[cfg(feature = "mongodb")]
    registry.sink("mongodb", sinks::mongodb::build);
    registry.sink("stdout", sinks::stdout::build);
    #[cfg(feature = "avro")]
    registry.sink("avro", sinks::avro::build);
    #[cfg(feature = "kafka")]
    registry.sink("kafka", sinks::kafka::build);
}
