//! The stream–table join's state: the right input as the latest record per key,
//! optionally forgotten `retention` after its last update (wall clock), which bounds it.
//!
//! Rows live in keyed state (the pipeline's state store), so the table may hold more
//! keys than memory and a checkpoint writes only the rows updated since the last:
//! - `r` + encoded key → updated (8 bytes) + sequence (8 bytes) + the record as JSON;
//! - with `retention`, `i` + updated + sequence → the row's key: an index by time, so
//!   expiry reads only what expires.

use connectd_sdk::state::{Entries, KeyedState, MemoryState};
use connectd_sdk::{ordered, record_codec, ConnectorError, Emitter, Record};
use serde::{Deserialize, Serialize};

use super::Spec;
use crate::window::GroupKey;

const ROW: u8 = b'r';
const INDEX: u8 = b'i';
/// Index entries expired per pass over the index.
const EXPIRE_CHUNK: usize = 4096;

#[derive(Debug)]
pub struct Table {
    state: Box<dyn KeyedState>,
    seq: u64,
    /// The oldest `updated` in the index (i64::MIN: unknown), so a tick with nothing
    /// to expire reads nothing.
    earliest: i64,
    /// Index keys below this were deleted by earlier expiries (empty: unknown). A scan
    /// starts here: from the index's start it would read their deletions each time,
    /// until the store compacts them away.
    expired_to: Vec<u8>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            state: Box::new(MemoryState::default()),
            seq: 0,
            earliest: i64::MIN,
            expired_to: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct TableSnapshot {
    #[serde(default)]
    seq: u64,
    /// The rows themselves when state lives in memory (no state store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<Entries>,
    /// Checkpoints from before the state store: every row.
    #[serde(default, with = "crate::window::pairs", skip_serializing)]
    rows: Vec<(GroupKey, LegacyRow)>,
}

#[derive(Serialize, Deserialize)]
pub struct LegacyRow {
    record: Record,
    updated: i64,
}

fn row_key(key: &GroupKey) -> Vec<u8> {
    let mut k = vec![ROW];
    ordered::encode_all(&key.0, &mut k);
    k
}

fn index_key(updated: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(INDEX);
    k.extend_from_slice(&ordered::i64_key(updated));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!(
        "join: a table row in the state store cannot be read ({e}); reset the pipeline's state"
    ))
}

impl Table {
    pub fn attach(&mut self, state: Box<dyn KeyedState>) {
        self.state = state;
        self.earliest = i64::MIN;
        self.expired_to.clear();
    }

    pub fn add(
        &mut self,
        spec: &Spec,
        side: usize,
        key: GroupKey,
        r: Record,
        retention: Option<i64>,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        let rk = row_key(&key);
        if side == 1 {
            return self.update(rk, &r, retention);
        }
        match self.state.get(&rk)? {
            Some(bytes) if bytes.len() >= 16 => {
                let right = record_codec::decode_stored(&bytes[16..]).map_err(corrupt)?;
                out.emit(spec.combine(&r, Some(&right)));
            }
            Some(_) => return Err(corrupt("a row shorter than its header")),
            None if spec.left_outer => out.emit(spec.combine(&r, None)),
            None => {}
        }
        Ok(())
    }

    fn update(
        &mut self,
        rk: Vec<u8>,
        r: &Record,
        retention: Option<i64>,
    ) -> Result<(), ConnectorError> {
        let updated = connectd_sdk::time::now_ms();
        self.seq += 1;
        if retention.is_some() {
            // The row's previous index entry goes; the new one says when it expires.
            if let Some(old) = self.state.get(&rk)? {
                if old.len() < 16 {
                    return Err(corrupt("a row shorter than its header"));
                }
                let old_seq = u64::from_be_bytes(old[8..16].try_into().map_err(corrupt)?);
                let old_updated =
                    ordered::i64_from_key(&old).ok_or_else(|| corrupt("a short row"))?;
                self.state.delete(&index_key(old_updated, old_seq));
            }
            let ik = index_key(updated, self.seq);
            if ik < self.expired_to {
                // The clock went back: this entry is where expiry no longer looks.
                self.expired_to.clear();
            }
            self.state.put(&ik, &rk);
            if self.earliest != i64::MIN {
                self.earliest = self.earliest.min(updated);
            }
        }
        let mut value = Vec::with_capacity(128);
        value.extend_from_slice(&ordered::i64_key(updated));
        value.extend_from_slice(&self.seq.to_be_bytes());
        record_codec::encode(r, &mut value);
        self.state.put(&rk, &value);
        Ok(())
    }

    /// Forgets the rows not updated within `retention` ms of `now`: reads the index
    /// up to `now − retention`, never every row.
    pub fn expire(&mut self, now: i64, retention: i64) -> Result<(), ConnectorError> {
        let cutoff = now.saturating_sub(retention);
        if self.earliest != i64::MIN && self.earliest > cutoff {
            return Ok(());
        }
        let upper = index_key(cutoff.saturating_add(1), 0);
        let start = if self.expired_to.is_empty() {
            vec![INDEX]
        } else {
            self.expired_to.clone()
        };
        let mut from = start.clone();
        while from < upper {
            let entries = self.state.range(&from, &upper, EXPIRE_CHUNK)?;
            let done = entries.len() < EXPIRE_CHUNK;
            for (ik, rk) in &entries {
                self.state.delete(ik);
                self.state.delete(rk);
            }
            if done {
                break;
            }
            if let Some((last, _)) = entries.last() {
                from = last.clone();
                from.push(0);
            }
        }
        self.expired_to = upper.max(start);
        // What is left starts after the cutoff; its exact time is read next time.
        self.earliest = match self.state.range(&self.expired_to, &[INDEX + 1], 1)?.first() {
            Some((k, _)) => ordered::i64_from_key(&k[1..]).unwrap_or(i64::MIN),
            _ => i64::MAX,
        };
        Ok(())
    }

    pub fn snapshot(&self) -> TableSnapshot {
        TableSnapshot {
            seq: self.seq,
            entries: self.state.export(),
            rows: Vec::new(),
        }
    }

    pub fn restore(
        &mut self,
        snap: TableSnapshot,
        retention: Option<i64>,
    ) -> Result<(), ConnectorError> {
        self.seq = snap.seq;
        self.earliest = i64::MIN;
        self.expired_to.clear();
        for (k, v) in snap.entries.into_iter().flatten() {
            self.state.put(&k, &v);
        }
        for (key, row) in snap.rows {
            self.seq += 1;
            let mut value = Vec::new();
            value.extend_from_slice(&ordered::i64_key(row.updated));
            value.extend_from_slice(&self.seq.to_be_bytes());
            record_codec::encode(&row.record, &mut value);
            let rk = row_key(&key);
            if retention.is_some() {
                self.state.put(&index_key(row.updated, self.seq), &rk);
            }
            self.state.put(&rk, &value);
        }
        Ok(())
    }
}
