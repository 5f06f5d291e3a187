//! Runs a set of pipelines in one process: a failing pipeline is reported and stops,
//! the others keep running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::PipelinePlan;
use crate::engine::{self, PipelineError};
use crate::metrics::Metrics;

/// How each pipeline ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub finished: Vec<String>,
    pub failed: Vec<(String, PipelineError)>,
}

pub async fn run(
    plans: Vec<PipelinePlan>,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
) -> Outcome {
    let mut set = JoinSet::new();
    for plan in plans {
        let name = plan.name.clone();
        tracing::info!(pipeline = %name, file = %plan.file.display(), "starting pipeline");
        let (metrics, stop) = (metrics.clone(), stop.clone());
        set.spawn(async move { (name, engine::run(plan, metrics, stop).await) });
    }
    ready.store(true, Ordering::Relaxed);
    let mut outcome = Outcome::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Ok(()))) => {
                tracing::info!(pipeline = %name, "pipeline finished");
                outcome.finished.push(name);
            }
            Ok((name, Err(e))) => {
                tracing::error!(pipeline = %name, component = %e.component, error = %e.message, "pipeline failed");
                outcome.failed.push((name, e));
            }
            Err(e) => outcome.failed.push((
                "?".into(),
                PipelineError::new("runtime", format!("pipeline task ended abnormally: {e}")),
            )),
        }
    }
    outcome
}
