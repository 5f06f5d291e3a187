//! Barrier alignment across a component's inputs: after barrier n arrives on an input,
//! that input's further messages are held back until barrier n has arrived on every
//! input; then the barrier is handed on and the held messages are replayed in order.

use std::collections::VecDeque;

use connectd_sdk::Batch;
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
}

impl Aligner {
    pub fn new(rx: Receiver<Envelope>, inputs: usize) -> Self {
        Self {
            rx,
            blocked: vec![false; inputs.max(1)],
            arrived: 0,
            held: VecDeque::new(),
            replay: VecDeque::new(),
        }
    }

    /// The next event. Cancel-safe: a message taken from the channel is never lost.
    pub async fn next(&mut self) -> Event {
        loop {
            let env = match self.replay.pop_front() {
                Some(e) => e,
                None => match self.rx.recv().await {
                    Some(e) => e,
                    None => return Event::Closed,
                },
            };
            if self.blocked.get(env.input).copied().unwrap_or(false) {
                self.held.push_back(env);
                continue;
            }
            match env.message {
                Message::Data(batch) => return Event::Data(env.input, batch),
                Message::Lanes(set) => return Event::Lanes(set),
                Message::Barrier(b) => {
                    if let Some(slot) = self.blocked.get_mut(env.input) {
                        *slot = true;
                    }
                    self.arrived += 1;
                    if self.arrived == self.blocked.len() {
                        self.arrived = 0;
                        self.blocked.iter_mut().for_each(|b| *b = false);
                        let rest = std::mem::take(&mut self.replay);
                        self.replay = self.held.drain(..).chain(rest).collect();
                        return Event::Aligned(b);
                    }
                }
            }
        }
    }

    /// True when messages are waiting to be replayed (no need to wait on the channel).
    pub fn has_buffered(&self) -> bool {
        !self.replay.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
}
