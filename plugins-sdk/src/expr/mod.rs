//! The expression language of `filter: where`, `map` computed fields and routing options.
//!
//! ```text
//! usage > 90 and hostname in ["doc", "dopey"]
//! not (quote.bp is null) or lower(symbol) == "spy"
//! price * volume / 1000
//! ```
//! Field paths are dotted (`quote.bid.price`); `$key` and `$timestamp` read the record's
//! key and event time. A missing field is `null`; comparisons with `null` are `null`,
//! which a filter treats as false. Comparing values of incompatible types is an error
//! for that record (it goes to the dead-letter queue), never a silent false.

mod eval;
mod functions;
mod parse;

pub use eval::EvalError;
pub use parse::ParseError;

use crate::record::Record;
use crate::value::{FieldPath, Value};

/// A parsed expression, ready to evaluate against records.
#[derive(Clone, Debug)]
pub struct Expr {
    root: Node,
    source: String,
}

#[derive(Clone, Debug)]
enum Node {
    Lit(Value),
    Field(FieldPath),
    Key,
    Timestamp,
    List(Vec<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    In {
        item: Box<Node>,
        set: Box<Node>,
        negated: bool,
    },
    IsNull {
        item: Box<Node>,
        negated: bool,
    },
    Call(&'static functions::Function, Vec<Node>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl Expr {
    /// Parses an expression; the error carries the character position of the problem.
    pub fn parse(source: &str) -> Result<Expr, ParseError> {
        let root = parse::parse(source)?;
        Ok(Expr {
            root,
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn eval(&self, record: &Record) -> Result<Value, EvalError> {
        eval::eval(&self.root, record)
    }

    /// Evaluates as a condition: true passes; false and null do not.
    pub fn test(&self, record: &Record) -> Result<bool, EvalError> {
        match self.eval(record)? {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            other => Err(EvalError(format!(
                "the condition `{}` gave a {}, expected true or false",
                self.source,
                other.type_name()
            ))),
        }
    }

    /// The field paths the expression reads (for projection and validation).
    pub fn fields(&self) -> Vec<FieldPath> {
        fn walk(n: &Node, out: &mut Vec<FieldPath>) {
            match n {
                Node::Field(p) => out.push(p.clone()),
                Node::List(items) | Node::Call(_, items) => items.iter().for_each(|i| walk(i, out)),
                Node::Not(a) | Node::Neg(a) | Node::IsNull { item: a, .. } => walk(a, out),
                Node::Binary(_, a, b)
                | Node::In {
                    item: a, set: b, ..
                } => {
                    walk(a, out);
                    walk(b, out);
                }
                Node::Lit(_) | Node::Key | Node::Timestamp => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
