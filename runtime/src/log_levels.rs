//! Log levels changed at runtime: Kafka Connect's `GET /admin/loggers` and
//! `PUT /admin/loggers/{logger}`. A logger is a `tracing` target (a module path such as
//! `connectd_connectors::kafka`, which covers the modules under it) or `root`, the
//! level of everything else. The filter the worker started with (`RUST_LOG`, else
//! `info` with the state store's libraries at `warn`) is the base; each change rebuilds the filter from it and the levels set.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Swaps the worker's active filter (a `tracing_subscriber::reload` handle).
pub type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

pub struct LogLevels {
    base: String,
    set: Mutex<BTreeMap<String, String>>,
    reload: Reload,
}

impl std::fmt::Debug for LogLevels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevels")
            .field("base", &self.base)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LevelError {
    #[error("unknown level `{0}`: use one of TRACE, DEBUG, INFO, WARN, ERROR, OFF")]
    Level(String),
    #[error(
        "`{0}` is not a logger name: a module path such as connectd_connectors::kafka, or root"
    )]
    Logger(String),
    #[error("cannot change the log filter: {0}")]
    Reload(String),
}

/// `tracing`'s name for a Kafka Connect (log4j) level.
fn level(name: &str) -> Result<&'static str, LevelError> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "FATAL" => "error",
        "OFF" => "off",
        _ => return Err(LevelError::Level(name.to_string())),
    })
}

impl LogLevels {
    pub fn new(base: String, reload: Reload) -> Self {
        LogLevels {
            base,
            set: Mutex::new(BTreeMap::new()),
            reload,
        }
    }

    /// The filter directives: the base, then the levels set (a later directive for the
    /// same target wins; `root` replaces the base's default level).
    fn directives(base: &str, set: &BTreeMap<String, String>) -> String {
        let mut parts: Vec<String> = base
            .split(',')
            // A `root` level set replaces the base's default level (the directive
            // without a target).
            .filter(|d| !d.is_empty() && (!set.contains_key("root") || d.contains('=')))
            .map(str::to_string)
            .collect();
        for (logger, level) in set {
            parts.push(match logger.as_str() {
                "root" => level.clone(),
                _ => format!("{logger}={level}"),
            });
        }
        parts.join(",")
    }

    /// Sets `logger` to `level`; returns the loggers changed (Kafka Connect's answer).
    pub fn set(&self, logger: &str, level_name: &str) -> Result<Vec<String>, LevelError> {
        let level = level(level_name)?;
        let valid = logger == "root"
            || (!logger.is_empty()
                && logger.split("::").all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }));
        if !valid {
            return Err(LevelError::Logger(logger.to_string()));
        }
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = set.clone();
        next.insert(logger.to_string(), level.to_string());
        let filter = EnvFilter::try_new(Self::directives(&self.base, &next))
            .map_err(|e| LevelError::Reload(e.to_string()))?;
        (self.reload)(filter).map_err(LevelError::Reload)?;
        *set = next;
        tracing::info!(logger, level, "log level changed");
        Ok(vec![logger.to_string()])
    }

    /// Every logger with a level of its own, and `root`, with Kafka Connect's level names.
    pub fn levels(&self) -> BTreeMap<String, String> {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        let root = set.get("root").cloned().unwrap_or_else(|| {
            self.base
                .split(',')
                .find(|d| !d.contains('='))
                .unwrap_or("error")
                .to_string()
        });
        out.insert("root".to_string(), root.to_ascii_uppercase());
        for d in self.base.split(',').filter_map(|d| d.split_once('=')) {
            out.insert(d.0.to_string(), d.1.to_ascii_uppercase());
        }
        for (logger, level) in set.iter() {
            out.insert(logger.clone(), level.to_ascii_uppercase());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn levels(base: &str) -> (LogLevels, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let l = LogLevels::new(
            base.to_string(),
            Box::new(move |f| {
                record.lock().unwrap().push(f.to_string());
                Ok(())
            }),
        );
        (l, seen)
    }

    #[test]
    fn a_logger_gets_its_level_on_top_of_the_base() {
        let (l, seen) = levels("warn,hyper=error");
        assert_eq!(
            l.set("connectd_runtime::worker", "info").unwrap(),
            ["connectd_runtime::worker"]
        );
        let applied = seen.lock().unwrap().last().unwrap().clone();
        assert!(
            applied.contains("connectd_runtime::worker=info"),
            "{applied}"
        );
        assert!(
            applied.contains("hyper=error") && applied.contains("warn"),
            "{applied}"
        );
        let all = l.levels();
        assert_eq!(all["root"], "WARN");
        assert_eq!(all["hyper"], "ERROR");
        assert_eq!(all["connectd_runtime::worker"], "INFO");
        l.set("root", "DEBUG").unwrap();
        let applied = seen.lock().unwrap().last().unwrap().clone();
        assert!(
            !applied.split(',').any(|d| d == "warn"),
            "the base level is replaced: {applied}"
        );
        assert_eq!(l.levels()["root"], "DEBUG");
    }

    #[test]
    fn bad_levels_and_names_are_refused_and_change_nothing() {
        let (l, seen) = levels("info");
        assert_eq!(l.set("a", "LOUD"), Err(LevelError::Level("LOUD".into())));
        assert!(matches!(l.set("a b", "INFO"), Err(LevelError::Logger(_))));
        assert!(matches!(l.set("{x}", "INFO"), Err(LevelError::Logger(_))));
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(l.levels().len(), 1);
    }
}
