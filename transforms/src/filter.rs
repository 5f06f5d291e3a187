//! `filter`: keeps the records for which `where` is true.

use std::sync::Arc;

use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::expr::Expr;
use connectd_sdk::{BadRecord, Batch, BuildContext, ConnectorError, Emitter, Record, Transform};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct Filter {
    condition: Expr,
}

/// Keeps the records for which an expression is true.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct FilterOptions {
    /// The condition, e.g. `usage > 90 && hostname != "doc"`.
    #[serde(rename = "where")]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text")]
    pub condition: String,
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Transform>, Invalid> {
    let source = cfg.typed::<FilterOptions>().ok_or(Invalid)?.condition;
    let condition = parse_expr(cfg, "where", &source);
    cfg.finish()?;
    Ok(Box::new(Filter {
        condition: condition.ok_or(Invalid)?,
    }))
}

/// Parses an expression option, reporting a syntax error at that option.
pub fn parse_expr(cfg: &ConfigMap<'_>, key: &str, source: &str) -> Option<Expr> {
    if source.is_empty() {
        return None;
    }
    match Expr::parse(source) {
        Ok(e) => Some(e),
        Err(e) => {
            cfg.error(key, format!("invalid expression `{source}`: {e}"));
            None
        }
    }
}

impl Filter {
    fn check(&self, r: &Record, out: &mut Emitter) -> bool {
        match self.condition.test(r) {
            Ok(keep) => keep,
            Err(e) => {
                out.bad.push(BadRecord::record(
                    r.clone(),
                    format!("filter `{}`: {e}", self.condition.source()),
                ));
                false
            }
        }
    }
}

impl Transform for Filter {
    fn process(
        &mut self,
        _input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        match Arc::try_unwrap(batch) {
            Ok(records) => {
                for r in records {
                    if self.check(&r, out) {
                        out.emit(r);
                    }
                }
            }
            // Shared with another consumer: copy only what passes.
            Err(shared) => {
                for r in shared.iter() {
                    if self.check(r, out) {
                        out.emit(r.clone());
                    }
                }
            }
        }
        Ok(())
    }
}
