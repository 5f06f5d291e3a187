//! Evaluation against a record.

use std::cmp::Ordering;
use std::fmt;

use super::{BinOp, Node};
use crate::record::Record;
use crate::value::Value;

/// Why an expression could not be evaluated for one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

pub(super) fn eval(node: &Node, rec: &Record) -> Result<Value, EvalError> {
    Ok(match node {
        Node::Lit(v) => v.clone(),
        Node::Field(p) => rec.value.get_path(p).cloned().unwrap_or(Value::Null),
        Node::Key => rec.key.clone(),
        Node::Timestamp => rec.timestamp.map_or(Value::Null, Value::Int),
        Node::List(items) => Value::List(
            items
                .iter()
                .map(|i| eval(i, rec))
                .collect::<Result<_, _>>()?,
        ),
        Node::Not(a) => match eval(a, rec)? {
            Value::Bool(b) => Value::Bool(!b),
            Value::Null => Value::Null,
            v => return Err(type_error("not", &v)),
        },
        Node::Neg(a) => match eval(a, rec)? {
            // −(−2⁶³) is no i64: a float, as `+ - *` give past the integer range.
            Value::Int(i) => i
                .checked_neg()
                .map_or(Value::Float(-(i as f64)), Value::Int),
            Value::Float(f) => Value::Float(-f),
            Value::Null => Value::Null,
            v => return Err(type_error("-", &v)),
        },
        Node::Binary(BinOp::And, a, b) => {
            if !truth(eval(a, rec)?, "and")? {
                return Ok(Value::Bool(false));
            }
            Value::Bool(truth(eval(b, rec)?, "and")?)
        }
        Node::Binary(BinOp::Or, a, b) => {
            if truth(eval(a, rec)?, "or")? {
                return Ok(Value::Bool(true));
            }
            Value::Bool(truth(eval(b, rec)?, "or")?)
        }
        Node::Binary(op, a, b) => binary(*op, &eval(a, rec)?, &eval(b, rec)?)?,
        Node::In { item, set, negated } => {
            let item = eval(item, rec)?;
            let found = match eval(set, rec)? {
                Value::List(items) => items.iter().any(|x| loose_eq(&item, x)),
                Value::Str(s) => match &item {
                    Value::Str(sub) => s.contains(sub.as_str()),
                    Value::Null => return Ok(Value::Null),
                    v => return Err(type_error("in (a string)", v)),
                },
                Value::Object(o) => match &item {
                    Value::Str(k) => o.get(k).is_some(),
                    v => return Err(type_error("in (an object)", v)),
                },
                Value::Null => return Ok(Value::Null),
                v => {
                    return Err(EvalError(format!(
                        "`in` needs a list, string or object on its right, found a {}",
                        v.type_name()
                    )))
                }
            };
            Value::Bool(found != *negated)
        }
        Node::IsNull { item, negated } => Value::Bool(eval(item, rec)?.is_null() != *negated),
        Node::Call(f, args) => {
            let vals: Vec<Value> = args
                .iter()
                .map(|a| eval(a, rec))
                .collect::<Result<_, _>>()?;
            (f.call)(&vals).map_err(|e| EvalError(format!("{}(): {e}", f.name)))?
        }
    })
}

fn truth(v: Value, op: &str) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        v => Err(type_error(op, &v)),
    }
}

fn type_error(op: &str, v: &Value) -> EvalError {
    EvalError(format!(
        "`{op}` cannot be applied to a {} ({v})",
        v.type_name()
    ))
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.total_cmp(b) == Ordering::Equal
        }
        _ => a == b,
    }
}

fn op_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Or => "or",
        BinOp::And => "and",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Rem => "%",
    }
}

fn binary(op: BinOp, a: &Value, b: &Value) -> Result<Value, EvalError> {
    let mismatch = || {
        EvalError(format!(
            "cannot apply `{}` to {} ({a}) and {} ({b})",
            op_name(op),
            a.type_with_article(),
            b.type_with_article()
        ))
    };
    match op {
        BinOp::Eq => return Ok(Value::Bool(loose_eq(a, b))),
        BinOp::Ne => return Ok(Value::Bool(!loose_eq(a, b))),
        _ => {}
    }
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let value = arithmetic(op, a, b).ok_or_else(mismatch)?;
    match value {
        // JSON has no infinity: written out, it would become `null` (or `inf` in a CSV)
        // without a word, so a result past ±1.8e308 is this record's error.
        Value::Float(x) if !x.is_finite() => Err(EvalError(format!(
            "`{a} {} {b}` overflows a 64-bit float (its result is beyond ±1.8e308)",
            op_name(op)
        ))),
        v => Ok(v),
    }
}

/// `None` where the operator does not apply to these types.
fn arithmetic(op: BinOp, a: &Value, b: &Value) -> Option<Value> {
    match op {
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = match (a, b) {
                (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                    a.total_cmp(b)
                }
                (Value::Str(x), Value::Str(y)) => x.cmp(y),
                (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
                _ => return None,
            };
            Some(Value::Bool(match op {
                BinOp::Lt => ord == Ordering::Less,
                BinOp::Le => ord != Ordering::Greater,
                BinOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
        BinOp::Add => match (a, b) {
            (Value::Int(x), Value::Int(y)) => Some(
                x.checked_add(*y)
                    .map_or(Value::Float(*x as f64 + *y as f64), Value::Int),
            ),
            (Value::Str(x), Value::Str(y)) => Some(Value::str(format!("{x}{y}"))),
            _ => float_op(a, b, |x, y| x + y),
        },
        BinOp::Sub => match (a, b) {
            (Value::Int(x), Value::Int(y)) => Some(
                x.checked_sub(*y)
                    .map_or(Value::Float(*x as f64 - *y as f64), Value::Int),
            ),
            _ => float_op(a, b, |x, y| x - y),
        },
        BinOp::Mul => match (a, b) {
            (Value::Int(x), Value::Int(y)) => Some(
                x.checked_mul(*y)
                    .map_or(Value::Float(*x as f64 * *y as f64), Value::Int),
            ),
            _ => float_op(a, b, |x, y| x * y),
        },
        // Division is always real division; division by zero is null, not an error.
        BinOp::Div => match (a.as_f64(), b.as_f64()) {
            (Some(_), Some(0.0)) => Some(Value::Null),
            (Some(x), Some(y)) => Some(Value::Float(x / y)),
            _ => None,
        },
        BinOp::Rem => match (a, b) {
            (Value::Int(_), Value::Int(0)) => Some(Value::Null),
            (Value::Int(x), Value::Int(y)) => Some(Value::Int(x.wrapping_rem(*y))),
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(_), Some(0.0)) => Some(Value::Null),
                (Some(x), Some(y)) => Some(Value::Float(x % y)),
                _ => None,
            },
        },
        BinOp::Or | BinOp::And | BinOp::Eq | BinOp::Ne => None,
    }
}

fn float_op(a: &Value, b: &Value, f: impl Fn(f64, f64) -> f64) -> Option<Value> {
    Some(Value::Float(f(a.as_f64()?, b.as_f64()?)))
}
