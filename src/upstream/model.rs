//! The request's `model` field: found in a JSON body without building a tree, and replaced
//! in place so every other byte of the body stays as the client sent it.

use std::cell::Cell;
use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level `model` of a JSON body: its value and where its string token sits.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelField {
    pub value: String,
    /// Byte range of the JSON string token, quotes included.
    pub span: Range<usize>,
}

/// Why a body's `model` cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the request body is not valid JSON")]
    InvalidJson,
    #[error("the request body is not a JSON object")]
    NotAnObject,
    #[error("the request body has more than one \"model\" field")]
    Duplicate,
    #[error("the request body's \"model\" is not a string")]
    NotAString,
}

/// Find the top-level `"model"` string. `Ok(None)` when the object has no `model`. Escaped
/// keys (`"mod\u0065l"`) count as `model`; a second `model` is an error, since the provider
/// might read the other one.
pub fn find(body: &[u8]) -> Result<Option<ModelField>, ModelError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    // The visitor flags a duplicate itself: an error's text may quote the client's bytes
    // (`invalid type: string "duplicate model"`), so it cannot tell the cases apart.
    let duplicate = Cell::new(false);
    let raw = de
        .deserialize_any(TopLevel {
            duplicate: &duplicate,
        })
        .map_err(|e| {
            if duplicate.get() {
                return ModelError::Duplicate;
            }
            match e.classify() {
                serde_json::error::Category::Data => ModelError::NotAnObject,
                _ => ModelError::InvalidJson,
            }
        })?;
    de.end().map_err(|_| ModelError::InvalidJson)?;
    let Some(raw) = raw else { return Ok(None) };
    let token = raw.get();
    // The raw value borrows from `body` (from_slice never copies it): its offset is the
    // distance between the two pointers, checked rather than trusted.
    let span = (token.as_ptr() as usize)
        .checked_sub(body.as_ptr() as usize)
        .and_then(|start| Some(start..start.checked_add(token.len())?))
        .filter(|span| body.get(span.clone()) == Some(token.as_bytes()))
        .ok_or(ModelError::InvalidJson)?;
    let value: String = serde_json::from_str(token).map_err(|_| ModelError::NotAString)?;
    Ok(Some(ModelField { value, span }))
}

/// `body` with the token at `span` replaced by `model` as a JSON string.
pub fn replace(body: &[u8], span: Range<usize>, model: &str) -> Bytes {
    let (Some(head), Some(tail)) = (body.get(..span.start), body.get(span.end..)) else {
        return Bytes::copy_from_slice(body);
    };
    let mut out = BytesMut::with_capacity(body.len() + model.len() + 2);
    out.put_slice(head);
    let mut writer = (&mut out).writer();
    // Writing a string into memory cannot fail.
    let _ = serde_json::to_writer(&mut writer, model);
    out.put_slice(tail);
    out.freeze()
}

const DUPLICATE: &str = "duplicate model";

/// Visits the top-level object, keeping the raw `model` value and skipping the rest; sets
/// `duplicate` when `model` appears twice.
struct TopLevel<'a> {
    duplicate: &'a Cell<bool>,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_model) = map.next_key_seed(IsModel)? {
            if is_model {
                let raw: &'de RawValue = map.next_value()?;
                if found.replace(raw).is_some() {
                    self.duplicate.set(true);
                    return Err(de::Error::custom(DUPLICATE));
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A key, compared with `model` after unescaping, never stored.
struct IsModel;

impl<'de> DeserializeSeed<'de> for IsModel {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for IsModel {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "model")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str) -> Result<Option<(String, String)>, ModelError> {
        find(body.as_bytes()).map(|f| f.map(|f| (f.value, body[f.span].to_owned())))
    }

    /// body, expected (value, token) or error.
    type Case<'a> = (&'a str, Result<Option<(&'a str, &'a str)>, ModelError>);

    #[test]
    fn finds_the_top_level_model_and_its_token() {
        let cases: &[Case<'_>] = &[
            (
                r#"{"model":"gpt-4o","messages":[]}"#,
                Ok(Some(("gpt-4o", r#""gpt-4o""#))),
            ),
            (
                r#" { "messages" : [{"model":"inner"}] , "model" : "a\"b" } "#,
                Ok(Some(("a\"b", r#""a\"b""#))),
            ),
            (r#"{"mod\u0065l":"x"}"#, Ok(Some(("x", r#""x""#)))),
            (
                r#"{"model":"caf\u00e9"}"#,
                Ok(Some(("café", r#""caf\u00e9""#))),
            ),
            (r#"{"messages":[]}"#, Ok(None)),
            (r#"{}"#, Ok(None)),
            (r#"{"model":"a","model":"b"}"#, Err(ModelError::Duplicate)),
            (r#"{"model":42}"#, Err(ModelError::NotAString)),
            (r#"{"model":null}"#, Err(ModelError::NotAString)),
            (r#"["model"]"#, Err(ModelError::NotAnObject)),
            (r#""model""#, Err(ModelError::NotAnObject)),
            (r#""duplicate model""#, Err(ModelError::NotAnObject)),
            (r#"{"model":"a""#, Err(ModelError::InvalidJson)),
            (r#"{"model":"a"} x"#, Err(ModelError::InvalidJson)),
            ("", Err(ModelError::InvalidJson)),
        ];
        for (body, want) in cases {
            let want = want
                .as_ref()
                .map(|o| o.map(|(v, t)| (v.to_owned(), t.to_owned())))
                .map_err(Clone::clone);
            assert_eq!(field(body), want, "{body}");
        }
    }

    #[test]
    fn replace_changes_only_the_model_token() {
        let body = r#"{"stream":true, "model" : "gpt-4o" ,"messages":[{"role":"user","content":"model"}]}"#;
        let f = find(body.as_bytes()).unwrap().unwrap();
        let out = replace(body.as_bytes(), f.span, "prod-\"4o\"");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"stream":true, "model" : "prod-\"4o\"" ,"messages":[{"role":"user","content":"model"}]}"#
        );
        let again = find(&out).unwrap().unwrap();
        assert_eq!(again.value, "prod-\"4o\"");
    }
}
