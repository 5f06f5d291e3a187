//! `connectd test`: runs the `tests:` of pipeline files in-process. Each test replaces
//! every source with the records it gives (a source it does not name gives none) and
//! every sink with one that keeps what it receives, runs the pipeline's transforms
//! to the end of that input through the real engine (checkpoints, state store,
//! watermarks), then compares what each sink received with the expected records and
//! checks the conditions. No external service is touched.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use connectd_sdk::expr::Expr;
use connectd_sdk::{
    BadRecord, Checkpoint, Committed, ConnectorError, Record, Sink, Source, SourcePoll, Value,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{self, PipelinePlan};

/// One test of a pipeline (an entry of its `tests:`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineTest {
    /// What the test shows.
    pub name: String,
    /// Per source, the records it emits instead of reading (their values), in order.
    #[serde(default)]
    pub inputs: BTreeMap<String, Vec<serde_json::Value>>,
    /// Per sink, the records it must receive (their values), in order. A sink not
    /// named here is not compared.
    #[serde(default)]
    pub expect: BTreeMap<String, Vec<serde_json::Value>>,
    /// Per sink, expressions every record it receives must satisfy (`usage > 90`).
    #[serde(default)]
    pub conditions: BTreeMap<String, Vec<String>>,
}

/// The outcome of one test: `None` passed, else the report of what differed.
#[derive(Debug)]
pub struct Outcome {
    pub pipeline: String,
    pub test: String,
    pub failure: Option<String>,
}

/// Emits the records a test gives, then ends.
#[derive(Debug)]
struct GivenRecords {
    records: Vec<serde_json::Value>,
    next: usize,
}

#[async_trait]
impl Source for GivenRecords {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        self.next = offset
            .and_then(|o| o["next"].as_u64())
            .map_or(0, |n| n as usize);
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        _bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        let end = (self.next + max).min(self.records.len());
        if self.next >= end {
            return Ok(SourcePoll::End);
        }
        let batch = self.records[self.next..end]
            .iter()
            .map(|v| Record::new(Value::from_json(v)))
            .collect();
        self.next = end;
        Ok(SourcePoll::Batch(batch))
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::json!({ "next": self.next })
    }
}

/// Keeps the records of committed checkpoints.
#[derive(Debug, Default)]
struct Received {
    pending: Vec<Record>,
    committed: Arc<Mutex<Vec<Record>>>,
}

#[async_trait]
impl Sink for Received {
    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        self.pending.clear();
        Ok(None)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        self.pending.extend_from_slice(batch);
        Ok(())
    }

    async fn commit(&mut self, _checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        let mut all = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        all.append(&mut self.pending);
        Ok(())
    }
}

