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

/// The id kept in `state_dir`, made (and stored durably) on first use.
pub fn instance_id(state_dir: &Path) -> Result<String, String> {
    let path = state_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!(
                    "{} holds `{id}`, not an instance id: remove it to make a new one (Kafka sinks then start a new transactional id)",
                    path.display()
                ));
            }
            Ok(id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = random_id();
            store(state_dir, &path, &id)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(id)
        }
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

/// Written to a temporary file, synced, then renamed: never seen half-written.
fn store(dir: &Path, path: &Path, id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
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
}
