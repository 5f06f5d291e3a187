//! The connectd worker: config loading, the pipeline engine, metrics, admin server.

pub mod admin;
pub mod admin_client;
pub mod admin_connect;
pub mod admin_guard;
pub mod admin_loggers;
pub mod admin_pipelines;
pub mod admin_tap;
pub mod admin_tls;
pub mod admin_validate;
pub mod component_docs;
pub mod config;
pub mod config_watch;
pub mod engine;
pub mod live;
pub mod log_levels;
pub mod metrics;
pub mod pipeline_test;
pub mod plugin_new;
pub mod plugin_test;
pub mod status_cli;
pub mod tap;
pub mod tap_cli;
pub mod top_cli;
pub mod worker;

use connectd_sdk::Registry;

/// Every built-in connector and transform.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    connectd_connectors::register(&mut r);
    connectd_transforms::register(&mut r);
    r
}
