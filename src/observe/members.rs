//! A JSON object's top-level members as borrowed raw values, for the request-side helpers:
//! serde_json validates the whole document but builds no tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// One member: its key (borrowed unless it had escapes) and its value's exact bytes.
pub(crate) struct Member<'a> {
    pub(crate) key: Cow<'a, str>,
    pub(crate) value: &'a RawValue,
}

/// The members of `json`, in order; `None` unless `json` is exactly one JSON object
/// (surrounding whitespace allowed).
pub(crate) fn members(json: &str) -> Option<Vec<Member<'_>>> {
    let mut de = serde_json::Deserializer::from_str(json);
    let members = de.deserialize_map(MembersVisitor).ok()?;
    de.end().ok()?;
    Some(members)
}

/// Whether two members share a key.
pub(crate) fn has_duplicate_keys(members: &[Member<'_>]) -> bool {
    let mut keys: Vec<&str> = members.iter().map(|member| member.key.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|pair| pair.first() == pair.get(1))
}

/// Where `part` (a slice of `whole`) starts in `whole`.
pub(crate) fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (offset + part.len() <= whole.len()).then_some(offset)
}

/// A JSON string value, unescaped; `None` for anything else.
pub(crate) fn string_value(value: &RawValue) -> Option<String> {
    serde_json::from_str(value.get()).ok()
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<Member<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'de RawValue = map.next_value()?;
            members.push(Member { key, value });
        }
        Ok(members)
    }
}

/// A key, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key))
    }
}
