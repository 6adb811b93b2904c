//! The body scanner: one streaming pass over the exact body bytes, driven by a pointer trie.
//!
//! The trie (`trie.rs`) holds every pointer the rules test. At each object level the scanner looks
//! each (decoded) key up among the trie node's children: a hit descends, a miss is skipped
//! with [`IgnoredAny`] (serde_json still validates it, without building anything). Leaves
//! record presence (non-null) and run the equality tests the rules registered. No document
//! tree is built and nothing is copied except what serde_json needs to unescape a string.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::bits::BitSet;
use super::trie::{Node, Scalar, Trie};
use super::UnclassifiableReason;

/// A scalar seen in the body, borrowed for the duration of the visit.
enum Captured<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

/// What one scan found: present (non-null) capture slots and equality tests that matched.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    present: BitSet,
    matched: BitSet,
}

impl Facts {
    pub(crate) fn present(&self, slot: usize) -> bool {
        self.present.contains(slot)
    }

    pub(crate) fn matched(&self, test: usize) -> bool {
        self.matched.contains(test)
    }
}

/// Numbers compare by value: `1`, `1.0` and `1e0` are equal.
fn equals(want: &Scalar, got: &Captured<'_>) -> bool {
    match (want, got) {
        (Scalar::Null, Captured::Null) => true,
        (Scalar::Bool(want), Captured::Bool(got)) => want == got,
        (Scalar::Str(want), Captured::Str(got)) => **want == **got,
        (Scalar::Int(want), Captured::Int(got)) => want == got,
        (Scalar::Int(want), Captured::Float(got)) => (*want as f64) == *got,
        (Scalar::Float(want), Captured::Int(got)) => *want == (*got as f64),
        (Scalar::Float(want), Captured::Float(got)) => want == got,
        _ => false,
    }
}

impl Trie {
    /// Scans `body`: the facts, or why the body cannot be classified.
    pub(crate) fn scan(&self, body: &[u8]) -> Result<Facts, UnclassifiableReason> {
        let mut scan = Scan {
            trie: self,
            facts: Facts::default(),
            duplicate: None,
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        let result = Root(&mut scan)
            .deserialize(&mut de)
            .and_then(|object| de.end().map(|()| object));
        match (result, scan.duplicate) {
            (Ok(true), _) => Ok(scan.facts),
            (Ok(false), _) => Err(UnclassifiableReason::NotAnObject),
            (Err(_), Some(node)) => Err(UnclassifiableReason::DuplicateKey(
                self.nodes
                    .get(node)
                    .map_or_else(String::new, |n| n.text.to_string()),
            )),
            (Err(err), None) => Err(UnclassifiableReason::InvalidJson(err.to_string())),
        }
    }
}

struct Scan<'t> {
    trie: &'t Trie,
    facts: Facts,
    /// Set (to the repeated key's node) just before aborting on a duplicate key.
    duplicate: Option<usize>,
}

/// The top-level value: `true` when it is an object (scanned), `false` otherwise (skipped).
struct Root<'s, 't>(&'s mut Scan<'t>);

impl<'de> DeserializeSeed<'de> for Root<'_, '_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Root<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        At {
            scan: self.0,
            node: 0,
        }
        .visit_map(map)
        .map(|()| true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A value at trie node `node`.
struct At<'s, 't> {
    scan: &'s mut Scan<'t>,
    node: usize,
}

impl At<'_, '_> {
    fn mark_present(&mut self) {
        let trie = self.scan.trie;
        if let Some(node) = trie.nodes.get(self.node) {
            for &slot in &node.slots {
                self.scan.facts.present.insert(slot);
            }
        }
    }

    fn scalar(mut self, got: Captured<'_>) {
        if !matches!(got, Captured::Null) {
            self.mark_present();
        }
        let trie = self.scan.trie;
        if let Some(node) = trie.nodes.get(self.node) {
            for (want, test) in &node.tests {
                if equals(want, &got) {
                    self.scan.facts.matched.insert(*test);
                }
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for At<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for At<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.mark_present();
        let trie = self.scan.trie;
        let Some(node) = trie.nodes.get(self.node).filter(|n| !n.keys.is_empty()) else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut seen = BitSet::new();
        while let Some(found) = map.next_key_seed(Key(node))? {
            let Some((position, child)) = found else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !seen.insert(position) {
                self.scan.duplicate = Some(child);
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(At {
                scan: &mut *self.scan,
                node: child,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.mark_present();
        let trie = self.scan.trie;
        let Some(node) = trie
            .nodes
            .get(self.node)
            .filter(|n| n.each.is_some() || !n.indexes.is_empty())
        else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut index = 0usize;
        loop {
            let child = node
                .indexes
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, c)| *c)
                .or(node.each);
            let more = match child {
                Some(child) => seq
                    .next_element_seed(At {
                        scan: &mut *self.scan,
                        node: child,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index = index.saturating_add(1);
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.scalar(Captured::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(Captured::Int(i128::from(v)));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(Captured::Int(i128::from(v)));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.scalar(Captured::Float(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(Captured::Str(v));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.scalar(Captured::Null);
        Ok(())
    }
}

/// An object key: its position and child among the node's keys, if the trie has it.
struct Key<'n>(&'n Node);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<(usize, usize)>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<(usize, usize)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .keys
            .iter()
            .enumerate()
            .find(|(_, (k, _))| **k == *key)
            .map(|(position, (_, child))| (position, *child)))
    }
}
