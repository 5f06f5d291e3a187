//! `map`: computes, renames, drops and selects fields; can set the key and event time.
//!
//! Order of operations: `fields` (every expression sees the input record), `rename`,
//! `drop`, `keep`, then `key` / `timestamp` (which see the result).

use connectd_sdk::config::{ConfigMap, Invalid, TextMap};
use connectd_sdk::expr::Expr;
use connectd_sdk::record::take_records;
use connectd_sdk::time::event_time_ms;
use connectd_sdk::{
    BadRecord, Batch, BuildContext, ConnectorError, Emitter, FieldPath, Record, Transform, Value,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::filter::parse_expr;

#[derive(Debug)]
pub struct Map {
    fields: Vec<(FieldPath, Expr)>,
    rename: Vec<(FieldPath, FieldPath)>,
    drop: Vec<FieldPath>,
    keep: Option<Vec<FieldPath>>,
    key: Option<Expr>,
    timestamp: Option<Expr>,
    /// Whether a timestamp that looks like seconds (or µs, ns) has been warned of.
    warned: std::sync::atomic::AtomicBool,
}

/// Sets, renames, drops or keeps fields, and sets the key or timestamp, by expressions.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct MapOptions {
    /// Field path to expression, applied in order (`mid: (bid + ask) / 2`).
    #[serde(default)]
    pub fields: TextMap,
    /// Old field path to new field path.
    #[serde(default)]
    pub rename: TextMap,
    /// Fields to remove.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub drop: Option<Vec<String>>,
    /// The only fields to keep.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub keep: Option<Vec<String>>,
    /// An expression for the record's key.
    #[serde(default)]
    pub key: Option<String>,
    /// An expression for the record's timestamp (epoch ms or an RFC 3339 text).
    #[serde(default)]
    pub timestamp: Option<String>,
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Transform>, Invalid> {
    let o: MapOptions = cfg.typed().ok_or(Invalid)?;
    let mut fields = Vec::new();
    for (name, src) in &o.fields.0 {
        match Expr::parse(src) {
            Ok(e) => fields.push((FieldPath::parse(name), e)),
            Err(e) => cfg.error(
                &format!("fields.{name}"),
                format!("invalid expression `{src}`: {e}"),
            ),
        }
    }
    let rename: Vec<_> = o
        .rename
        .0
        .iter()
        .map(|(from, to)| (FieldPath::parse(from), FieldPath::parse(to)))
        .collect();
    let has_drop = o.drop.is_some();
    let drop = o
        .drop
        .unwrap_or_default()
        .iter()
        .map(|p| FieldPath::parse(p))
        .collect();
    let keep = o
        .keep
        .map(|l| l.iter().map(|p| FieldPath::parse(p)).collect());
    let key = o.key.and_then(|s| parse_expr(cfg, "key", &s));
    let timestamp = o.timestamp.and_then(|s| parse_expr(cfg, "timestamp", &s));
    if fields.is_empty()
        && rename.is_empty()
        && keep.is_none()
        && key.is_none()
        && timestamp.is_none()
        && !has_drop
    {
        cfg.error(
            "fields",
            "a map needs at least one of fields, rename, drop, keep, key, timestamp",
        );
    }
    cfg.finish()?;
    Ok(Box::new(Map {
        fields,
        rename,
        drop,
        keep,
        key,
        timestamp,
        warned: Default::default(),
    }))
}

impl Map {
    /// Applies the map in place; on error the record is as the failing step found it.
    fn apply(&self, r: &mut Record) -> Result<(), String> {
        let mut computed = Vec::with_capacity(self.fields.len());
        for (path, e) in &self.fields {
            let v = e
                .eval(r)
                .map_err(|err| format!("map field `{path}` = `{}`: {err}", e.source()))?;
            computed.push((path, v));
        }
        for (path, v) in computed {
            if !r.value.set_path(path, v) {
                return Err(format!(
                    "map: cannot set `{path}`: a non-object value is in the way"
                ));
            }
        }
        for (from, to) in &self.rename {
            if let Some(v) = r.value.remove_path(from) {
                r.value.set_path(to, v);
            }
        }
        for p in &self.drop {
            r.value.remove_path(p);
        }
        if let Some(keep) = &self.keep {
            let mut out = Value::Null;
            for p in keep {
                if let Some(v) = r.value.get_path(p) {
                    out.set_path(p, v.clone());
                }
            }
            r.value = if out.is_null() {
                Value::Object(Default::default())
            } else {
                out
            };
        }
        if let Some(k) = &self.key {
            r.key = k
                .eval(r)
                .map_err(|err| format!("map key `{}`: {err}", k.source()))?;
        }
        if let Some(t) = &self.timestamp {
            let ms = t
                .eval(r)
                .map_err(|e| e.to_string())
                .and_then(|v| event_time_ms(&v))
                .map_err(|err| format!("map timestamp `{}`: {err}", t.source()))?;
            crate::time::warn_of_another_unit(ms, &self.warned, |like, date| {
                let fix = match like {
                    "s" => "* 1000",
                    "us" => "/ 1000",
                    _ => "/ 1000000",
                };
                format!(
                    "map timestamp `{src}`: {ms} read as epoch milliseconds is {date}; if it is in another unit ({like}), write `timestamp: ({src}) {fix}`",
                    src = t.source()
                )
            });
            r.timestamp = Some(ms);
        }
        Ok(())
    }
}

impl Transform for Map {
    fn process(
        &mut self,
        _input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        for mut r in take_records(batch) {
            match self.apply(&mut r) {
                Ok(()) => out.emit(r),
                Err(reason) => out.bad.push(BadRecord::record(r, reason)),
            }
        }
        Ok(())
    }
}
