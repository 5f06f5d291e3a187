//! The pipeline log: the manifest of the last *complete* checkpoint, in
//! `<state dir>/<pipeline>/checkpoint.json`. Writing it is the commit point of a
//! checkpoint (two-phase commit): every sink has pre-committed that checkpoint before,
//! and commits it only after. Recovery restores exactly this checkpoint.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::PipelineState;
use super::PipelineError;

/// A complete checkpoint: its id and the pipeline's state at it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: u64,
    pub state: PipelineState,
}

#[derive(Debug, Clone)]
pub struct PipelineLog {
    path: PathBuf,
}

fn failed(path: &Path, what: &str, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::new("checkpoint", format!("{what} {}: {e}", path.display()))
}

impl PipelineLog {
    /// The log of the pipeline whose state lives in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("checkpoint.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last complete checkpoint; `None` before the first. A file that does not
    /// parse is an error naming it: the pipeline refuses to start rather than guess.
    pub fn latest(&self) -> Result<Option<Manifest>, PipelineError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                PipelineError::new(
                    "checkpoint",
                    format!(
                        "the checkpoint file {} is corrupt ({e}); restore it, or reset the pipeline (DELETE /connectors/<name>/offsets, or remove the pipeline's state directory) to start over",
                        self.path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(&self.path, "cannot read", e)),
        }
    }

    /// Makes `manifest` the last complete checkpoint, atomically and durably: a crash
    /// leaves either the previous manifest or this one.
    pub fn write(&self, manifest: &Manifest) -> Result<(), PipelineError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| failed(dir, "cannot create", e))?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(manifest)
            .map_err(|e| PipelineError::new("checkpoint", format!("cannot encode: {e}")))?;
        let mut f = File::create(&tmp).map_err(|e| failed(&tmp, "cannot create", e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| failed(&tmp, "cannot write", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| failed(&self.path, "cannot rename onto", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed(dir, "cannot fsync", e))
    }

    /// Forgets every checkpoint (offset reset): the next run starts from the beginning.
    pub fn remove(&self) -> Result<(), PipelineError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed(&self.path, "cannot remove", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn writes_reads_and_refuses_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = PipelineLog::new(dir.path());
        assert_eq!(log.latest().unwrap(), None);
        let m = Manifest {
            id: 7,
            state: PipelineState::default(),
        };
        log.write(&m).unwrap();
        assert_eq!(log.latest().unwrap(), Some(m));
        std::fs::write(log.path(), b"{\"id\": 7, \"sta").unwrap();
        let e = log.latest().unwrap_err().message;
        assert!(
            e.contains("corrupt") && e.contains("checkpoint.json"),
            "{e}"
        );
        log.remove().unwrap();
        assert_eq!(log.latest().unwrap(), None);
    }
}
