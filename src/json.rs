//! The one strict JSON reader every inbound surface uses.
//!
//! Two bodies that differ must never read as one: an approver is shown,
//! and the payload hash binds, what was parsed. Plain `serde_json` lets
//! two spellings collapse, in two ways this module closes:
//! - **Duplicate keys** (`{"a":1,"a":2}`) silently keep the last value, so
//!   a body can show one thing to a reader of the bytes and another to the
//!   service. [`parse_strict`] refuses them at any depth, naming the key
//!   and where it sits.
//! - **Numbers beyond f64** (a 30-digit integer) were rounded. The crate
//!   builds serde_json with `arbitrary_precision`, so a number keeps its
//!   exact text (`1e0` and `1` stay different, as the bodies are).
//!
//! `arbitrary_precision` carries a number through serde as a one-entry
//! map under a private key; a body that spells that key itself would be
//! read as a number, a third way to alias. It is refused too.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The key serde_json's `arbitrary_precision` uses to carry a number
/// through serde's data model (serde_json's `number::TOKEN`, not public).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Why a body is not strict JSON. Every variant is the client's fault (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrictJsonError {
    /// Not JSON at all (syntax, trailing data, nesting too deep).
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    /// The same key twice in one object.
    #[error("duplicate key '{key}' at {at}")]
    DuplicateKey { key: String, at: String },
    /// A key only serde_json's number encoding may use.
    #[error("the key '{key}' at {at} is reserved")]
    ReservedKey { key: String, at: String },
}

/// A JSON value whose value types fit a `T` only after the strict parse.
#[derive(Debug, thiserror::Error)]
pub enum StrictDecodeError {
    /// The bytes are not strict JSON (answer 400).
    #[error(transparent)]
    Json(#[from] StrictJsonError),
    /// Strict JSON of the wrong shape (answer 422); `path` is `.` for the
    /// top level.
    #[error("{message}")]
    Shape { path: String, message: String },
}

/// Parses `raw` as JSON, refusing duplicate keys at any depth and keeping
/// every number exactly as written.
pub fn parse_strict(raw: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let found = std::cell::RefCell::new(None);
    let value = StrictSeed {
        path: Path::Root,
        found: &found,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match value {
        Ok(v) => Ok(v),
        Err(e) => Err(found
            .into_inner()
            .unwrap_or_else(|| StrictJsonError::Syntax(e.to_string()))),
    }
}

/// Parses `raw` strictly (see [`parse_strict`]), then reads it as a `T`.
pub fn from_slice_strict<T: DeserializeOwned>(raw: &[u8]) -> Result<T, StrictDecodeError> {
    let value = parse_strict(raw)?;
    from_value_strict(value)
}

/// Reads an already strictly-parsed value as a `T`, naming the field that
/// does not fit.
pub fn from_value_strict<T: DeserializeOwned>(value: Value) -> Result<T, StrictDecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        StrictDecodeError::Shape {
            message: e.into_inner().to_string(),
            path,
        }
    })
}

