//! The instance id of a worker's state directory: part of the Kafka sink's
//! `transactional.id` and checkpoint key.
//!
//! Why not the worker's name (the host name by default): a recreated container gets a
//! new host name and would replay from the start, and two workers started from the
//! same worker file would fence each other. Like Kafka Streams' process id, the id is
//! random, made once, and kept in the state directory: the same directory (a restart,
//! a recreated container on the same volume) is the same instance; another directory
//! is another instance.

use std::io::Write;
use std::path::Path;

const FILE: &str = "instance-id";

/// The id kept in `state_dir`, made (and stored durably) on first use. Safe when
/// several sinks, or workers sharing the folder, ask at once: the first file to be
/// linked into place wins and everyone reads it.
pub fn instance_id(state_dir: &Path) -> Result<String, String> {
    // Sinks of one worker open concurrently.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    let path = state_dir.join(FILE);
    match read(&path)? {
        Some(id) => Ok(id),
        None => {
            store(state_dir, &path, &random_id())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            read(&path)?.ok_or_else(|| format!("{} vanished as it was made", path.display()))
        }
    }
}

fn read(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id = text.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!(
                    "{} holds `{id}`, not an instance id: remove it to make a new one (Kafka sinks then start a new transactional id)",
                    path.display()
                ));
            }
            Ok(Some(id.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// 64 random bits from the standard library's OS-seeded hasher keys (no extra crate
/// for one number).
fn random_id() -> String {
    use std::hash::BuildHasher;
    let seed = (std::time::SystemTime::now(), std::process::id());
    format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new().hash_one(seed)
    )
}

/// Written whole to a file of its own, synced, then hard-linked into place: the link
/// fails if another process made the file first, and nobody sees it half-written.
fn store(dir: &Path, path: &Path, id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.{}.{id}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => std::fs::File::open(dir)?.sync_all(),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept_and_garbage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = instance_id(dir.path()).unwrap();
        assert_eq!(instance_id(dir.path()).unwrap(), a);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(instance_id(other.path()).unwrap(), a);
        std::fs::write(dir.path().join(FILE), "../x y").unwrap();
        assert!(instance_id(dir.path())
            .unwrap_err()
            .contains("not an instance id"));
    }

    /// Two sinks of a worker open at once (the kafka test that found this had a
    /// pipeline with two): one id for both, no temporary file left.
    #[test]
    fn sinks_asking_at_once_all_get_the_one_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let ids: Vec<String> = std::thread::scope(|s| {
            let asks: Vec<_> = (0..8).map(|_| s.spawn(|| instance_id(&state))).collect();
            asks.into_iter()
                .map(|a| a.join().unwrap().unwrap())
                .collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        let left: Vec<_> = std::fs::read_dir(&state).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files left behind");
    }
}
