//! connectd sources and sinks. `register` has one line per connector.

#[cfg(feature = "avro")]
pub mod avro;
pub mod config_paths;
pub mod csv_delimiter;
pub mod json_schema;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod sinks;
pub mod sources;

use connectd_sdk::Registry;

pub fn register(registry: &mut Registry) {
    registry.source::<sources::iot::IotOptions>("iot", sources::iot::build);
    registry.source::<sources::trades::TradesOptions>("trades", sources::trades::build);
    registry.source::<sources::file::FileOptions>("file", sources::file::build);
    #[cfg(feature = "kafka")]
    registry.source::<sources::kafka::KafkaSourceOptions>("kafka", sources::kafka::build);
    #[cfg(feature = "alpaca")]
    registry.source::<sources::alpaca::AlpacaOptions>("alpaca", sources::alpaca::build);
    #[cfg(feature = "http-sources")]
    registry.source::<sources::yahoo::YahooOptions>("yahoo", sources::yahoo::build);
    #[cfg(feature = "http-sources")]
    registry.source::<sources::goapi::GoapiOptions>("goapi", sources::goapi::build);
    registry.sink::<sinks::csv::CsvOptions>("csv", sinks::csv::build);
    registry.sink::<sinks::jsonl::JsonlOptions>("jsonl", sinks::jsonl::build);
    #[cfg(feature = "mysql")]
    registry.sink::<sinks::mysql::MysqlOptions>("mysql", sinks::mysql::build);
    #[cfg(feature = "cassandra")]
    registry.sink::<sinks::cassandra::CassandraOptions>("cassandra", sinks::cassandra::build);
    #[cfg(feature = "mongodb")]
    registry.sink::<sinks::mongodb::MongoOptions>("mongodb", sinks::mongodb::build);
    registry.sink::<sinks::stdout::StdoutOptions>("stdout", sinks::stdout::build);
    #[cfg(feature = "avro")]
    registry.sink::<sinks::avro::AvroFileOptions>("avro", sinks::avro::build);
    #[cfg(feature = "kafka")]
    registry.sink::<sinks::kafka::KafkaSinkOptions>("kafka", sinks::kafka::build);
}
