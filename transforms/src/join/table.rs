//! The stream–table join's state: the right input as the latest record per key,
//! optionally forgotten `retention` after its last update (wall clock), which bounds it.

use std::collections::HashMap;

use connectd_sdk::{Emitter, Record};
use serde::{Deserialize, Serialize};

use super::Spec;
use crate::window::GroupKey;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Table {
    #[serde(with = "crate::window::pairs")]
    rows: HashMap<GroupKey, Row>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    record: Record,
    /// Wall-clock epoch ms of the last update.
    updated: i64,
}

impl Table {
    pub fn add(&mut self, spec: &Spec, side: usize, key: GroupKey, r: Record, out: &mut Emitter) {
        if side == 1 {
            let row = Row {
                record: r,
                updated: connectd_sdk::time::now_ms(),
            };
            self.rows.insert(key, row);
            return;
        }
        match self.rows.get(&key) {
            Some(row) => out.emit(spec.combine(&r, Some(&row.record))),
            None if spec.left_outer => out.emit(spec.combine(&r, None)),
            None => {}
        }
    }

    /// Forgets the rows not updated within `retention` ms of `now`.
    pub fn expire(&mut self, now: i64, retention: i64) {
        self.rows
            .retain(|_, row| row.updated.saturating_add(retention) > now);
    }
}
