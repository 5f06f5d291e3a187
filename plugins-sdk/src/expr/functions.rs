//! Built-in functions of the expression language.

use std::fmt;

use crate::time;
use crate::value::Value;

pub struct Function {
    pub name: &'static str,
    pub min_args: usize,
    pub max_args: usize,
    pub call: fn(&[Value]) -> Result<Value, String>,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}()", self.name)
    }
}

impl Function {
    pub fn arity(&self) -> String {
        match (self.min_args, self.max_args) {
            (a, b) if a == b => format!("{a} argument(s)"),
            (a, usize::MAX) => format!("at least {a} argument(s)"),
            (a, b) => format!("{a} to {b} arguments"),
        }
    }
}

const fn f(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    call: fn(&[Value]) -> Result<Value, String>,
) -> Function {
    Function {
        name,
        min_args,
        max_args,
        call,
    }
}

static FUNCTIONS: &[Function] = &[
    f("lower", 1, 1, |a| str_map(&a[0], |s| s.to_lowercase())),
    f("upper", 1, 1, |a| str_map(&a[0], |s| s.to_uppercase())),
    f("trim", 1, 1, |a| str_map(&a[0], |s| s.trim().to_string())),
    f("len", 1, 1, len),
    f("length", 1, 1, len),
    f("contains", 2, 2, |a| str_pred(a, |s, t| s.contains(t))),
    f("starts_with", 2, 2, |a| {
        str_pred(a, |s, t| s.starts_with(t))
    }),
    f("ends_with", 2, 2, |a| str_pred(a, |s, t| s.ends_with(t))),
    f("concat", 1, usize::MAX, |a| {
        Ok(Value::str(
            a.iter().map(|v| v.to_string()).collect::<String>(),
        ))
    }),
    f("coalesce", 1, usize::MAX, |a| {
        Ok(a.iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null))
    }),
    f("abs", 1, 1, |a| match &a[0] {
        // |−2⁶³| is no i64: a float, as arithmetic past the integer range gives.
        Value::Int(i) => Ok(i
            .checked_abs()
            .map_or(Value::Float(-(*i as f64)), Value::Int)),
        v => num_map(v, f64::abs),
    }),
    // An integer is its own floor and ceiling: through a float it would lose digits
    // past 2⁵³ and become `5.0`.
    f("floor", 1, 1, |a| match &a[0] {
        Value::Int(i) => Ok(Value::Int(*i)),
        v => num_map(v, f64::floor),
    }),
    f("ceil", 1, 1, |a| match &a[0] {
        Value::Int(i) => Ok(Value::Int(*i)),
        v => num_map(v, f64::ceil),
    }),
    f("round", 1, 2, round),
    f("to_string", 1, 1, |a| {
        Ok(if a[0].is_null() {
            Value::Null
        } else {
            Value::str(a[0].to_string())
        })
    }),
    f("to_float", 1, 1, to_float),
    f("to_int", 1, 1, to_int),
    f("parse_time", 1, 1, |a| match &a[0] {
        Value::Null => Ok(Value::Null),
        v => time::event_time_ms(v).map(Value::Int),
    }),
    f("format_time", 1, 2, format_time),
];

pub fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

pub fn names() -> Vec<&'static str> {
    FUNCTIONS.iter().map(|f| f.name).collect()
}

fn str_map(v: &Value, f: impl Fn(&str) -> String) -> Result<Value, String> {
    match v {
        Value::Str(s) => Ok(Value::str(f(s))),
        Value::Null => Ok(Value::Null),
        v => Err(format!("expected a string, found a {}", v.type_name())),
    }
}

fn str_pred(a: &[Value], f: impl Fn(&str, &str) -> bool) -> Result<Value, String> {
    match (&a[0], &a[1]) {
        (Value::Str(s), Value::Str(t)) => Ok(Value::Bool(f(s, t))),
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (x, y) => Err(format!(
            "expected two strings, found a {} and a {}",
            x.type_name(),
            y.type_name()
        )),
    }
}

fn num_map(v: &Value, f: impl Fn(f64) -> f64) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        v => v
            .as_f64()
            .map(|x| Value::Float(f(x)))
            .ok_or_else(|| format!("expected a number, found a {}", v.type_name())),
    }
}

