//! Paths written in pipeline files.

use connectd_sdk::config::ConfigMap;

/// A relative path is taken from the folder of the file the config was written in, so
/// schemas ship beside their pipelines.
pub fn beside_config(cfg: &ConfigMap<'_>, path: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(path);
    match std::path::Path::new(&*cfg.span().file).parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}
