//! Sinks, one module each.

#[cfg(feature = "avro")]
pub mod avro;
#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(any(feature = "mysql", feature = "cassandra"))]
pub mod columns;
pub mod committed_file;
#[cfg(feature = "cassandra")]
pub mod cql_value;
pub mod csv;
pub mod jsonl;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "mysql")]
pub mod mysql_packet;
pub mod stdout;
#[cfg(any(feature = "mysql", feature = "cassandra"))]
pub mod time_columns;
