//! What flows on the channels between components.

use connectd_sdk::Batch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierKind {
    /// Take a checkpoint and go on.
    Checkpoint,
    /// Shutdown: take a final checkpoint and stop (open windows stay open, in state).
    Stop,
    /// Every source is exhausted: flush everything, take a final checkpoint, stop.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    pub id: u64,
    pub kind: BarrierKind,
}

/// The lanes (partitions) an origin has now: see `connectd_sdk::lanes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneSet {
    pub origin: u32,
    pub lanes: std::sync::Arc<Vec<u64>>,
}

#[derive(Clone, Debug)]
pub enum Message {
    Data(Batch),
    Barrier(Barrier),
    Lanes(LaneSet),
}

/// A message tagged with the receiver's input number.
#[derive(Debug)]
pub struct Envelope {
    pub input: usize,
    pub message: Message,
}

/// A downstream edge: the receiver's channel and our input number there.
#[derive(Clone, Debug)]
pub struct Output {
    pub to: String,
    pub sender: tokio::sync::mpsc::Sender<Envelope>,
    pub input: usize,
}

/// How a send to a component that has ended reads: a knock-on of that component's own
/// failure, which the pipeline reports instead when it has one.
pub const STOPPED_RECEIVING: &str = "stopped receiving";

/// Sends a message to every downstream component.
pub async fn broadcast(outputs: &[Output], message: Message) -> Result<(), String> {
    for out in outputs {
        out.sender
            .send(Envelope {
                input: out.input,
                message: message.clone(),
            })
            .await
            .map_err(|_| format!("`{}` {STOPPED_RECEIVING}", out.to))?;
    }
    Ok(())
}
