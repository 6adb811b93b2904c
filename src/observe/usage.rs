//! Token counts: the bounded capture of a `usage` object as it streams past, and its parse
//! (once, when the object closes) under every provider's field names.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json_scan::USAGE_CAP;
use super::Usage;

/// What a finished capture held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Captured {
    Usage(Usage),
    /// Not valid JSON after all: the document is not to be trusted further.
    Invalid,
    /// Too large to keep (or not a capture at all).
    Dropped,
}

/// A `usage` object's bytes, kept only while they fit in [`USAGE_CAP`].
#[derive(Debug)]
pub(crate) struct Capture {
    on: bool,
    overflow: bool,
    bytes: Vec<u8>,
}

impl Capture {
    pub(crate) const fn new() -> Capture {
        Capture {
            on: false,
            overflow: false,
            bytes: Vec::new(),
        }
    }

    /// Starts a capture with the object's `{`.
    pub(crate) fn begin(&mut self) {
        self.bytes.clear();
        self.on = true;
        self.overflow = false;
        self.append(b"{");
    }

    pub(crate) fn stop(&mut self) {
        self.on = false;
        self.bytes.clear();
    }

    /// Appends the next bytes; past the cap the capture is dropped (and its memory kept).
    pub(crate) fn append(&mut self, run: &[u8]) {
        if !self.on || self.overflow || run.is_empty() {
            return;
        }
        let need = self.bytes.len().saturating_add(run.len());
        if need > USAGE_CAP {
            self.overflow = true;
            self.bytes.clear();
            return;
        }
        if need > self.bytes.capacity() {
            let target = need.max(self.bytes.capacity() * 2).clamp(256, USAGE_CAP);
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.extend_from_slice(run);
    }

    /// Ends the capture of an object that just closed.
    pub(crate) fn finish(&mut self) -> Captured {
        let captured = if !self.on || self.overflow {
            Captured::Dropped
        } else {
            parse_usage(&self.bytes).map_or(Captured::Invalid, Captured::Usage)
        };
        self.stop();
        captured
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// The counts in a `usage` object; `None` unless `bytes` is one JSON object. Unknown fields,
/// nulls and counts of the wrong type count as absent (0).
pub(crate) fn parse_usage(bytes: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<UsageFields>(bytes)
        .ok()
        .map(|fields| fields.0)
}

struct UsageFields(Usage);

/// The field names each count goes by.
enum Field {
    Input,
    Output,
    Cached,
    InputDetails,
    OutputDetails,
    Other,
}

impl Field {
    fn of(name: &str) -> Field {
        match name {
            "prompt_tokens" | "input_tokens" | "inputTokens" => Field::Input,
            "completion_tokens" | "output_tokens" | "outputTokens" => Field::Output,
            "cache_read_input_tokens" | "cacheReadInputTokens" => Field::Cached,
            "prompt_tokens_details" | "input_tokens_details" => Field::InputDetails,
            "completion_tokens_details" | "output_tokens_details" => Field::OutputDetails,
            _ => Field::Other,
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(Field::of(name))
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

/// Sets `slot` unless an earlier spelling already did.
fn set(slot: &mut Option<u64>, value: Option<u64>) {
    if slot.is_none() {
        *slot = value;
    }
}

impl<'de> Deserialize<'de> for UsageFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UsageVisitor;
        impl<'de> Visitor<'de> for UsageVisitor {
            type Value = UsageFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a usage object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsageFields, A::Error> {
                let (mut input, mut output, mut cached, mut reasoning) = (None, None, None, None);
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Input => set(&mut input, map.next_value::<Count>()?.0),
                        Field::Output => set(&mut output, map.next_value::<Count>()?.0),
                        Field::Cached => set(&mut cached, map.next_value::<Count>()?.0),
                        Field::InputDetails => {
                            set(&mut cached, map.next_value::<Details>()?.cached)
                        }
                        Field::OutputDetails => {
                            set(&mut reasoning, map.next_value::<Details>()?.reasoning);
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(UsageFields(Usage {
                    input: input.unwrap_or(0),
                    output: output.unwrap_or(0),
                    cached: cached.unwrap_or(0),
                    reasoning: reasoning.unwrap_or(0),
                }))
            }
        }
        deserializer.deserialize_map(UsageVisitor)
    }
}

/// A token count: a non-negative integer (or integral float); anything else is absent.
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                let integral = v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19;
                // Truncation cannot happen: the value is integral and below u64::MAX.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Count(integral.then_some(v as u64)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// `*_tokens_details`: `cached_tokens` and `reasoning_tokens`; a non-object is empty.
#[derive(Default)]
struct Details {
    cached: Option<u64>,
    reasoning: Option<u64>,
}

impl<'de> Deserialize<'de> for Details {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DetailsVisitor;
        impl<'de> Visitor<'de> for DetailsVisitor {
            type Value = Details;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("token details")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Details, A::Error> {
                let mut details = Details::default();
                while let Some(key) = map.next_key::<DetailKey>()? {
                    match key {
                        DetailKey::Cached => set(&mut details.cached, map.next_value::<Count>()?.0),
                        DetailKey::Reasoning => {
                            set(&mut details.reasoning, map.next_value::<Count>()?.0);
                        }
                        DetailKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(details)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Details, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Details::default())
            }
        }
        deserializer.deserialize_any(DetailsVisitor)
    }
}

enum DetailKey {
    Cached,
    Reasoning,
    Other,
}

impl<'de> Deserialize<'de> for DetailKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = DetailKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<DetailKey, E> {
                Ok(match name {
                    "cached_tokens" => DetailKey::Cached,
                    "reasoning_tokens" => DetailKey::Reasoning,
                    _ => DetailKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}
