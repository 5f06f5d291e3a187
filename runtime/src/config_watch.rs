//! Hot reload triggers: a change in a folder holding pipeline files (so added and
//! removed files count too), and SIGHUP. Either asks the worker to re-read the files;
//! the worker compares their contents, so an event that changed nothing costs a read.
//! Only events on names the patterns can match count: a sink writing its output next
//! to the pipeline files would otherwise have every file re-read at each of its writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};

use crate::worker::WorkerHandle;

/// Watches the folders of the `--config` patterns; keep the watcher alive to keep
/// watching.
pub fn watch(
    patterns: &[String],
    worker: WorkerHandle,
) -> Result<notify::RecommendedWatcher, String> {
    let names = name_patterns(patterns);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access() && concerns(&e.paths, &names)) {
            worker.reload();
        }
    })
    .map_err(|e| format!("cannot watch the pipeline files: {e}"))?;
    let folders: BTreeSet<PathBuf> = patterns.iter().map(|p| folder_of(p)).collect();
    for folder in folders {
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", folder.display()))?;
    }
    Ok(watcher)
}

/// The file-name part of each pattern (`pipelines/*.yaml` → `*.yaml`): the folders
/// are watched one level deep, so an event's file name says whether it concerns them.
fn name_patterns(patterns: &[String]) -> Vec<glob::Pattern> {
    patterns
        .iter()
        .filter_map(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            glob::Pattern::new(name).ok()
        })
        .collect()
}

/// Whether an event on `paths` may have changed a pipeline file (no path: the watcher
/// lost track, so assume it did).
fn concerns(paths: &[PathBuf], names: &[glob::Pattern]) -> bool {
    paths.is_empty()
        || paths.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| names.iter().any(|m| m.matches(n)))
        })
}

/// The folder a file or glob lives in: the part before the first wildcard, up to its
/// last `/`.
fn folder_of(pattern: &str) -> PathBuf {
    let fixed = pattern
        .find(['*', '?', '['])
        .map_or(pattern, |i| &pattern[..i]);
    let folder = if fixed.len() < pattern.len() {
        fixed.rfind('/').map_or("", |i| &fixed[..i])
    } else {
        Path::new(fixed)
            .parent()
            .and_then(Path::to_str)
            .unwrap_or("")
    };
    if folder.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(folder)
    }
}

/// Asks for a reload on every SIGHUP.
pub fn on_sighup(worker: WorkerHandle) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload by editing the files instead");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading the pipeline files");
            worker.reload();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{concerns, folder_of, name_patterns};
    use std::path::PathBuf;

    #[test]
    fn only_events_on_names_the_patterns_match_ask_for_a_reload() {
        let names = name_patterns(&["pipelines/*.yaml".into(), "extra/p.yml".into()]);
        let on = |p: &str| concerns(&[PathBuf::from(p)], &names);
        assert!(on("pipelines/iot.yaml"));
        assert!(on("/abs/extra/p.yml"));
        // An editor's rename onto the file carries both names.
        assert!(concerns(
            &[
                PathBuf::from("pipelines/.iot.yaml.swp"),
                PathBuf::from("pipelines/iot.yaml")
            ],
            &names
        ));
        // A sink's output next to the pipelines, an editor's swap file.
        assert!(!on("pipelines/out.csv"));
        assert!(!on("pipelines/.iot.yaml.swp"));
        assert!(!on("extra/q.yml"));
        assert!(concerns(&[], &names));
    }

    #[test]
    fn the_folder_of_files_and_globs() {
        assert_eq!(folder_of("pipelines/*.yaml"), PathBuf::from("pipelines"));
        assert_eq!(folder_of("a/b/p?.yaml"), PathBuf::from("a/b"));
        assert_eq!(folder_of("*.yaml"), PathBuf::from("."));
        assert_eq!(folder_of("p.yaml"), PathBuf::from("."));
        assert_eq!(
            folder_of("/etc/connectd/p.yaml"),
            PathBuf::from("/etc/connectd")
        );
    }
}
