//! The stream–table join's state: the right input as the latest record per key.

use std::collections::HashMap;

use connectd_sdk::{Emitter, Record};
use serde::{Deserialize, Serialize};

use super::Spec;
use crate::held::Held;
use crate::window::GroupKey;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Table {
    #[serde(with = "crate::window::pairs")]
    rows: HashMap<GroupKey, Held>,
}

impl Table {
    pub fn add(&mut self, spec: &Spec, side: usize, key: GroupKey, r: Record, out: &mut Emitter) {
        if side == 1 {
            self.rows.insert(key, Held::from(&r));
            return;
        }
        match self.rows.get(&key) {
            Some(row) => out.emit(spec.combine(&r, Some(&Record::from(row)))),
            None if spec.left_outer => out.emit(spec.combine(&r, None)),
            None => {}
        }
    }
}
