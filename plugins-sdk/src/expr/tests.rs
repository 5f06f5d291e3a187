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
