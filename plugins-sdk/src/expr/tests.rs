use super::*;
use crate::record::Record;
use crate::value::Value;

fn rec(json: &str) -> Record {
    Record::new(serde_json::from_str(json).unwrap())
}

fn eval(src: &str, json: &str) -> Result<Value, EvalError> {
    Expr::parse(src).unwrap().eval(&rec(json))
}

#[test]
fn comparisons_logic_and_arithmetic() {
    let r = r#"{"usage": 91.5, "host": "doc", "n": 3, "q": {"bp": 2}}"#;
    assert_eq!(eval("usage > 90", r), Ok(Value::Bool(true)));
    assert_eq!(
        eval("usage > 90 and host == 'doc'", r),
        Ok(Value::Bool(true))
    );
    assert_eq!(eval("not (n >= 3) || q.bp = 2", r), Ok(Value::Bool(true)));
    assert_eq!(eval("n * 2 + 1", r), Ok(Value::Int(7)));
    assert_eq!(eval("n / 2", r), Ok(Value::Float(1.5)));
    assert_eq!(eval("n % 2", r), Ok(Value::Int(1)));
    assert_eq!(eval("-n + 1", r), Ok(Value::Int(-2)));
    assert_eq!(eval("host in ['a', 'doc']", r), Ok(Value::Bool(true)));
    assert_eq!(eval("host not in ['a', 'doc']", r), Ok(Value::Bool(false)));
    assert_eq!(eval("missing is null", r), Ok(Value::Bool(true)));
    assert_eq!(eval("q.bp is not null", r), Ok(Value::Bool(true)));
    assert_eq!(eval("missing > 3", r), Ok(Value::Null));
    assert_eq!(eval("n / 0", r), Ok(Value::Null));
}

#[test]
fn functions() {
    let r = r#"{"s": " Hello ", "t": "2024-04-01T15:56:48.427360Z"}"#;
    assert_eq!(eval("upper(trim(s))", r), Ok(Value::str("HELLO")));
    assert_eq!(eval("len(s)", r), Ok(Value::Int(7)));
    assert_eq!(eval("contains(s, 'ell')", r), Ok(Value::Bool(true)));
    assert_eq!(eval("parse_time(t)", r), Ok(Value::Int(1_711_987_008_427)));
    assert_eq!(
        eval("format_time(parse_time(t))", r),
        Ok(Value::str("2024-04-01T15:56:48.427Z"))
    );
    assert_eq!(eval("round(2.345, 2)", r), Ok(Value::Float(2.35)));
    assert_eq!(eval("coalesce(missing, 4)", r), Ok(Value::Int(4)));
    assert_eq!(
        eval("to_float('2.5') + to_int('3')", r),
        Ok(Value::Float(5.5))
    );
}

#[test]
fn type_errors_are_errors_not_false() {
    let e = eval("host > 5", r#"{"host":"doc"}"#).unwrap_err();
    assert!(e.0.contains("string"), "{e}");
    let e = Expr::parse("host")
        .unwrap()
        .test(&rec(r#"{"host":"doc"}"#))
        .unwrap_err();
    assert!(e.0.contains("expected true or false"), "{e}");
}

#[test]
fn parse_errors_have_positions() {
    let e = Expr::parse("usage >").unwrap_err();
    assert_eq!(e.position, 7);
    let e = Expr::parse("usage > 90 90").unwrap_err();
    assert_eq!(e.position, 11);
    let e = Expr::parse("frob(x)").unwrap_err();
    assert!(e.message.contains("unknown function"));
    let e = Expr::parse("lower(a, b)").unwrap_err();
    assert!(e.message.contains("takes 1"), "{e}");
    assert!(Expr::parse("'open").is_err());
    assert!(Expr::parse("").is_err());
    assert!(Expr::parse("a.").is_err());
}

#[test]
fn meta_fields_and_field_list() {
    let mut r = rec(r#"{"a": 1}"#);
    r.key = Value::str("k");
    r.timestamp = Some(5);
    assert_eq!(
        Expr::parse("$key == 'k' and $timestamp == 5")
            .unwrap()
            .eval(&r),
        Ok(Value::Bool(true))
    );
    let fields = Expr::parse("a > 1 and b.c < 2").unwrap().fields();
    assert_eq!(fields.len(), 2);
}

/// Past the integer range a result is a float (as `+ - *` always gave); past the float
/// range it is the record's error: JSON has no infinity, so it would have been written
/// as `null` (and as `inf` in a CSV) without a word.
#[test]
fn results_past_the_number_ranges() {
    let r = r#"{"min": -9223372036854775808, "max": 9223372036854775807, "big": 1e300, "tiny": 1e-300}"#;
    let min_as_float = Ok(Value::Float(9.223372036854776e18));
    assert_eq!(eval("-min", r), min_as_float);
    assert_eq!(eval("abs(min)", r), min_as_float);
    assert_eq!(eval("abs(-5)", r), Ok(Value::Int(5)));
    for f in ["floor", "ceil", "round"] {
        assert_eq!(
            eval(&format!("{f}(max)"), r),
            Ok(Value::Int(i64::MAX)),
            "{f}"
        );
    }
    assert_eq!(eval("round(1250, -2)", r), Ok(Value::Int(1300)));
    assert_eq!(eval("round(-1250, -2)", r), Ok(Value::Int(-1300)));
    assert_eq!(eval("round(1249, -2)", r), Ok(Value::Int(1200)));
    assert_eq!(eval("round(max, -1)", r), Ok(Value::Int(i64::MAX)));
    assert_eq!(eval("round(5, -30)", r), Ok(Value::Int(0)));
    assert_eq!(eval("round(big, 15)", r), Ok(Value::Float(1e300)));
    assert_eq!(eval("round(2.5)", r), Ok(Value::Float(3.0)));
    for src in [
        "big * big",
        "big / tiny",
        "big * 1e10 + 1",
        "-big * 1e10",
        "big * 1e10 % 3",
    ] {
        let e = eval(src, r).unwrap_err();
        assert!(e.0.contains("overflows a 64-bit float"), "{src}: {e}");
    }
    assert_eq!(eval("max + 1", r), Ok(Value::Float(9.223372036854776e18)));
    for (src, why) in [
        ("to_int(big)", "outside the integer range"),
        ("to_int('1e300')", "outside the integer range"),
        ("to_int(max * 2)", "outside the integer range"),
        ("to_float('inf')", "not a finite number"),
        ("to_float('NaN')", "not a finite number"),
        ("to_float('1e999')", "not a finite number"),
    ] {
        let e = eval(src, r).unwrap_err();
        assert!(e.0.contains(why), "{src}: {e}");
    }
    assert_eq!(eval("to_int(min * 1.0)", r), Ok(Value::Int(i64::MIN)));
    assert_eq!(eval("to_int(-2.9)", r), Ok(Value::Int(-2)));
    assert_eq!(eval("to_int('12.7')", r), Ok(Value::Int(12)));
}