fn len(a: &[Value]) -> Result<Value, String> {
    Ok(match &a[0] {
        Value::Str(s) => Value::Int(s.chars().count() as i64),
        Value::List(l) => Value::Int(l.len() as i64),
        Value::Object(o) => Value::Int(o.len() as i64),
        Value::Null => Value::Null,
        v => {
            return Err(format!(
                "expected a string, list or object, found a {}",
                v.type_name()
            ))
        }
    })
}

fn round(a: &[Value]) -> Result<Value, String> {
    let digits = match a.get(1) {
        None => 0,
        Some(Value::Int(d)) => *d,
        Some(v) => {
            return Err(format!(
                "digits must be an integer, found a {}",
                v.type_name()
            ))
        }
    };
    if let Value::Int(i) = &a[0] {
        return Ok(Value::Int(round_int(*i, digits)));
    }
    let factor = 10f64.powi(digits.clamp(-15, 15) as i32);
    num_map(&a[0], |x| {
        let scaled = x * factor;
        // Past 2⁵³ a float has no fraction to round; scaling it up could overflow.
        if scaled.is_finite() {
            scaled.round() / factor
        } else {
            x
        }
    })
}

/// An integer rounded to `digits` (negative: tens, hundreds, …), half away from zero.
fn round_int(i: i64, digits: i64) -> i64 {
    if digits >= 0 {
        return i;
    }
    let Some(unit) = u32::try_from(-digits)
        .ok()
        .and_then(|d| 10i128.checked_pow(d))
    else {
        return 0;
    };
    let (i, half) = (i128::from(i), unit / 2);
    let rounded = if i >= 0 {
        (i + half) / unit * unit
    } else {
        (i - half) / unit * unit
    };
    // Rounding −2⁶³ or 2⁶³−1 up by a unit leaves the range: keep the nearest end.
    i64::try_from(rounded).unwrap_or(if i >= 0 { i64::MAX } else { i64::MIN })
}

fn to_float(a: &[Value]) -> Result<Value, String> {
    match &a[0] {
        Value::Null => Ok(Value::Null),
        Value::Str(s) => match s.trim().parse::<f64>() {
            // Rust reads `inf`, `NaN` and `1e999` as floats that no JSON can hold.
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            Ok(_) => Err(format!("`{s}` is not a finite number")),
            Err(_) => Err(format!("`{s}` is not a number")),
        },
        Value::Bool(b) => Ok(Value::Float(f64::from(u8::from(*b)))),
        v => num_map(v, |x| x),
    }
}

fn to_int(a: &[Value]) -> Result<Value, String> {
    match &a[0] {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(f) => float_to_int(*f).map(Value::Int),
        Value::Str(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(i) => Ok(Value::Int(i)),
                Err(_) => match s.parse::<f64>() {
                    Ok(f) => float_to_int(f).map(Value::Int),
                    Err(_) => Err(format!("`{s}` is not a number")),
                },
            }
        }
        Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
        v => Err(format!("cannot convert a {} to an integer", v.type_name())),
    }
}

/// Truncated toward zero; a float past the integer range is an error, not the range's
/// end (`as` saturates: `to_int(1e300)` would be 9223372036854775807).
fn float_to_int(f: f64) -> Result<i64, String> {
    // 2⁶³ is exact as a float; every float below it and above −2⁶³ − 1 truncates into range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let t = f.trunc();
    if t.is_finite() && (-LIMIT..LIMIT).contains(&t) {
        Ok(t as i64)
    } else {
        Err(format!(
            "{} is outside the integer range (−2⁶³ to 2⁶³−1)",
            Value::Float(f)
        ))
    }
}

fn format_time(a: &[Value]) -> Result<Value, String> {
    let ms = match &a[0] {
        Value::Null => return Ok(Value::Null),
        v => time::event_time_ms(v)?,
    };
    match a.get(1) {
        None => Ok(Value::str(time::format_rfc3339_ms(ms))),
        Some(Value::Str(p)) => time::format_with(ms, p).map(Value::str),
        Some(v) => Err(format!(
            "the format must be a string, found a {}",
            v.type_name()
        )),
    }
}