/// Numbers compare by value (an average written `95` in a test is `95.0` in a record).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A line diff of expected and received records: `  ` both, `- ` expected only,
/// `+ ` received only (records matched in order, as a longest common subsequence).
fn diff(expected: &[serde_json::Value], received: &[serde_json::Value]) -> String {
    let (n, m) = (expected.len(), received.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if same(&expected[i], &received[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && same(&expected[i], &received[j]) {
            out.push_str(&format!("      {}\n", received[j]));
            (i, j) = (i + 1, j + 1);
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("    + {}\n", received[j]));
            j += 1;
        } else {
            out.push_str(&format!("    - {}\n", expected[i]));
            i += 1;
        }
    }
    out
}

/// Runs one test on a freshly built plan of its pipeline.
async fn run_one(mut plan: PipelinePlan, test: &PipelineTest, state_dir: &Path) -> Option<String> {
    let mut problems = Vec::new();
    for name in test
        .inputs
        .keys()
        .filter(|n| !plan.sources.iter().any(|s| &s.name == *n))
    {
        problems.push(format!("  inputs: the pipeline has no source `{name}`\n"));
    }
    let sink_names: Vec<&str> = plan.sinks.iter().map(|s| s.name.as_str()).collect();
    for name in test.expect.keys().chain(test.conditions.keys()) {
        if !sink_names.contains(&name.as_str()) {
            problems.push(format!("  the pipeline has no sink `{name}`\n"));
        }
    }
    let mut conditions = BTreeMap::new();
    for (sink, exprs) in &test.conditions {
        for e in exprs {
            match Expr::parse(e) {
                Ok(x) => conditions
                    .entry(sink.clone())
                    .or_insert_with(Vec::new)
                    .push(x),
                Err(why) => problems.push(format!("  conditions.{sink}: `{e}`: {why}\n")),
            }
        }
    }
    if !problems.is_empty() {
        return Some(problems.concat());
    }
    for s in &mut plan.sources {
        s.component = Box::new(GivenRecords {
            records: test.inputs.get(&s.name).cloned().unwrap_or_default(),
            next: 0,
        });
    }
    let mut received = BTreeMap::new();
    for s in &mut plan.sinks {
        let kept = Arc::new(Mutex::new(Vec::new()));
        received.insert(s.name.clone(), kept.clone());
        s.component = Box::new(Received {
            pending: Vec::new(),
            committed: kept,
        });
    }
    plan.state_dir = state_dir.join(&plan.name);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ran = crate::engine::run(
        plan,
        crate::metrics::Metrics::new(),
        stop_rx,
        Arc::default(),
    )
    .await;
    if let Err(e) = ran {
        return Some(format!(
            "  the pipeline failed: {}: {}\n",
            e.component, e.message
        ));
    }
    let mut report = String::new();
    for (sink, kept) in &received {
        let records = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let values: Vec<serde_json::Value> = records.iter().map(|r| r.value.to_json()).collect();
        if let Some(expected) = test.expect.get(sink) {
            let equal = expected.len() == values.len()
                && expected.iter().zip(&values).all(|(a, b)| same(a, b));
            if !equal {
                report.push_str(&format!(
                    "  sink `{sink}`: {} records expected, {} received (- expected, + received):\n{}",
                    expected.len(),
                    values.len(),
                    diff(expected, &values)
                ));
            }
        }
        for cond in conditions.get(sink).into_iter().flatten() {
            for r in &records {
                match cond.test(r) {
                    Ok(true) => {}
                    Ok(false) => report.push_str(&format!(
                        "  sink `{sink}`: `{}` does not hold for {}\n",
                        cond.source(),
                        r.value.to_json()
                    )),
                    Err(e) => report.push_str(&format!(
                        "  sink `{sink}`: `{}` on {}: {e}\n",
                        cond.source(),
                        r.value.to_json()
                    )),
                }
            }
        }
    }
    (!report.is_empty()).then_some(report)
}

/// Runs every test of every pipeline in `files`. `Err`: the files do not load (every
/// problem, as `validate` prints them).
pub async fn run(
    files: &[std::path::PathBuf],
    registry: &connectd_sdk::Registry,
    worker: &connectd_sdk::WorkerSettings,
) -> Result<Vec<Outcome>, config::ConfigProblems> {
    let mut outcomes = Vec::new();
    let scratch = tempfile::tempdir().map_err(|e| {
        config::ConfigProblems(vec![connectd_sdk::config::ConfigError {
            span: Default::default(),
            field: String::new(),
            message: format!("cannot make a scratch state directory: {e}"),
        }])
    })?;
    let plans = config::load(files, registry, scratch.path(), worker)?;
    for (i, first) in plans.into_iter().enumerate() {
        for (j, test) in first.tests.iter().enumerate() {
            // Built again for each test: every test starts from nothing.
            let state_dir = scratch.path().join(format!("{i}-{j}"));
            let plan = first.spec.instantiate(registry, &state_dir, worker)?;
            let failure = run_one(plan, test, &state_dir).await;
            outcomes.push(Outcome {
                pipeline: first.name.clone(),
                test: test.name.clone(),
                failure,
            });
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_what_is_missing_and_what_is_extra() {
        let e = [serde_json::json!({"a": 1}), serde_json::json!({"a": 2})];
        let r = [serde_json::json!({"a": 1.0}), serde_json::json!({"a": 3})];
        let d = diff(&e, &r);
        assert_eq!(d, "      {\"a\":1.0}\n    + {\"a\":3}\n    - {\"a\":2}\n");
    }
}
