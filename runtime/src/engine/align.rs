//! Barrier alignment across a component's inputs: after barrier n arrives on an input,
//! that input's further messages are held back until barrier n has arrived on every
//! input; then the barrier is handed on and the held messages are replayed in order.

use std::collections::VecDeque;
use std::sync::Arc;

use connectd_sdk::Batch;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::Receiver;

use super::messages::{Barrier, Envelope, LaneSet, Message};

#[derive(Debug)]
pub enum Event {
    Data(usize, Batch),
    /// An origin upstream of this input has these lanes now.
    Lanes(LaneSet),
    /// Barrier n has arrived on all inputs.
    Aligned(Barrier),
    /// Every upstream sender is gone (only after a failure elsewhere).
    Closed,
}

#[derive(Debug)]
pub struct Aligner {
    rx: Receiver<Envelope>,
    blocked: Vec<bool>,
    arrived: usize,
    held: VecDeque<Envelope>,
    replay: VecDeque<Envelope>,
    /// An event [`Aligner::join_ready`] took but could not join: the next one out.
    pending: Option<Event>,
}

impl Aligner {
    pub fn new(rx: Receiver<Envelope>, inputs: usize) -> Self {
        Self {
            rx,
            blocked: vec![false; inputs.max(1)],
            arrived: 0,
            held: VecDeque::new(),
            replay: VecDeque::new(),
            pending: None,
        }
    }

    /// The next event. Cancel-safe: a message taken from the channel is never lost.
    pub async fn next(&mut self) -> Event {
        if let Some(event) = self.pending.take() {
            return event;
        }
        loop {
            let env = match self.replay.pop_front() {
                Some(e) => e,
                None => match self.rx.recv().await {
                    Some(e) => e,
                    None => return Event::Closed,
                },
            };
            if let Some(event) = self.take(env) {
                return event;
            }
        }
    }

    /// The next event if one is ready now, without waiting on the channel.
    pub fn try_next(&mut self) -> Option<Event> {
        if let Some(event) = self.pending.take() {
            return Some(event);
        }
        loop {
            let env = match self.replay.pop_front() {
                Some(e) => e,
                None => match self.rx.try_recv() {
                    Ok(e) => e,
                    Err(TryRecvError::Empty) => return None,
                    Err(TryRecvError::Disconnected) => return Some(Event::Closed),
                },
            };
            if let Some(event) = self.take(env) {
                return Some(event);
            }
        }
    }

    /// Appends the data batches already waiting to `batch`, up to `limit` records.
    /// Batches another component also holds are not joined (that would copy their
    /// records); the first event that cannot join comes out of the next call.
    pub fn join_ready(&mut self, mut batch: Batch, limit: usize) -> Batch {
        while batch.len() < limit {
            let Some(records) = Arc::get_mut(&mut batch) else {
                break;
            };
            match self.try_next() {
                Some(Event::Data(input, more)) => match Arc::try_unwrap(more) {
                    Ok(more) => records.extend(more),
                    Err(shared) => {
                        self.pending = Some(Event::Data(input, shared));
                        break;
                    }
                },
                other => {
                    self.pending = other;
                    break;
                }
            }
        }
        batch
    }

    /// One message in: the event it makes, or `None` when it is held back or is a
    /// barrier still waiting for other inputs.
    fn take(&mut self, env: Envelope) -> Option<Event> {
        if self.blocked.get(env.input).copied().unwrap_or(false) {
            self.held.push_back(env);
            return None;
        }
        match env.message {
            Message::Data(batch) => Some(Event::Data(env.input, batch)),
            Message::Lanes(set) => Some(Event::Lanes(set)),
            Message::Barrier(b) => {
                if let Some(slot) = self.blocked.get_mut(env.input) {
                    *slot = true;
                }
                self.arrived += 1;
                if self.arrived < self.blocked.len() {
                    return None;
                }
                self.arrived = 0;
                self.blocked.iter_mut().for_each(|b| *b = false);
                let rest = std::mem::take(&mut self.replay);
                self.replay = self.held.drain(..).chain(rest).collect();
                Some(Event::Aligned(b))
            }
        }
    }

