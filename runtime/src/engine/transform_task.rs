//! Drives one transform: aligned barriers, snapshots at each checkpoint, flush at end;
//! in a task of its own (`run`), or chained into its source's task (`source_task`).

use std::sync::Arc;

use connectd_sdk::{lanes, Emitter, Transform};

use super::align::{Aligner, Event};
use super::checkpoint::CheckpointStore;
use super::dlq::DeadLetters;
use super::messages::{broadcast, BarrierKind, LaneSet, Message, Output};
use super::state_table::Freezers;
use super::PipelineError;
use crate::metrics::ComponentMetrics;

pub struct TransformTask {
    pub name: String,
    pub transform: Box<dyn Transform>,
    /// Freeze the transform's keyed-state changes at each barrier (none when it keeps
    /// no keyed state in the store).
    pub freezers: Freezers,
    pub outputs: Vec<Output>,
    pub store: Arc<CheckpointStore>,
    pub dlq: Arc<DeadLetters>,
    pub metrics: ComponentMetrics,
    /// Window transforms: their output to the dashboard's chart.
    pub live: Option<crate::live::LiveTap>,
    /// The lane of its output when that is a new stream (see `Transform::keeps_lanes`).
    pub own_lane: Option<u64>,
    /// The origins of lanes upstream: each holds the watermark until it declares its
    /// lanes (see `engine::lanes`).
    pub expected_origins: Vec<u32>,
}

impl TransformTask {
    fn err(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::new(&self.name, message)
    }

    async fn flush(&mut self, out: &mut Emitter) -> Result<(), PipelineError> {
        if out.late_dropped > 0 {
            self.metrics.late.inc_by(out.late_dropped);
            out.late_dropped = 0;
        }
        if out.late_partition_behind > 0 {
            self.metrics
                .late_partition_behind
                .inc_by(out.late_partition_behind);
            out.late_partition_behind = 0;
        }
        if !out.bad.is_empty() {
            self.dlq
                .handle(&self.name, std::mem::take(&mut out.bad), &self.metrics)?;
        }
        if !out.records.is_empty() {
            if let Some(own) = self.own_lane {
                out.records.iter_mut().for_each(|r| r.lane = own);
            }
            let records = Arc::new(std::mem::take(&mut out.records));
            self.metrics.records_out.inc_by(records.len() as u64);
            if let Some(live) = &self.live {
                live.publish(&records);
            }
            self.metrics.tap.offer(&records);
            broadcast(&self.outputs, Message::Data(records))
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Passes on what the transform emitted, then whatever more it owes (see
    /// `Transform::resume`), part by part.
    async fn flush_all(&mut self, out: &mut Emitter) -> Result<(), PipelineError> {
        self.flush(out).await?;
        while self
            .transform
            .resume(out)
            .map_err(|e| self.err(e.to_string()))?
        {
            self.flush(out).await?;
        }
        self.flush(out).await
    }

    /// Before the first event: the lanes it waits for, and its own lane when its output
    /// is a new stream.
    pub async fn start(&mut self, out: &mut Emitter) -> Result<(), PipelineError> {
        for origin in std::mem::take(&mut self.expected_origins) {
            let pending = [lanes::global(origin, lanes::PENDING)];
            self.transform.on_lanes(origin, &pending, out);
        }
        self.flush_all(out).await?;
        if !self.transform.keeps_lanes() {
            // Its output is a new stream: one lane of its own, announced before any data.
            let origin = lanes::origin(&self.name);
            let own = lanes::global(origin, 0);
            self.own_lane = Some(own);
            let set = LaneSet {
                origin,
                lanes: Arc::new(vec![own]),
            };
            broadcast(&self.outputs, Message::Lanes(set))
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The wall-clock tick (see `Transform::tick_interval`).
    pub async fn tick(&mut self, out: &mut Emitter) -> Result<(), PipelineError> {
        self.transform
            .on_tick(connectd_sdk::time::now_ms(), out)
            .map_err(|e| self.err(e.to_string()))?;
        self.flush_all(out).await
    }

    /// One event in. Returns true when the transform is done (a final barrier passed,
    /// or its inputs are gone).
    pub async fn handle(&mut self, event: Event, out: &mut Emitter) -> Result<bool, PipelineError> {
        match event {
            Event::Data(input, batch) => {
                self.metrics.records_in.inc_by(batch.len() as u64);
                self.transform
                    .process(input, batch, out)
                    .map_err(|e| self.err(e.to_string()))?;
                self.flush_all(out).await?;
            }
            Event::Aligned(b) => {
                if b.kind == BarrierKind::End {
                    self.transform
                        .on_end(out)
                        .map_err(|e| self.err(e.to_string()))?;
                    self.flush_all(out).await?;
                }
                let snapshot = self
                    .transform
                    .snapshot()
                    .map_err(|e| self.err(e.to_string()))?;
                self.freezers.freeze(b.id);
                self.store.report_transform(b.id, &self.name, snapshot);
                broadcast(&self.outputs, Message::Barrier(b))
                    .await
                    .map_err(|e| self.err(e))?;
                return Ok(b.kind != BarrierKind::Checkpoint);
            }
            Event::Lanes(set) => {
                self.transform.on_lanes(set.origin, &set.lanes, out);
                self.flush_all(out).await?;
                if self.own_lane.is_none() {
                    broadcast(&self.outputs, Message::Lanes(set))
                        .await
                        .map_err(|e| self.err(e))?;
                }
            }
            Event::Closed => return Ok(true),
        }
        Ok(false)
    }

    /// Runs the transform in a task of its own, on what `aligner` hands it.
    pub async fn run(mut self, mut aligner: Aligner) -> Result<(), PipelineError> {
        let mut out = Emitter::default();
        self.start(&mut out).await?;
        let mut ticker = self.transform.tick_interval().map(tokio::time::interval);
        loop {
            let event = match ticker.as_mut() {
                Some(t) if !aligner.has_buffered() => tokio::select! {
                    e = aligner.next() => e,
                    _ = t.tick() => {
                        self.tick(&mut out).await?;
                        continue;
                    }
                },
                _ => aligner.next().await,
            };
            if self.handle(event, &mut out).await? {
                return Ok(());
            }
        }
    }
}
