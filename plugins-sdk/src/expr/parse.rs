//! Tokenizer and precedence-climbing parser.

use std::fmt;

use compact_str::CompactString;

use super::functions;
use super::{BinOp, Node};
use crate::value::{FieldPath, Value};

/// A syntax error at a character position (0-based) of the expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Value),
    Str(String),
    Ident(String),
    Meta(String),
    Sym(&'static str),
    End,
}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        position,
        message: message.into(),
    })
}

const SYMBOLS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "(", ")", "[", "]", ",", "<", ">", "+", "-", "*", "/", "%",
    "!", "=",
];

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len()
                && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
                if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let v = match text.parse::<i64>() {
                Ok(n) => Value::Int(n),
                Err(_) => match text.parse::<f64>() {
                    Ok(f) => Value::Float(f),
                    Err(_) => return err(start, format!("`{text}` is not a number")),
                },
            };
            out.push((Tok::Num(v), start));
            continue;
        }
        if c == '"' || c == '\'' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return err(start, "unterminated string"),
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let esc = match chars.get(i + 1) {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some(&other) => other,
                            None => return err(i, "unterminated string"),
                        };
                        s.push(esc);
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), start));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            i += 1;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.ends_with('.') || word.contains("..") {
                return err(start, format!("`{word}` is not a valid field path"));
            }
            if let Some(meta) = word.strip_prefix('$') {
                out.push((Tok::Meta(meta.to_string()), start));
            } else {
                out.push((Tok::Ident(word), start));
            }
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            Some(sym) => {
                out.push((Tok::Sym(sym), start));
                i += sym.chars().count();
            }
            None => return err(start, format!("unexpected character `{c}`")),
        }
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

pub(super) fn parse(src: &str) -> Result<Node, ParseError> {
    if src.trim().is_empty() {
        return err(0, "the expression is empty");
    }
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
    };
    let node = p.or()?;
    match p.peek() {
        Tok::End => Ok(node),
        t => err(
            p.at(),
            format!("unexpected {} after a complete expression", describe(t)),
        ),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(v) => format!("number {v}"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Ident(w) => format!("`{w}`"),
        Tok::Meta(m) => format!("`${m}`"),
        Tok::Sym(s) => format!("`{s}`"),
        Tok::End => "end of expression".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn at(&self) -> usize {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x.eq_ignore_ascii_case(w))
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }
    fn expect_sym(&mut self, s: &str) -> Result<(), ParseError> {
        if self.is_sym(s) {
            self.bump();
            Ok(())
        } else {
            err(
                self.at(),
                format!("expected `{s}`, found {}", describe(self.peek())),
            )
        }
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut lhs = self.and()?;
        while self.is_word("or") || self.is_sym("||") {
            self.bump();
            lhs = Node::Binary(BinOp::Or, Box::new(lhs), Box::new(self.and()?));
        }
        Ok(lhs)
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut lhs = self.not()?;
        while self.is_word("and") || self.is_sym("&&") {
            self.bump();
            lhs = Node::Binary(BinOp::And, Box::new(lhs), Box::new(self.not()?));
        }
        Ok(lhs)
    }

    fn not(&mut self) -> Result<Node, ParseError> {
        if self.is_word("not") || self.is_sym("!") {
            self.bump();
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let lhs = self.additive()?;
        let op = match self.peek() {
            Tok::Sym("==") | Tok::Sym("=") => Some(BinOp::Eq),
            Tok::Sym("!=") => Some(BinOp::Ne),
            Tok::Sym("<") => Some(BinOp::Lt),
            Tok::Sym("<=") => Some(BinOp::Le),
            Tok::Sym(">") => Some(BinOp::Gt),
            Tok::Sym(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let rhs = self.additive()?;
            return Ok(Node::Binary(op, Box::new(lhs), Box::new(rhs)));
        }
        if self.is_word("is") {
            self.bump();
            let negated = self.is_word("not");
            if negated {
                self.bump();
            }
            if !self.is_word("null") {
                return err(
                    self.at(),
                    format!(
                        "expected `null` after `is`, found {}",
                        describe(self.peek())
                    ),
                );
            }
            self.bump();
            return Ok(Node::IsNull {
                item: Box::new(lhs),
                negated,
            });
        }
        let negated = self.is_word("not");
        if negated {
            // `x not in [...]`
            self.bump();
            if !self.is_word("in") {
                return err(
                    self.at(),
                    format!("expected `in` after `not`, found {}", describe(self.peek())),
                );
            }
        }
        if self.is_word("in") {
            self.bump();
            let set = self.additive()?;
            return Ok(Node::In {
                item: Box::new(lhs),
                set: Box::new(set),
                negated,
            });
        }
        Ok(lhs)
    }

    fn additive(&mut self) -> Result<Node, ParseError> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            lhs = Node::Binary(op, Box::new(lhs), Box::new(self.multiplicative()?));
        }
    }

    fn multiplicative(&mut self) -> Result<Node, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("%") => BinOp::Rem,
                _ => return Ok(lhs),
            };
            self.bump();
            lhs = Node::Binary(op, Box::new(lhs), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        if self.is_sym("-") {
            self.bump();
            return Ok(match self.unary()? {
                Node::Lit(Value::Int(i)) => Node::Lit(Value::Int(-i)),
                Node::Lit(Value::Float(f)) => Node::Lit(Value::Float(-f)),
                other => Node::Neg(Box::new(other)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let at = self.at();
        match self.bump() {
            Tok::Num(v) => Ok(Node::Lit(v)),
            Tok::Str(s) => Ok(Node::Lit(Value::Str(CompactString::from(s)))),
            Tok::Meta(m) => match m.as_str() {
                "key" => Ok(Node::Key),
                "timestamp" => Ok(Node::Timestamp),
                _ => err(at, format!("unknown `${m}` (known: $key, $timestamp)")),
            },
            Tok::Sym("(") => {
                let inner = self.or()?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                if !self.is_sym("]") {
                    loop {
                        items.push(self.or()?);
                        if self.is_sym(",") {
                            self.bump();
                            continue;
                        }
                        break;
                    }
                }
                self.expect_sym("]")?;
                Ok(Node::List(items))
            }
            Tok::Ident(w) => {
                match w.to_ascii_lowercase().as_str() {
                    "true" => return Ok(Node::Lit(Value::Bool(true))),
                    "false" => return Ok(Node::Lit(Value::Bool(false))),
                    "null" => return Ok(Node::Lit(Value::Null)),
                    "and" | "or" | "not" | "in" | "is" => {
                        return err(at, format!("expected a value, found the keyword `{w}`"))
                    }
                    _ => {}
                }
                if self.is_sym("(") {
                    self.bump();
                    let mut args = Vec::new();
                    if !self.is_sym(")") {
                        loop {
                            args.push(self.or()?);
                            if self.is_sym(",") {
                                self.bump();
                                continue;
                            }
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                    let f = functions::lookup(&w).ok_or_else(|| ParseError {
                        position: at,
                        message: format!(
                            "unknown function `{w}` (known: {})",
                            functions::names().join(", ")
                        ),
                    })?;
                    if args.len() < f.min_args || args.len() > f.max_args {
                        return err(at, format!("`{w}` takes {}, got {}", f.arity(), args.len()));
                    }
                    return Ok(Node::Call(f, args));
                }
                Ok(Node::Field(FieldPath::parse(&w)))
            }
            t => err(at, format!("expected a value, found {}", describe(&t))),
        }
    }
}