    /// True when messages are waiting to be replayed (no need to wait on the channel).
    pub fn has_buffered(&self) -> bool {
        self.pending.is_some() || !self.replay.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::messages::BarrierKind;
    use super::*;

    fn data(input: usize, n: usize) -> Envelope {
        Envelope {
            input,
            message: Message::Data(Arc::new(vec![Default::default(); n])),
        }
    }
    fn barrier(input: usize, id: u64) -> Envelope {
        Envelope {
            input,
            message: Message::Barrier(Barrier {
                id,
                kind: BarrierKind::Checkpoint,
            }),
        }
    }

    #[tokio::test]
    async fn holds_data_behind_a_barrier_until_all_inputs_align() {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        for e in [
            data(0, 1),
            barrier(0, 1),
            data(0, 2),
            data(1, 3),
            barrier(1, 1),
            data(1, 4),
        ] {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        let mut a = Aligner::new(rx, 2);
        let mut seen = Vec::new();
        loop {
            match a.next().await {
                Event::Data(i, b) => seen.push(format!("d{i}:{}", b.len())),
                Event::Aligned(b) => seen.push(format!("b{}", b.id)),
                Event::Lanes(_) => {}
                Event::Closed => break,
            }
        }
        // Input 0's second batch (2 records) waits for the barrier on input 1.
        assert_eq!(seen, ["d0:1", "d1:3", "b1", "d0:2", "d1:4"]);
    }

    #[tokio::test]
    async fn try_next_takes_only_what_is_ready_and_keeps_alignment() {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut a = Aligner::new(rx, 2);
        assert!(a.try_next().is_none(), "nothing sent yet");
        for e in [barrier(0, 7), data(0, 2), data(1, 3)] {
            tx.send(e).await.unwrap();
        }
        // Input 0 is blocked behind its barrier: its data is held, input 1's passes.
        assert!(matches!(a.try_next(), Some(Event::Data(1, b)) if b.len() == 3));
        assert!(
            a.try_next().is_none(),
            "held data must not pass before alignment"
        );
        tx.send(barrier(1, 7)).await.unwrap();
        assert!(matches!(a.try_next(), Some(Event::Aligned(b)) if b.id == 7));
        assert!(matches!(a.try_next(), Some(Event::Data(0, b)) if b.len() == 2));
        drop(tx);
        assert!(matches!(a.try_next(), Some(Event::Closed)));
    }

    #[tokio::test]
    async fn join_ready_joins_owned_waiting_batches_and_stops_at_a_barrier() {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let shared: Batch = Arc::new(vec![Default::default(); 5]);
        let kept = shared.clone();
        for e in [data(0, 2), data(0, 3), barrier(0, 1), data(0, 4)] {
            tx.send(e).await.unwrap();
        }
        let mut a = Aligner::new(rx, 1);
        let first = match a.next().await {
            Event::Data(_, b) => b,
            other => panic!("expected data, got {other:?}"),
        };
        let joined = a.join_ready(first, 100);
        assert_eq!(joined.len(), 5, "2 + 3 joined; the barrier stops the join");
        assert!(a.has_buffered());
        assert!(matches!(a.next().await, Event::Aligned(b) if b.id == 1));

        // The limit caps a join; a batch someone else holds is passed on, not copied.
        let after = match a.next().await {
            Event::Data(_, b) => b,
            other => panic!("expected data, got {other:?}"),
        };
        tx.send(data(0, 1)).await.unwrap();
        let capped = a.join_ready(after, 4);
        assert_eq!(capped.len(), 4);
        assert!(!a.has_buffered());
        tx.send(Envelope {
            input: 0,
            message: Message::Data(shared),
        })
        .await
        .unwrap();
        let alone = a.join_ready(Arc::new(vec![Default::default(); 1]), 100);
        assert_eq!(alone.len(), 2, "the waiting owned batch of 1 joins");
        assert!(matches!(a.try_next(), Some(Event::Data(0, b)) if Arc::ptr_eq(&b, &kept)));
        drop(kept);
    }
}