/// Where a value sits, for error messages (`details.items[2]`); built only
/// when an error is reported.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("the top level"),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(p, k) => write!(f, "{p}.{k}"),
            Path::Index(Path::Root, i) => write!(f, "[{i}]"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

struct StrictSeed<'a> {
    path: Path<'a>,
    /// The strict error, kept aside: serde's error type only carries text.
    found: &'a std::cell::RefCell<Option<StrictJsonError>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl StrictSeed<'_> {
    fn fail<E: de::Error>(&self, e: StrictJsonError) -> E {
        let text = e.to_string();
        self.found.borrow_mut().get_or_insert(e);
        E::custom(text)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed {
            path: Path::Index(&self.path, out.len()),
            found: self.found,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == NUMBER_TOKEN {
                // serde_json hands a number over as this one-entry map with
                // its text as an owned String (`visit_string`); the parser
                // hands a body's own string as `visit_str`/borrowed. Only
                // the former is a number.
                return match map.next_value_seed(NumberText)? {
                    Some(text) if out.is_empty() => text
                        .parse::<Number>()
                        .map(Value::Number)
                        .map_err(de::Error::custom),
                    _ => Err(self.fail(StrictJsonError::ReservedKey {
                        key,
                        at: self.path.to_string(),
                    })),
                };
            }
            if out.contains_key(&key) {
                return Err(self.fail(StrictJsonError::DuplicateKey {
                    key,
                    at: self.path.to_string(),
                }));
            }
            let value = map.next_value_seed(StrictSeed {
                path: Path::Key(&self.path, &key),
                found: self.found,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Reads the value under [`NUMBER_TOKEN`]: `Some(text)` only when it came
/// from serde_json's number encoding (an owned string), `None` when the
/// body itself spelled the key.
struct NumberText;

impl<'de> DeserializeSeed<'de> for NumberText {
    type Value = Option<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumberText {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_string<E>(self, v: String) -> Result<Option<String>, E> {
        Ok(Some(v))
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_key_at_the_top_level_is_refused() {
        assert_eq!(
            parse_strict(br#"{"a":1,"a":2}"#),
            Err(StrictJsonError::DuplicateKey {
                key: "a".into(),
                at: "the top level".into()
            })
        );
    }

    #[test]
    fn a_duplicate_key_deep_inside_is_refused_and_located() {
        let e = parse_strict(br#"{"details":{"x":[{"k":1},{"k":1,"k":2}]}}"#).unwrap_err();
        assert_eq!(e.to_string(), "duplicate key 'k' at details.x[1]");
        let e = parse_strict(br#"{"details":{"a":1,"a":2}}"#).unwrap_err();
        assert_eq!(e.to_string(), "duplicate key 'a' at details");
    }

    #[test]
    fn an_escaped_spelling_of_a_key_is_the_same_key() {
        assert!(matches!(
            parse_strict(br#"{"a":1,"\u0061":2}"#),
            Err(StrictJsonError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn a_thirty_digit_integer_keeps_every_digit() {
        let v = parse_strict(br#"{"n":123456789012345678901234567890}"#).unwrap();
        assert_eq!(v.to_string(), r#"{"n":123456789012345678901234567890}"#);
    }

    #[test]
    fn numbers_keep_their_spelling() {
        // serde_json writes an exponent's sign out (`1e0` as `1e+0`), the
        // one respelling it does; the value is never rounded.
        let v = parse_strict(br#"[1e0,1,1.0,-0,0.1,1E+0]"#).unwrap();
        assert_eq!(v.to_string(), "[1e+0,1,1.0,-0,0.1,1e+0]");
        assert_eq!(v[1].as_u64(), Some(1));
    }

    #[test]
    fn the_private_number_key_spelled_in_a_body_is_refused() {
        for body in [
            r#"{"$serde_json::private::Number":"1"}"#,
            r#"{"x":{"$serde_json::private::Number":"123"}}"#,
            r#"{"x":{"\u0024serde_json::private::Number":"123"}}"#,
            r#"{"a":1,"$serde_json::private::Number":"1"}"#,
            r#"{"$serde_json::private::Number":1}"#,
        ] {
            assert!(
                matches!(
                    parse_strict(body.as_bytes()),
                    Err(StrictJsonError::ReservedKey { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn ordinary_json_reads_as_serde_json_reads_it() {
        let body = br#"{"a":[true,false,null,"s\n",{"b":{}}],"c":-12.5e-3}"#;
        let strict = parse_strict(body).unwrap();
        let plain: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(strict, plain);
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_syntax_errors() {
        assert!(matches!(
            parse_strict(b"{\"a\":"),
            Err(StrictJsonError::Syntax(_))
        ));
        assert!(matches!(
            parse_strict(b"{} {}"),
            Err(StrictJsonError::Syntax(_))
        ));
    }

    #[test]
    fn a_typed_read_names_the_field_that_does_not_fit() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        match from_slice_strict::<T>(br#"{"n":"x"}"#) {
            Err(StrictDecodeError::Shape { path, .. }) => assert_eq!(path, "n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_slice_strict::<T>(br#"{"n":1,"n":2}"#),
            Err(StrictDecodeError::Json(_))
        ));
        assert_eq!(from_slice_strict::<T>(br#"{"n":7}"#).unwrap().n, 7);
    }
}
